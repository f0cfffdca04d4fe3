/**
 * The conductor: spreads the connections over piscina threads, walks every thread through the
 * same phases (ramp-up → warm-up → measure → stop), shows progress each second, and merges the
 * threads' results exactly (counters summed, histograms decoded and added). The CLI and the bench
 * both call runLoad; the bench hooks the phase changes to read the proxy's CPU over the same window.
 */
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import { Piscina } from 'piscina';
import { unpack } from 'msgpackr';
import { addEncoded, newHistogram, percentiles, type Percentiles } from './histogram.js';
import type { LoadOptions } from './options.js';
import type { SlowResult, ThreadMessage, ThreadResult, ThreadTask } from './protocol.js';

export type Phase = 'ramp' | 'warmup' | 'measure' | 'stop' | 'done';

export interface Progress {
  readonly elapsedSeconds: number;
  readonly phase: Phase;
  readonly open: number;
  readonly sentPerSecond: number;
  readonly receivedPerSecond: number;
  readonly upgradesPerSecond: number;
  readonly errors: number;
  /** p99 of the latencies recorded in the last second, all threads merged (µs). */
  readonly recentP99: number;
}

export interface RunHooks {
  /** Awaited before the phase starts counting time, so a hook may sample something first. */
  onPhase?(phase: Phase): void | Promise<void>;
  onProgress?(progress: Progress): void;
  /** Aborting stops the run early; the result is still complete for what was measured (Ctrl-C). */
  signal?: AbortSignal;
}

export interface CpuUsage {
  /** This process (all threads) over the measured window (connect: from the first attempt, as the ramp is its work). */
  readonly userMs: number;
  readonly systemMs: number;
  readonly percentOfOneCore: number;
  /** CPU per message counted once per direction (sent + received); for connect and churn per upgrade; 0 when
   *  there was none to divide by (the summary then prints no per-unit figure). */
  readonly usPerMessage: number;
}

export interface LoadReport {
  readonly scenario: LoadOptions['scenario'];
  readonly urls: readonly string[];
  readonly settings: Record<string, number | string>;
  readonly interrupted: boolean;
  /** Seconds from the first connection attempt until every attempt had settled (opened or failed). */
  readonly rampSeconds: number;
  readonly measuredSeconds: number;
  readonly connections: {
    readonly attempted: number;
    readonly opened: number;
    readonly peak: number;
    readonly failed: number;
    readonly failures: Record<string, number>;
    readonly closedEarly: Record<string, number>;
  };
  readonly sent: number;
  readonly received: number;
  readonly lost: number;
  readonly corrupt: number;
  /** receive: messages counted without latency because they carried no push stamp. */
  readonly unstamped: number;
  readonly messagesPerSecond: number;
  readonly bytesPerSecond: { readonly sent: number; readonly received: number };
  readonly latencyUs: Percentiles;
  readonly upgrades: number;
  readonly upgradesPerSecond: number;
  readonly upgradeLatencyUs: Percentiles;
  readonly sendLagUs: Percentiles;
  readonly slow: SlowResult | null;
  readonly cpu: CpuUsage;
}

const THREAD_FILE = new URL('./thread.js', import.meta.url).href;

