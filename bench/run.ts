/**
 * `npm run bench`: the reproducible comparison of direct, Sluice (1 and 2 workers), NGINX and
 * HAProxy over the same three echo backends, on loopback, bounded in time (a full run takes about
 * twenty minutes with the compression and fan-out rows, --quick under two). Targets are interleaved
 * inside each run so slow drift on the machine spreads over all of them; results go to
 * bench/results/<date>.md and .json.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { FD_RESERVE, openFileLimit } from '../loadtest/options.js';
import { cpuMicros, machineBusyMicros } from './procstat.js';
import { FULL, QUICK, measureTarget, type BenchSettings } from './measure.js';
import { renderJson, renderMarkdown, type BenchResults, type TargetResult } from './report.js';
import { COMPRESSION_FULL, COMPRESSION_QUICK, runCompressionBench } from './compression.js';
import { FANOUT_FULL, FANOUT_QUICK, renderFanoutMarkdown, runFanoutBench, type FanoutResult } from './fanout.js';
import {
  REPO_ROOT, TARGETS, TARGET_LABELS, commandExists, ensureInstalled, removeSnapshot, snapshotSluice, startBackends, startCEchoBackends, startHttpBackends, startTarget, versions,
  type Pinning, type Running, type TargetName,
} from './targets.js';

const HELP = `usage: npm run bench -- [options]

  --quick            one run, 2 s per figure, 2,000 held connections instead of 8,000 (under 2 min)
  --only LIST        targets to run, comma-separated: ${TARGETS.join(',')},compression,fanout [all]
                     (compression: the 2 KiB JSON rows with compression off/shared/dedicated and HAProxy;
                     fanout: Sluice vs Pushpin vs a backend sending each copy through HAProxy)
  --runs N           runs per target; each figure reports the median and min–max [3, --quick 1]
  --out DIR          where the .md and .json go [bench/results]
  --no-pin           do not pin with taskset (proxy on CPU 0, generator and backends on CPU 1)
  --no-install       do not apt-get install NGINX and HAProxy when missing (skip them instead)
  --http-only        only the plain HTTP figures (autocannon), for a short check of that row
  --no-compression   leave out the compression rows
  --no-fanout        leave out the fan-out row
  -h, --help         this text`;

interface BenchArgs {
  quick: boolean;
  only: TargetName[];
  runs: number;
  out: string;
  pin: boolean;
  install: boolean;
  httpOnly: boolean;
  compression: boolean;
  /** The fan-out row (bench/fanout.ts). */
  fanout: boolean;
}

function parseArgs(argv: readonly string[]): BenchArgs | null {
  const a: BenchArgs = { quick: false, only: [...TARGETS], runs: 0, out: join(REPO_ROOT, 'bench/results'), pin: true, install: true, httpOnly: false, compression: true, fanout: true };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`option '${arg}' needs a value`);
      return v;
    };
    if (arg === '--quick') a.quick = true;
    else if (arg === '--no-pin') a.pin = false;
    else if (arg === '--no-install') a.install = false;
    else if (arg === '--http-only') {
      // Only the HTTP figures: the compression and fan-out rows are left out too.
      a.httpOnly = true;
      a.compression = false;
      a.fanout = false;
    }
    else if (arg === '--no-compression') a.compression = false;
    else if (arg === '--no-fanout') a.fanout = false;
    else if (arg === '--help' || arg === '-h') return null;
    else if (arg === '--out') a.out = value();
    else if (arg === '--runs') {
      const v = value();
      a.runs = Number(v);
      if (!/^\d+$/.test(v) || a.runs < 1 || a.runs > 20) throw new Error(`invalid --runs '${v}': expected 1 to 20`);
    } else if (arg === '--only') {
      const v = value();
      const names = v.split(',').map((n) => n.trim());
      for (const n of names) {
        if (!(TARGETS as readonly string[]).includes(n) && n !== 'compression' && n !== 'fanout') {
          throw new Error(`invalid --only '${v}': unknown target '${n}' (expected ${TARGETS.join(', ')}, compression, fanout)`);
        }
      }
      a.only = TARGETS.filter((t) => names.includes(t));
      a.compression = names.includes('compression');
      a.fanout = names.includes('fanout');
    } else throw new Error(`unknown option '${arg}' (see --help)`);
  }
  if (a.runs === 0) a.runs = a.quick ? 1 : 3;
  return a;
}

