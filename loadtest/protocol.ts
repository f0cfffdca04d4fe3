/**
 * The messages between the conductor (main thread, run.ts) and the load threads (thread.ts).
 * The conductor owns the clock: it says when traffic starts, when measuring starts and when it
 * stops, so every thread measures the same window; threads only report. Final results travel as
 * msgpackr bytes, histograms inside them as hdr-histogram-js encodings.
 */
import type { MessagePort } from 'node:worker_threads';
import type { LoadOptions } from './options.js';

export interface ThreadTask {
  readonly options: LoadOptions;
  readonly thread: number;
  /** Global index of this thread's first connection: picks its URL and source address round-robin. */
  readonly firstIndex: number;
  /** Connections this thread holds (churn: connections it keeps in flight). */
  readonly count: number;
  readonly port: MessagePort;
}

/** Conductor → thread. `stop` also ends a ramp-up still in progress (Ctrl-C). */
export type ControlMessage = { readonly type: 'start' } | { readonly type: 'measure' } | { readonly type: 'stop' };

/** Thread → conductor. */
export type ThreadMessage =
  | { readonly type: 'ready' }
  | {
      readonly type: 'progress';
      readonly open: number;
      /** Counted from the first send, measured or not, so rates show during warm-up too. */
      readonly rawSent: number;
      readonly rawReceived: number;
      readonly upgrades: number;
      readonly failures: number;
      /** Round-trip (connect and churn: upgrade; receive: push-to-receive) latencies since the previous progress message. */
      readonly recent: string;
    };

export interface SlowResult {
  connections: number;
  sent: number;
  bytesSent: number;
  /** Slow connections whose writes the proxy stopped accepting at least once (backpressure reached us). */
  everBlocked: number;
  blockedAtStop: number;
  /** Slow connections the proxy (or the network) closed; by close code or reason. */
  closed: Record<string, number>;
  /** Messages the slow connections found waiting once they read again at the end. */
  receivedAfterResume: number;
  bytesReceivedAfterResume: number;
}

export interface ThreadResult {
  attempted: number;
  opened: number;
  peakOpen: number;
  /** Connection attempts that never opened, by reason ('refused', 'timeout', 'status 503', 'closed'…). */
  failures: Record<string, number>;
  /** Open connections ended by the other side before the run stopped, by close code or reason. */
  closedEarly: Record<string, number>;
  sent: number;
  received: number;
  /** Echoes whose length differed from what was sent. */
  corrupt: number;
  /** receive: messages that carried no push stamp, so no latency. */
  unstamped: number;
  bytesSent: number;
  bytesReceived: number;
  upgrades: number;
  measuredMs: number;
  rtt: string;
  upgrade: string;
  /** How late the open-loop sender ran against its schedule: large values mean the generator was saturated. */
  lag: string;
  slow: SlowResult | null;
}
