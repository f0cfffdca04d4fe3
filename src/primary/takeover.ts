/**
 * One Sluice per port, and replacing one without dropping anyone. uWebSockets.js binds with
 * SO_REUSEPORT, so a second Sluice started on a port a running one holds would silently share it (the
 * kernel would spread new connections over both). Before opening anything, the primary binds each entry
 * point's address once *without* SO_REUSEPORT: that fails exactly when another socket listens there. Then:
 *  - without --takeover: Sluice refuses to start, naming the entry point and the way out;
 *  - with --takeover: it finds the processes listening there (Linux: /proc/net/tcp* and /proc/<pid>/fd),
 *    starts its own workers on the same ports, and sends each old process SIGUSR2, which makes a Sluice
 *    stop accepting at once and close its WebSockets with 1001 paced over its graceTimeOut, then exit
 *    (HAProxy's -sf soft stop). The new process opens the admin listener once the old one let it go.
 */
import net from 'node:net';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import type { EntryPointSpec } from '../config/snapshot.js';
import { formatHostPort } from '../shared/address.js';

/** The signal of a soft stop (SIGUSR1 belongs to Node's inspector). */
export const TAKEOVER_SIGNAL: NodeJS.Signals = 'SIGUSR2';

/** Entry points whose address another socket listens on now. */
export async function busyEntryPoints(entryPoints: readonly EntryPointSpec[]): Promise<EntryPointSpec[]> {
  const busy: EntryPointSpec[] = [];
  for (const ep of entryPoints) if (await addressInUse(ep.host, ep.port)) busy.push(ep);
  return busy;
}

function addressInUse(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'EADDRINUSE'));
    // Node's net does not set SO_REUSEPORT: the bind fails when any socket listens on the address.
    server.listen({ host: host === '' ? undefined : host, port, exclusive: true }, () => server.close(() => resolve(false)));
  });
}

/** The message of a refused start. */
export function portInUseMessage(busy: readonly EntryPointSpec[]): string {
  const list = busy.map((ep) => `entry point '${ep.name}' (${formatHostPort(ep.host, ep.port)})`).join(', ');
  return `${list}: address already in use (another Sluice? start with --takeover to replace it without dropping its connections; anything else listening there must be stopped first)`;
}

/** Processes (other than this one) with a listening TCP socket on `port`. Linux only; [] elsewhere. */
export function listenersOf(port: number): number[] {
  const inodes = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length < 10 || fields[3] !== '0A') continue; // 0A = LISTEN
      const local = fields[1]!;
      if (parseInt(local.slice(local.lastIndexOf(':') + 1), 16) === port) inodes.add(fields[9]!);
    }
  }
  if (inodes.size === 0) return [];
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${entry}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let target: string;
      try {
        target = readlinkSync(`/proc/${entry}/fd/${fd}`);
      } catch {
        continue;
      }
      const match = /^socket:\[(\d+)\]$/.exec(target);
      if (match !== null && inodes.has(match[1]!)) {
        pids.push(Number(entry));
        break;
      }
    }
  }
  return pids;
}

/** Whether `pid` runs Sluice (its command line names the sluice CLI). */
export function isSluice(pid: number): boolean {
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return cmdline.some((arg) => /sluice(\.js)?$|cli\/main\.js$/.test(arg));
  } catch {
    return false;
  }
}