export async function runLoad(options: LoadOptions, hooks: RunHooks = {}): Promise<LoadReport> {
  const threads = options.threads;
  const total = options.scenario === 'churn' ? options.concurrency : options.connections;
  const pool = new Piscina({ filename: THREAD_FILE, minThreads: threads, maxThreads: threads, atomics: 'disabled', idleTimeout: 60_000 });
  const ports: MessagePort[] = [];
  const latest = new Map<number, Extract<ThreadMessage, { type: 'progress' }>>();
  let readyCount = 0;
  let onReady: () => void = () => {};
  const recent = newHistogram();
  const results: Promise<Uint8Array>[] = [];
  let firstIndex = 0;
  for (let t = 0; t < threads; t++) {
    const count = Math.floor(total / threads) + (t < total % threads ? 1 : 0);
    const { port1, port2 } = new MessageChannel();
    port1.on('message', (m: ThreadMessage) => {
      if (m.type === 'ready') {
        readyCount++;
        onReady();
      } else {
        latest.set(t, m);
        addEncoded(recent, m.recent);
      }
    });
    ports.push(port1);
    const task: ThreadTask = { options, thread: t, firstIndex, count, port: port2 };
    results.push(pool.run(task, { transferList: [port2] }) as Promise<Uint8Array>);
    firstIndex += count;
  }
  // A thread that crashes must end the run rather than leave the conductor waiting on it.
  let failed: Error | null = null;
  let wake: () => void = () => {};
  for (const r of results) r.catch((err: Error) => ((failed ??= err), wake()));

  const signal = hooks.signal;
  const runStart = performance.now();
  let phase: Phase = 'ramp';
  const enter = async (next: Phase): Promise<void> => {
    phase = next;
    await hooks.onPhase?.(next);
  };
  const broadcast = (type: 'start' | 'measure' | 'stop'): void => {
    for (const p of ports) p.postMessage({ type });
  };
  /** Resolves after `ms`, or earlier on abort, on a thread failure, or when `until` turns true. */
  const wait = (ms: number, until: () => boolean = () => false): Promise<void> =>
    new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
      onReady = () => until() && done();
      wake = done;
      if (until() || signal?.aborted || failed) done();
    });

  let previous = { at: runStart, sent: 0, received: 0, upgrades: 0 };
  const ticker = setInterval(() => {
    const now = performance.now();
    let open = 0, sent = 0, received = 0, upgrades = 0, errors = 0;
    for (const m of latest.values()) {
      open += m.open;
      sent += m.rawSent;
      received += m.rawReceived;
      upgrades += m.upgrades;
      errors += m.failures;
    }
    const seconds = (now - previous.at) / 1000;
    const progress: Progress = {
      elapsedSeconds: (now - runStart) / 1000,
      phase,
      open,
      sentPerSecond: (sent - previous.sent) / seconds,
      receivedPerSecond: (received - previous.received) / seconds,
      upgradesPerSecond: Math.max(0, upgrades - previous.upgrades) / seconds,
      errors,
      recentP99: recent.totalCount > 0 ? recent.getValueAtPercentile(99) : 0,
    };
    recent.reset();
    previous = { at: now, sent, received, upgrades };
    hooks.onProgress?.(progress);
  }, 1000);

  const cpuAtStart = process.cpuUsage();
  let cpuAtMeasure = cpuAtStart;
  let cpuWindow = { user: 0, system: 0 };
  let cpuSeconds = 0;
  let measureStartedAt = performance.now();
  let measureEndedAt = measureStartedAt;
  let rampSeconds = 0;
  try {
    await enter('ramp');
    // Ramp-up is bounded: every attempt settles within the connect timeout after it starts.
    const rampBound = (total / options.rate) * 1000 + options.connectTimeoutMs + 2000;
    await wait(rampBound, () => readyCount >= threads);
    rampSeconds = (performance.now() - runStart) / 1000;
    if (!signal?.aborted && !failed) {
      broadcast('start');
      if (options.warmup > 0 && options.scenario !== 'connect') {
        await enter('warmup');
        await wait(options.warmup * 1000);
      }
    }
    if (!signal?.aborted && !failed) {
      await enter('measure');
      broadcast('measure');
      cpuAtMeasure = process.cpuUsage();
      measureStartedAt = performance.now();
      await wait(options.duration * 1000);
      measureEndedAt = performance.now();
      // connect's work is the ramp-up itself, so its CPU is counted from the first attempt.
      const fromStart = options.scenario === 'connect';
      cpuWindow = process.cpuUsage(fromStart ? cpuAtStart : cpuAtMeasure);
      cpuSeconds = (measureEndedAt - (fromStart ? runStart : measureStartedAt)) / 1000;
    }
    await enter('stop');
    broadcast('stop');
    const packed = await Promise.all(results);
    if (failed) throw failed;
    await enter('done');
    const merged = merge(packed.map((p) => unpack(p) as ThreadResult));
    const cpu = { ...cpuWindow, seconds: cpuSeconds };
    return report(options, merged, signal?.aborted === true, rampSeconds, (measureEndedAt - measureStartedAt) / 1000, cpu);
  } finally {
    clearInterval(ticker);
    for (const p of ports) p.close();
    await pool.destroy();
  }
}

interface Merged extends Omit<ThreadResult, 'rtt' | 'upgrade' | 'lag'> {
  rtt: Percentiles;
  upgrade: Percentiles;
  lag: Percentiles;
}

function addCounts(into: Record<string, number>, from: Record<string, number>): void {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
}

