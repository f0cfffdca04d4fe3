/**
 * The measurements of one bench run against one target, each a load-generator run whose measured
 * window is also the window over which the proxy's CPU is read from /proc: the phase hooks sample
 * the proxy when measuring starts and when it stops, so ramp-up, warm-up and drain stay out.
 */
import autocannon, { type Result as AutocannonResult } from 'autocannon';
import { parseOptions } from '../loadtest/options.js';
import { runLoad, type LoadReport } from '../loadtest/run.js';
import { performance } from 'node:perf_hooks';
import { cpuMicros, machineBusyMicros, processTree, rssBytes } from './procstat.js';
import type { Running } from './targets.js';
import { loadNativeClient } from '../loadtest/native-client.js';

/** The generator's native client, when built (the throughput row uses it). */
const nativeClient = (await loadNativeClient()).loadgen;

export interface BenchSettings {
  readonly quick: boolean;
  /** Seconds measured per figure, and warm-up before each. */
  readonly duration: number;
  readonly warmup: number;
  /** The fixed open-loop load: connections × one message per interval. */
  readonly rateConnections: number;
  readonly rateIntervalMs: number;
  readonly heldConnections: number;
  readonly throughputConnections: number;
  readonly throughputInFlight: number;
  readonly churnConcurrency: number;
  /** Generator threads: 1 when pinned to one core (more would only take turns on it). */
  readonly generatorThreads: number;
  /** Plain HTTP (autocannon): connections for the small GET and for the 1 MiB response. */
  readonly httpConnections: number;
  readonly httpLargeConnections: number;
  /** Only the plain HTTP figures (a smoke run of that row, or a comparison of HTTP alone). */
  readonly httpOnly: boolean;
}

export const FULL: Omit<BenchSettings, 'generatorThreads'> = {
  quick: false,
  duration: 5,
  warmup: 1,
  rateConnections: 2000,
  rateIntervalMs: 100,
  heldConnections: 8000,
  throughputConnections: 100,
  throughputInFlight: 16,
  churnConcurrency: 50,
  httpConnections: 50,
  httpLargeConnections: 10,
  httpOnly: false,
};

export const QUICK: Omit<BenchSettings, 'generatorThreads'> = {
  ...FULL,
  quick: true,
  duration: 2,
  warmup: 0.5,
  heldConnections: 2000,
};

/** One run's figures for one target; null where a figure does not apply (no proxy) or failed. */
export type Figures = Record<string, number | null>;

export interface GeneratorUse {
  /** Per measurement: the generator's CPU as % of one core, and µs per message (or upgrade). */
  readonly [measurement: string]: { percentOfOneCore: number; usPerUnit: number };
}