function machine(): Record<string, string | number> {
  const os = (() => {
    try {
      return /PRETTY_NAME="([^"]+)"/.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? 'unknown';
    } catch {
      return 'unknown';
    }
  })();
  return {
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    cores: cpus().length,
    memory: `${Math.round(totalmem() / 2 ** 30)} GiB`,
    kernel: release(),
    os,
    'open files': openFileLimit(),
  };
}

const log = (line: string): void => void process.stderr.write(`${line}\n`);

/** CPU used over `ms` by processes other than this one and the backends, as % of one core. */
async function otherLoad(backendsPid: number, ms: number): Promise<number> {
  const machine = machineBusyMicros();
  const backends = cpuMicros([backendsPid]);
  const own = process.cpuUsage();
  await new Promise((r) => setTimeout(r, ms));
  const mine = process.cpuUsage(own);
  const other = machineBusyMicros() - machine - (cpuMicros([backendsPid]) - backends) - (mine.user + mine.system);
  return Math.max(0, (other / (ms * 1000)) * 100);
}

/**
 * On a shared machine, other work distorts latency most. Before each target, wait (a little) for
 * it to calm down: up to 10 s per target and 60 s per bench (15 s with --quick), so the bench stays bounded. What
 * remains is reported with each figure ("Other processes on the machine").
 */
let quietBudgetMs = 60_000; // set to 15 s for --quick in main()
async function waitForQuiet(backendsPid: number): Promise<void> {
  const started = Date.now();
  const until = started + Math.min(10_000, quietBudgetMs);
  let load = await otherLoad(backendsPid, 500);
  while (load > 25 && Date.now() < until) {
    log(`    waiting for other work on the machine to settle (${Math.round(load)}% of a core)`);
    load = await otherLoad(backendsPid, 1000);
  }
  quietBudgetMs -= Date.now() - started;
}