function merge(parts: ThreadResult[]): Merged {
  const rtt = newHistogram();
  const upgrade = newHistogram();
  const lag = newHistogram();
  const m: Merged = {
    attempted: 0, opened: 0, peakOpen: 0, failures: {}, closedEarly: {}, sent: 0, received: 0, corrupt: 0, unstamped: 0,
    bytesSent: 0, bytesReceived: 0, upgrades: 0, measuredMs: 0, slow: null,
    rtt: percentiles(rtt), upgrade: percentiles(upgrade), lag: percentiles(lag),
  };
  for (const p of parts) {
    m.attempted += p.attempted;
    m.opened += p.opened;
    // Threads ramp in parallel and hold what they open, so the sum of their peaks is the peak held.
    m.peakOpen += p.peakOpen;
    addCounts(m.failures, p.failures);
    addCounts(m.closedEarly, p.closedEarly);
    m.sent += p.sent;
    m.received += p.received;
    m.corrupt += p.corrupt;
    m.unstamped += p.unstamped;
    m.bytesSent += p.bytesSent;
    m.bytesReceived += p.bytesReceived;
    m.upgrades += p.upgrades;
    m.measuredMs = Math.max(m.measuredMs, p.measuredMs);
    addEncoded(rtt, p.rtt);
    addEncoded(upgrade, p.upgrade);
    addEncoded(lag, p.lag);
    if (p.slow) {
      const s = (m.slow ??= { connections: 0, sent: 0, bytesSent: 0, everBlocked: 0, blockedAtStop: 0, closed: {}, receivedAfterResume: 0, bytesReceivedAfterResume: 0 });
      s.connections += p.slow.connections;
      s.sent += p.slow.sent;
      s.bytesSent += p.slow.bytesSent;
      s.everBlocked += p.slow.everBlocked;
      s.blockedAtStop += p.slow.blockedAtStop;
      addCounts(s.closed, p.slow.closed);
      s.receivedAfterResume += p.slow.receivedAfterResume;
      s.bytesReceivedAfterResume += p.slow.bytesReceivedAfterResume;
    }
  }
  m.rtt = percentiles(rtt);
  m.upgrade = percentiles(upgrade);
  m.lag = percentiles(lag);
  return m;
}

function report(
  o: LoadOptions,
  m: Merged,
  interrupted: boolean,
  rampSeconds: number,
  windowSeconds: number,
  cpu: { user: number; system: number; seconds: number },
): LoadReport {
  const seconds = windowSeconds > 0 ? windowSeconds : m.measuredMs / 1000;
  const perSecond = (n: number): number => (seconds > 0 ? Math.round(n / seconds) : 0);
  const upgradeBased = o.scenario === 'connect' || o.scenario === 'churn';
  const units = upgradeBased ? m.upgrades : m.sent + m.received;
  const settings: Record<string, number | string> = { connections: o.connections, threads: o.threads, duration: o.duration, warmup: o.warmup, rate: o.rate };
  if (o.scenario === 'echo' || o.scenario === 'slow-consumer') Object.assign(settings, { interval: o.intervalMs, size: o.size });
  if (o.scenario === 'throughput') Object.assign(settings, { inFlight: o.inFlight, size: o.size });
  if (o.scenario === 'churn') Object.assign(settings, { concurrency: o.concurrency, connections: 0 });
  if (o.scenario === 'slow-consumer') Object.assign(settings, { slow: o.slow, slowSize: o.slowSize });
  if (o.hostHeader !== undefined) settings.hostHeader = o.hostHeader;
  if (o.servername !== undefined) settings.servername = o.servername;
  return {
    scenario: o.scenario,
    urls: o.urls,
    settings,
    interrupted,
    rampSeconds: Math.round(rampSeconds * 1000) / 1000,
    measuredSeconds: Math.round(seconds * 1000) / 1000,
    connections: {
      attempted: m.attempted,
      opened: m.opened,
      peak: m.peakOpen,
      failed: Object.values(m.failures).reduce((a, b) => a + b, 0),
      failures: m.failures,
      closedEarly: m.closedEarly,
    },
    sent: m.sent,
    received: m.received,
    lost: Math.max(0, m.sent - m.received),
    corrupt: m.corrupt,
    unstamped: m.unstamped,
    messagesPerSecond: perSecond(m.received),
    bytesPerSecond: { sent: perSecond(m.bytesSent), received: perSecond(m.bytesReceived) },
    latencyUs: m.rtt,
    upgrades: m.upgrades,
    upgradesPerSecond: o.scenario === 'churn' ? perSecond(m.upgrades) : 0,
    upgradeLatencyUs: m.upgrade,
    sendLagUs: m.lag,
    slow: m.slow,
    cpu: {
      userMs: Math.round(cpu.user / 1000),
      systemMs: Math.round(cpu.system / 1000),
      percentOfOneCore: cpu.seconds > 0 ? Math.round(((cpu.user + cpu.system) / (cpu.seconds * 1e6)) * 1000) / 10 : 0,
      usPerMessage: units > 0 ? Math.round(((cpu.user + cpu.system) / units) * 100) / 100 : 0,
    },
  };
}
