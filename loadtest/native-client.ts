/**
 * One load thread on the native client (`--client native`): the same task, control messages,
 * progress and ThreadResult as thread.ts with LeanWebSocket, but every frame is handled in C
 * (native/src/loadgen.c) on this thread's libuv loop. JavaScript sees only opens and closes, and four
 * times a second the counters and the recent latencies, copied into arrays made once per run.
 *
 * Why: the Node client pays a JavaScript call, a histogram record and a Buffer per message, which
 * caps one thread well below what an echo server answers on this machine; the C client frames, stamps
 * and parses without leaving the loop. Supports ws:// targets and the connect, echo and throughput
 * scenarios (options.ts refuses the rest).
 */
import { createHash, randomBytes } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import net from 'node:net';
import { constants } from 'node:os';
import { performance } from 'node:perf_hooks';
import type * as hdr from 'hdr-histogram-js';
import type { NativeLoadGen } from '../native/loadgen.js';
import { encodeHistogram, newHistogram, recordMicros } from './histogram.js';
import type { ControlMessage, ThreadResult, ThreadTask } from './protocol.js';
import { ThreadRunBase, runThreadTask, sleep } from './thread-run.js';
import { parseTarget } from './client.js';

/** The addon (compiled to dist/loadtest/, its loader stays at <repo>/native/), or why it is missing. */
export async function loadNativeClient(): Promise<{ loadgen: NativeLoadGen | null; error: Error | null }> {
  const m = (await import(new URL('../../native/loadgen.js', import.meta.url).href)) as typeof import('../native/loadgen.js');
  return { loadgen: m.default, error: m.loadError };
}

/** Scenarios the native client runs. */
export const NATIVE_SCENARIOS = ['connect', 'echo', 'throughput'] as const;

/** Why a connection ended, by the code loadgen.c reports (enum lg_reason). */
const REASONS = ['', 'refused', 'reset', 'timeout', 'closed', 'bad response', 'status', 'bad accept', 'masked frame from server', 'error'];
const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const HIST_PAIRS = 23_552;