export interface TargetRun {
  readonly figures: Figures;
  readonly generator: GeneratorUse;
  readonly notes: string[];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Measured {
  report: LoadReport;
  proxyCpuUs: number | null;
  /** CPU that neither the proxy, the generator nor the backends used, as % of one core: other work on the machine. */
  otherLoad: number;
}

/** Runs the generator and reads the proxy's CPU (µs, all processes and threads) over the measured window. */
async function loadWithProxyCpu(target: Running, backendsPid: number, argv: string[]): Promise<Measured> {
  const options = parseOptions(argv);
  if (!options) throw new Error('internal: --help in bench options');
  let pids: number[] = [];
  const at = (): { proxy: number; backends: number; own: number; machine: number; wall: number } => {
    const own = process.cpuUsage();
    return {
      proxy: target.pid === null ? 0 : cpuMicros(pids),
      backends: cpuMicros([backendsPid]),
      own: own.user + own.system,
      machine: machineBusyMicros(),
      wall: performance.now(),
    };
  };
  let before = at();
  let after = before;
  const report = await runLoad(options, {
    onPhase(phase) {
      if (phase === 'measure') {
        if (target.pid !== null) pids = processTree(target.pid);
        before = at();
      } else if (phase === 'stop') {
        after = at();
      }
    },
  });
  const accounted = after.proxy - before.proxy + (after.backends - before.backends) + (after.own - before.own);
  const wallUs = (after.wall - before.wall) * 1000;
  const otherLoad = wallUs > 0 ? Math.max(0, ((after.machine - before.machine - accounted) / wallUs) * 100) : 0;
  return { report, proxyCpuUs: target.pid === null ? null : after.proxy - before.proxy, otherLoad };
}

function common(target: Running, s: BenchSettings): string[] {
  return ['--url', target.urls.join(','), '--threads', String(s.generatorThreads), '--rate', '4000', '--no-progress'];
}

/**
 * `cEchoPid`: the C echo backends' process when they run (the throughput row then goes through the proxy to
 * them with the generator's native client, so that neither the generator nor the backend is the limit).
 */
export async function measureTarget(target: Running, backendsPid: number, s: BenchSettings, log: (line: string) => void, cEchoPid: number | null = null): Promise<TargetRun> {
  const figures: Figures = {};
  const generator: Record<string, { percentOfOneCore: number; usPerUnit: number }> = {};
  const notes: string[] = [];
  const noteFailures = (what: string, r: LoadReport): void => {
    const bad = { ...r.connections.failures, ...r.connections.closedEarly };
    if (Object.keys(bad).length > 0) notes.push(`${what}: ${JSON.stringify(bad)}`);
    if (r.lost > 0) notes.push(`${what}: lost ${r.lost} of ${r.sent}`);
    if (r.corrupt > 0) notes.push(`${what}: ${r.corrupt} echoes of the wrong length`);
  };
  const perUnit = (cpu: number | null, units: number): number | null => (cpu === null || units === 0 ? null : cpu / units);

  if (s.httpOnly) {
    await measureHttp(target, s, figures, notes, log);
    return { figures, generator, notes };
  }

  // Memory first, on a freshly started proxy, so earlier load has not already grown its heap.
  if (target.pid !== null) {
    await sleep(500);
    const idle = rssBytes(processTree(target.pid));
    let held = idle;
    const options = parseOptions(['connect', ...common(target, s), '--connections', String(s.heldConnections), '--duration', '1']);
    const report = await runLoad(options!, {
      async onPhase(phase) {
        if (phase !== 'measure' || target.pid === null) return;
        await sleep(1000); // let the proxy settle every buffer it allocated for the last upgrades
        held = rssBytes(processTree(target.pid));
      },
    });
    figures.rssPerConnection = report.connections.opened > 0 ? (held - idle) / report.connections.opened : null;
    generator.connect = { percentOfOneCore: report.cpu.percentOfOneCore, usPerUnit: report.cpu.usPerMessage };
    noteFailures(`hold ${s.heldConnections}`, report);
    if (report.connections.opened < s.heldConnections) notes.push(`hold: only ${report.connections.opened} of ${s.heldConnections} opened`);
    log(`    idle memory: ${fmt(figures.rssPerConnection)} B per connection (${report.connections.opened} held)`);
    await sleep(500);
  }

  for (const size of [64, 4096]) {
    const tag = size === 64 ? '64' : '4k';
    const { report, proxyCpuUs, otherLoad } = await loadWithProxyCpu(target, backendsPid, [
      'echo', ...common(target, s),
      '--connections', String(s.rateConnections), '--interval', String(s.rateIntervalMs), '--size', String(size),
      '--warmup', String(s.warmup), '--duration', String(s.duration),
    ]);
    figures[`cpu${tag}`] = perUnit(proxyCpuUs, report.received);
    const sampled = report.latencyUs.count > 0;
    figures[`p50_${tag}`] = sampled ? report.latencyUs.p50 : null;
    figures[`p99_${tag}`] = sampled ? report.latencyUs.p99 : null;
    figures[`p999_${tag}`] = sampled ? report.latencyUs.p999 : null;
    figures[`lost${tag}`] = report.lost;
    // Latency is what other work on the machine disturbs most; keep the worst of the two windows.
    figures.otherLoad = Math.max(figures.otherLoad ?? 0, otherLoad);
    if (otherLoad > 25) notes.push(`echo ${size} B: other processes used ${Math.round(otherLoad)}% of a core meanwhile`);
    generator[`echo ${tag}`] = { percentOfOneCore: report.cpu.percentOfOneCore, usPerUnit: report.cpu.usPerMessage };
    noteFailures(`echo ${size} B`, report);
    log(`    echo ${size} B: ${report.messagesPerSecond} msg/s, p99 ${report.latencyUs.p99} µs, proxy ${fmt(figures[`cpu${tag}`])} µs/msg, lost ${report.lost}`);
    await sleep(500);
  }

  {
    // The proxy's limit, not the load side's: the native client (one C thread) and C echo backends when
    // built; else the Node client and the uWS echo backends, which the notes say.
    const native = target.throughputUrls !== null && cEchoPid !== null && nativeClient !== null;
    if (!native) notes.push(`throughput: Node client and uWS echo backends (${nativeClient === null ? 'the native client is not built' : 'ws-echo is not built'}): the load side may be the limit`);
    const { report, proxyCpuUs } = await loadWithProxyCpu(target, native ? cEchoPid : backendsPid, [
      'throughput', '--url', (native ? target.throughputUrls! : target.urls).join(','), '--threads', String(s.generatorThreads), '--rate', '4000', '--no-progress',
      ...(native ? ['--client', 'native'] : []),
      '--connections', String(s.throughputConnections), '--in-flight', String(s.throughputInFlight), '--size', '64',
      '--warmup', String(s.warmup), '--duration', String(s.duration),
    ]);
    figures.throughput = report.messagesPerSecond;
    figures.throughputProxyCpu = proxyCpuUs === null ? null : (proxyCpuUs / (report.measuredSeconds * 1e6)) * 100;
    // When the load core, not the proxy, sets the pace, msg/s says little about the proxy; its CPU per message still does.
    figures.cpuMax = perUnit(proxyCpuUs, report.received);
    generator.throughput = { percentOfOneCore: report.cpu.percentOfOneCore, usPerUnit: report.cpu.usPerMessage };
    noteFailures('throughput', report);
    log(`    throughput: ${report.messagesPerSecond} msg/s (proxy at ${fmt(figures.throughputProxyCpu)}% of a core)`);
    await sleep(500);
  }

  {
    const { report, proxyCpuUs } = await loadWithProxyCpu(target, backendsPid, [
      'churn', '--url', target.urls.join(','), '--threads', String(s.generatorThreads), '--no-progress',
      '--concurrency', String(s.churnConcurrency), '--warmup', String(s.warmup), '--duration', String(s.duration),
    ]);
    figures.cpuPerUpgrade = perUnit(proxyCpuUs, report.upgrades);
    figures.upgradesPerSecond = report.upgradesPerSecond;
    generator.churn = { percentOfOneCore: report.cpu.percentOfOneCore, usPerUnit: report.cpu.usPerMessage };
    noteFailures('churn', report);
    log(`    churn: ${report.upgradesPerSecond} upgrades/s, proxy ${fmt(figures.cpuPerUpgrade)} µs per upgrade`);
  }
  await sleep(500);
  await measureHttp(target, s, figures, notes, log);
  return { figures, generator, notes };
}

/**
 * Plain HTTP with autocannon (in this process, on the load core): a small GET over keep-alive connections,
 * then a 1 MiB response, each after a 1 s warm-up. Requests/s, and the proxy's CPU (its whole process tree,
 * from /proc) per request over the measured window.
 */
async function measureHttp(target: Running, s: BenchSettings, figures: Figures, notes: string[], log: (line: string) => void): Promise<void> {
  const runs: [tag: string, path: string, connections: number][] = [
    ['Small', '/http/small', s.httpConnections],
    ['1m', '/http/1mib', s.httpLargeConnections],
  ];
  for (const [tag, path, connections] of runs) {
    const { result, requestsPerSecond, cpuPerRequest } = await httpWindow(target, `${target.httpUrl}${path}`, connections, s.warmup, s.duration);
    figures[`httpRps${tag}`] = requestsPerSecond;
    figures[`httpCpu${tag}`] = cpuPerRequest;
    const bad = result.errors + result.timeouts + result.non2xx;
    if (bad > 0) notes.push(`HTTP ${path}: ${result.errors} errors, ${result.timeouts} timeouts, ${result.non2xx} non-2xx answers`);
    log(`    HTTP ${path}: ${Math.round(requestsPerSecond)} req/s, proxy ${fmt(figures[`httpCpu${tag}`])} µs per request, p99 ${result.latency.p99} ms`);
    await sleep(300);
  }
}

/** Autocannon against `url` for `seconds` after a warm-up, with the CPU µs the target's process tree spent per
 *  2xx answer in that window (null for direct). bench/http-floor.ts measures with it too. */
export async function httpWindow(
  target: Running,
  url: string,
  connections: number,
  warmupSeconds: number,
  seconds: number,
): Promise<{ result: AutocannonResult; requestsPerSecond: number; cpuPerRequest: number | null }> {
  await autocannon({ url, connections, duration: Math.max(1, Math.round(warmupSeconds)), timeout: 10 });
  const pids = target.pid === null ? [] : processTree(target.pid);
  const before = target.pid === null ? 0 : cpuMicros(pids);
  const result = await autocannon({ url, connections, duration: seconds, timeout: 10 });
  const cpu = target.pid === null ? null : cpuMicros(pids) - before;
  const requests = result['2xx'];
  return { result, requestsPerSecond: requests / result.duration, cpuPerRequest: cpu === null || requests === 0 ? null : cpu / requests };
}

function fmt(n: number | null | undefined): string {
  return n === null || n === undefined ? '-' : n >= 100 ? Math.round(n).toString() : n.toFixed(1);
}
