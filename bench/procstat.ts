/**
 * What the bench reads about a proxy from /proc: its process tree (NGINX's master and workers),
 * CPU time summed over every process and thread in it, and resident memory summed the same way.
 * Reading /proc costs the proxy nothing, unlike asking it, and treats every proxy alike.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

const CLOCK_TICKS_PER_SECOND = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** Fields after the command name in /proc/PID/stat (the name may contain spaces and parentheses). */
function statFields(pid: number): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** `pid` and every live descendant; NGINX's workers are children of its master. */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const fields = statFields(Number(entry));
    if (!fields) continue;
    const parent = Number(fields[1]);
    const list = children.get(parent) ?? [];
    list.push(Number(entry));
    children.set(parent, list);
  }
  const out: number[] = [];
  const visit = (p: number): void => {
    out.push(p);
    for (const c of children.get(p) ?? []) visit(c);
  };
  visit(pid);
  return out;
}

/**
 * User + system CPU in microseconds over the processes' lifetimes. A process's stat line already
 * covers all of its threads (Sluice's workers), so summing over processes covers everything.
 * Resolution is one clock tick (10 ms), which is why the bench measures over several seconds.
 */
export function cpuMicros(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    const f = statFields(pid);
    if (f) ticks += Number(f[11]) + Number(f[12]); // utime, stime (fields 14 and 15 of stat)
  }
  return (ticks / CLOCK_TICKS_PER_SECOND) * 1e6;
}

/**
 * Resident set size in bytes, summed over the processes. Pages shared between NGINX's master and
 * workers count once per process; the bench only uses differences (held minus idle), in which
 * the shared pages cancel.
 */
export function rssBytes(pids: readonly number[]): number {
  let kb = 0;
  for (const pid of pids) {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m) kb += Number(m[1]);
    } catch {
      // The process ended between listing and reading: it holds no memory any more.
    }
  }
  return kb * 1024;
}

/**
 * CPU busy time of the whole machine in microseconds (every core: user, nice, system, irq, softirq,
 * steal). The bench subtracts what it can account for (proxy, generator, backends) to see how much
 * other work shared the machine during a measurement.
 */
export function machineBusyMicros(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const [, user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).map(Number);
  const ticks = [user, nice, system, irq, softirq, steal].reduce((a: number, b) => a + (b ?? 0), 0);
  return (ticks / CLOCK_TICKS_PER_SECOND) * 1e6;
}