/** The upgrade request the C client sends for `path` on `host`, and the Sec-WebSocket-Accept it must get. */
export function nativeUpgrade(path: string, host: string): { request: Buffer; accept: string } {
  const key = randomBytes(16).toString('base64');
  const accept = createHash('sha1').update(key + GUID).digest('base64');
  const request = Buffer.from(
    `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    'latin1',
  );
  return { request, accept };
}

/** A reusable buffer for copyNativeHistogram. */
export const newHistogramPairs = (): Float64Array => new Float64Array(2 * HIST_PAIRS);

/** Copies one of the C client's histograms into an hdr one (the bucket floors are hdr's own at 3 significant digits). */
export function copyNativeHistogram(lg: NativeLoadGen, which: 0 | 1 | 2, pairs: Float64Array, into: hdr.Histogram, reset: boolean): hdr.Histogram {
  const n = lg.lgHistogram(which, pairs, reset);
  for (let i = 0; i < n; i++) into.recordValueWithCount(Math.min(pairs[2 * i]!, 3_600_000_000), pairs[2 * i + 1]!);
  return into;
}

function errorName(status: number): string {
  for (const [name, value] of Object.entries(constants.errno)) if (value === -status) return name;
  return String(status);
}

class NativeThreadRun extends ThreadRunBase {
  held = 0;
  private readonly open = new Set<number>();
  private readonly hosts: { host: string; port: number; path: string; hostHeader: string }[] = [];
  readonly stats = new Float64Array(12);
  private readonly pairs = newHistogramPairs();
  constructor(
    task: ThreadTask,
    readonly lg: NativeLoadGen,
  ) {
    super(task);
  }

  async resolveTargets(): Promise<void> {
    for (const url of this.options.urls) {
      const { hostHeader, servername } = this.options;
      const t = parseTarget(url, { hostHeader, servername });
      const host = net.isIP(t.host) !== 0 ? t.host : (await lookup(t.host)).address;
      this.hosts.push({ host, port: t.port, path: t.path, hostHeader: t.hostHeader });
    }
  }

  init(): void {
    const o = this.options;
    this.lg.lgInit(
      {
        scenario: o.scenario === 'echo' ? 1 : o.scenario === 'throughput' ? 2 : 0,
        size: o.size,
        inFlight: o.inFlight,
        intervalMs: o.intervalMs,
        threads: o.threads,
        thread: this.task.thread,
        timeoutMs: o.connectTimeoutMs,
      },
      { onOpen: (id, micros) => this.onOpen(id, micros), onClose: (id, reason, detail, wasOpen, peerCode) => this.onClose(id, reason, detail, wasOpen, peerCode) },
    );
  }

  connect(index: number): void {
    const target = this.hosts[index % this.hosts.length]!;
    const addrs = this.options.localAddresses;
    const { request, accept } = nativeUpgrade(target.path, target.hostHeader);
    this.attempted++;
    const id = this.lg.lgConnect(target.host, target.port, addrs.length > 0 ? addrs[index % addrs.length]! : null, request, accept);
    if (id < 0) this.onClose(0, 9, id, false, 0); // could not even start (bad address, no file descriptors)
  }

  onOpen(id: number, micros: number): void {
    this.opened++;
    this.settled++;
    this.open.add(id);
    if (this.open.size > this.peakOpen) this.peakOpen = this.open.size;
    this.upgrades++;
    recordMicros(this.upgradeLatency, micros);
    if (this.options.scenario === 'connect') recordMicros(this.recent, micros);
    this.held++;
    this.maybeReady();
  }

  /** The same bookkeeping as ThreadRun.onClose, from loadgen.c's reason codes. */
  onClose(id: number, reason: number, detail: number, wasOpen: boolean, peerCode: number): void {
    const wasInOpen = this.open.delete(id);
    const failure = reason === 0 ? null : reason === 6 ? `status ${detail}` : reason === 9 ? `error ${errorName(detail)}` : REASONS[reason]!;
    if (!wasOpen) {
      this.settled++;
      if (!this.stopping) {
        const key = failure ?? 'closed';
        this.failures[key] = (this.failures[key] ?? 0) + 1;
        this.failureCount++;
      }
      this.maybeReady();
    } else if (wasInOpen && failure !== null && !this.stopping) {
      const key = peerCode > 0 ? `close ${peerCode}` : failure;
      this.closedEarly[key] = (this.closedEarly[key] ?? 0) + 1;
      this.failureCount++;
    }
  }

  private maybeReady(): void {
    if (!this.readySent && this.settled >= this.task.count) this.ready();
  }

  control(message: ControlMessage): void {
    if (message.type === 'start' && !this.running && !this.stopping) {
      this.running = true;
      this.lg.lgControl(0);
    } else if (message.type === 'measure' && !this.measuring && !this.stopping) {
      this.measuring = true;
      this.measureStart = performance.now();
      this.lg.lgControl(1);
    } else if (message.type === 'stop') {
      this.markStopped();
      this.lg.lgControl(2);
    }
  }

  histogram(which: 0 | 1 | 2, into: hdr.Histogram, reset: boolean): hdr.Histogram {
    return copyNativeHistogram(this.lg, which, this.pairs, into, reset);
  }

  progress(): void {
    this.lg.lgStats(this.stats);
    if (this.options.scenario !== 'connect') this.histogram(1, this.recent, true);
    this.post({
      type: 'progress',
      open: this.open.size,
      rawSent: this.stats[3]!,
      rawReceived: this.stats[4]!,
      upgrades: this.upgrades,
      failures: this.failureCount,
      recent: encodeHistogram(this.recent),
    });
    this.recent.reset();
  }

  async finish(): Promise<ThreadResult> {
    const deadline = performance.now() + this.options.drain * 1000;
    for (;;) {
      this.lg.lgStats(this.stats);
      if (this.stats[10] === 0 || performance.now() >= deadline) break;
      await sleep(10);
    }
    this.lg.lgCloseAll(1000, 1000);
    const closeDeadline = performance.now() + 1500;
    while (this.open.size > 0 && performance.now() < closeDeadline) await sleep(10);
    this.lg.lgDestroyAll();
    this.lg.lgStats(this.stats);
    const s = this.stats;
    const rtt = this.histogram(0, newHistogram(), false);
    const lag = this.histogram(2, newHistogram(), false);
    const result: ThreadResult = {
      attempted: this.attempted,
      opened: this.opened,
      peakOpen: this.peakOpen,
      failures: this.failures,
      closedEarly: this.closedEarly,
      sent: s[5]!,
      received: s[6]!,
      corrupt: s[9]!,
      // Only receive mode counts pushes without a stamp, and the native client does not run it.
      unstamped: 0,
      bytesSent: s[7]!,
      bytesReceived: s[8]!,
      upgrades: this.upgrades,
      measuredMs: this.measuredMs(),
      rtt: encodeHistogram(rtt),
      upgrade: encodeHistogram(this.upgradeLatency),
      lag: encodeHistogram(lag),
      slow: null,
    };
    rtt.destroy();
    lag.destroy();
    return result;
  }
}

/** The piscina task for `--client native`: as thread.ts's runThread. */
export async function runNativeThread(task: ThreadTask): Promise<Uint8Array> {
  const { loadgen, error } = await loadNativeClient();
  if (loadgen === null) throw new Error(`--client native: the native client is not built (${error?.message ?? 'unknown'}); run npm run build:native`);
  const run = new NativeThreadRun(task, loadgen);
  await run.resolveTargets();
  run.init();
  return runThreadTask(run);
}