async function main(argv: readonly string[]): Promise<number> {
  let args: BenchArgs | null;
  try {
    args = parseArgs(argv);
  } catch (err) {
    process.stderr.write(`bench: ${(err as Error).message}\n`);
    return 2;
  }
  if (!args) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  const started = performance.now();
  const date = new Date();
  if (args.quick) quietBudgetMs = 15_000;
  const base: Omit<BenchSettings, 'generatorThreads'> = args.quick ? QUICK : FULL;
  if (base.heldConnections + FD_RESERVE > openFileLimit()) {
    process.stderr.write(`bench: holding ${base.heldConnections} connections needs ${base.heldConnections + FD_RESERVE} open files; ulimit -n is ${openFileLimit()}\n`);
    return 2;
  }

  const targetErrors = new Map<TargetName, string>();
  if (args.only.includes('nginx') || args.only.includes('haproxy') || args.compression) {
    if (args.install) {
      try {
        ensureInstalled(log);
      } catch (err) {
        log(`bench: apt-get failed: ${(err as Error).message}`);
      }
    }
    for (const t of ['nginx', 'haproxy'] as const) {
      if (args.only.includes(t) && !commandExists(t)) targetErrors.set(t, `${t} is not installed`);
    }
  }

  const canPin = args.pin && availableParallelism() >= 2 && commandExists('taskset');
  const pin: Pinning = canPin ? { proxyCpu: '0', loadCpu: '1' } : { proxyCpu: null, loadCpu: null };
  if (canPin) {
    // This process is the load generator: pin all its threads (and the piscina threads it will start) to CPU 1.
    execFileSync('taskset', ['-a', '-p', '-c', '1', String(process.pid)], { stdio: 'ignore' });
  }
  const settings: BenchSettings = { ...base, httpOnly: args.httpOnly, generatorThreads: canPin ? 1 : Math.min(2, availableParallelism()) };

  const live = new Set<Running>();
  const sluiceRoot = args.only.some((t) => t.startsWith('sluice')) || args.compression || args.fanout ? snapshotSluice() : null;
  const backends = await startBackends(pin);
  const httpBackends = await startHttpBackends(pin);
  const cEcho = args.httpOnly ? null : await startCEchoBackends(pin);
  let interrupted = false;
  process.on('SIGINT', () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    log('bench: interrupted, stopping what it started');
    void Promise.all([...live].map((r) => r.stop()).concat(backends.stop(), httpBackends.stop(), cEcho?.stop() ?? Promise.resolve())).then(() => {
      removeSnapshot(sluiceRoot);
      process.exit(130);
    });
  });
  log(`bench: echo backends on ${backends.ports.join(', ')}; ${args.runs} run(s) of ${args.only.map((t) => TARGET_LABELS[t]).join(', ')}${canPin ? '; proxy pinned to CPU 0, load to CPU 1' : ''}`);

  const results: Partial<Record<TargetName, TargetResult>> = {};
  let compression: BenchResults['compression'];
  for (const t of args.only) results[t] = { runs: [], error: targetErrors.get(t) ?? null, failures: [] };
  try {
    for (let run = 1; run <= args.runs; run++) {
      for (const t of args.only) {
        const result = results[t] as TargetResult;
        if (result.error !== null) continue;
        log(`run ${run}/${args.runs} · ${TARGET_LABELS[t]}`);
        await waitForQuiet(backends.pid);
        let running: Running | null = null;
        try {
          running = await startTarget(t, backends.ports, pin, sluiceRoot ?? undefined, httpBackends.ports, cEcho?.ports ?? []);
          live.add(running);
          result.runs.push(await measureTarget(running, backends.pid, settings, log, cEcho?.pid ?? null));
        } catch (err) {
          // A target that fails once is tried again next run; the failure stays in the notes.
          const message = `run ${run}: ${(err as Error).message}`;
          result.failures.push(message);
          log(`    ${TARGET_LABELS[t]} failed: ${message}`);
        } finally {
          if (running) {
            await running.stop();
            live.delete(running);
          }
        }
      }
    }
    if (args.compression) {
      await backends.stop();
      await waitForQuiet(backends.pid);
      compression = await runCompressionBench(args.quick ? COMPRESSION_QUICK : COMPRESSION_FULL, args.runs, pin, sluiceRoot, commandExists('haproxy'), log);
    }
  } finally {
    await backends.stop();
    await httpBackends.stop();
    await cEcho?.stop();
  }

  let fanout: FanoutResult[] = [];
  const fanoutSettings = args.quick ? FANOUT_QUICK : FANOUT_FULL;
  try {
    if (args.fanout) {
      if (args.install) {
        try {
          ensureInstalled(log, [['pushpin', 'pushpin'], ['zurl', 'zurl'], ['haproxy', 'haproxy']]);
        } catch (err) {
          log(`bench: apt-get failed: ${(err as Error).message}`);
        }
      }
      fanout = await runFanoutBench(fanoutSettings, pin, sluiceRoot ?? REPO_ROOT, log);
    }
  } finally {
    removeSnapshot(sluiceRoot);
  }

  const bench: BenchResults = {
    date: date.toISOString(),
    command: `npm run bench${argv.length > 0 ? ` -- ${argv.join(' ')}` : ''}`,
    machine: machine(),
    versions: versions(),
    pinning: canPin
      ? 'proxy on CPU 0 (taskset -c 0); load generator (1 thread) and echo backends on CPU 1'
      : 'none (fewer than 2 CPUs, taskset missing, or --no-pin)',
    settings: {
      'fixed rate': `${settings.rateConnections} connections × 1 msg / ${settings.rateIntervalMs} ms`,
      'measured per figure': `${settings.duration} s after ${settings.warmup} s warm-up`,
      'held connections': settings.heldConnections,
      throughput: `${settings.throughputConnections} connections × ${settings.throughputInFlight} in flight`,
      churn: `${settings.churnConcurrency} at a time`,
      http: `autocannon, ${settings.httpConnections} connections (small GET), ${settings.httpLargeConnections} (1 MiB), keep-alive${settings.httpOnly ? ', HTTP figures only' : ''}`,
    },
    wallSeconds: (performance.now() - started) / 1000,
    targets: results,
    compression,
  };
  mkdirSync(args.out, { recursive: true });
  const stamp = date.toISOString().slice(0, 16).replace('T', '-').replace(':', '');
  const name = `${stamp}${args.quick ? '-quick' : ''}${args.httpOnly ? '-http' : ''}`;
  const md = renderMarkdown(bench) + (args.fanout ? `\n${renderFanoutMarkdown(fanout, fanoutSettings)}` : '');
  writeFileSync(join(args.out, `${name}.md`), md);
  const json = renderJson(bench);
  writeFileSync(join(args.out, `${name}.json`), args.fanout ? `${JSON.stringify({ ...(JSON.parse(json) as object), fanout: { settings: fanoutSettings, results: fanout } }, null, 2)}\n` : json);
  process.stdout.write(`${md}\nwritten: ${join(args.out, name)}.md and .json\n`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: Error) => {
    process.stderr.write(`bench: ${err.stack ?? err.message}\n`);
    process.exitCode = 1;
  },
);
