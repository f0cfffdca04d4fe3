/**
 * What a load thread is whichever client it drives (thread.ts with the Node client, native-client.ts with
 * the C one): the conductor's task and options, the counters every ThreadResult reports, opening the
 * thread's connections at its share of --rate, and the piscina task's life (control messages in, progress
 * four times a second, the packed result at the end). Each client adds how it connects, counts traffic
 * and finishes.
 */
import { performance } from 'node:perf_hooks';
import { pack } from 'msgpackr';
import type * as hdr from 'hdr-histogram-js';
import { newHistogram } from './histogram.js';
import type { ControlMessage, ThreadMessage, ThreadResult, ThreadTask } from './protocol.js';
import type { LoadOptions } from './options.js';

export abstract class ThreadRunBase {
  readonly options: LoadOptions;
  attempted = 0;
  opened = 0;
  settled = 0;
  peakOpen = 0;
  upgrades = 0;
  failureCount = 0;
  failures: Record<string, number> = {};
  closedEarly: Record<string, number> = {};
  running = false;
  measuring = false;
  stopping = false;
  measureStart = Infinity;
  measureEnd = 0;
  readonly upgradeLatency: hdr.Histogram = newHistogram();
  /** Latencies since the last progress message (the conductor's live line). */
  readonly recent: hdr.Histogram = newHistogram();
  protected readySent = false;

  constructor(readonly task: ThreadTask) {
    this.options = task.options;
  }

  /** Opens connection number `index` (global numbering picks its URL and source address). */
  abstract connect(index: number): unknown;
  abstract control(message: ControlMessage): void;
  /** Tells the conductor the counters so far and the recent latencies. */
  abstract progress(): void;
  /** After stop: wait (bounded by --drain) for replies still on their way, close everything, report. */
  abstract finish(): Promise<ThreadResult>;

  post(message: ThreadMessage): void {
    this.task.port.postMessage(message);
  }

  protected ready(): void {
    this.readySent = true;
    this.post({ type: 'ready' });
  }

  /** Opens this thread's connections at its share of --rate; stops early if the run is stopped. */
  rampUp(): void {
    const perSecond = this.options.rate / this.options.threads;
    const started = performance.now();
    const step = (): void => {
      if (this.stopping) return;
      const due = Math.min(this.task.count, Math.floor(((performance.now() - started) * perSecond) / 1000) + 1);
      while (this.attempted < due) this.connect(this.task.firstIndex + this.attempted);
      if (this.attempted < this.task.count) setTimeout(step, 5);
    };
    step();
  }

  /** The conductor said stop: the measured window ends now (or never began). */
  protected markStopped(): void {
    this.stopping = true;
    this.running = false;
    this.measureEnd = this.measuring ? performance.now() : this.measureStart;
  }

  protected measuredMs(): number {
    return Math.max(0, this.measureEnd - (Number.isFinite(this.measureStart) ? this.measureStart : this.measureEnd));
  }
}

/** The piscina task around a run: control messages until stop, progress every 250 ms (so the conductor's
 *  once-a-second line never shows a stale thread), then the msgpackr-packed ThreadResult. */
export async function runThreadTask(run: ThreadRunBase): Promise<Uint8Array> {
  const port = run.task.port;
  const stopped = new Promise<void>((resolve) => {
    port.on('message', (message: ControlMessage) => {
      run.control(message);
      if (message.type === 'stop') resolve();
    });
  });
  const progress = setInterval(() => run.progress(), 250);
  run.rampUp();
  await stopped;
  const result = await run.finish();
  clearInterval(progress);
  port.close();
  return pack(result);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
