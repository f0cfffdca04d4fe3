/** Types of native/loadgen.js: the load generator's client in C (see README.md, "The load generator's client"). */

export interface LoadGenOptions {
  /** 0 connect (open and hold), 1 echo (open loop), 2 throughput (closed loop), 3 receive (only read
   *  pushed messages, each stamped in bytes 0-7 with its publish time as a Float64 of Unix ms: the
   *  round-trip histogram then holds publish-to-receive latency). */
  scenario: 0 | 1 | 2 | 3;
  /** Message size in bytes (at least 8: the send stamp rides in bytes 0-7). */
  size: number;
  inFlight: number;
  intervalMs: number;
  /** Threads of the run and this one's number, to interleave the open-loop slots between threads. */
  threads: number;
  thread: number;
  /** TCP connect plus upgrade must finish within this. */
  timeoutMs: number;
}

export interface LoadGenCallbacks {
  /** A connection's 101 arrived; `upgradeMicros` from the connect call to the parsed head. */
  onOpen(id: number, upgradeMicros: number): void;
  /** Exactly once per connection: `reason` 0 when we closed it, else the REASONS index of
   *  loadtest/native-client.ts; `detail` the HTTP status or libuv error; `peerCode` the close code the
   *  peer sent (0 when none). */
  onClose(id: number, reason: number, detail: number, wasOpen: boolean, peerCode: number): void;
}

export interface NativeLoadGen {
  /** A fresh run on this thread (after the previous one's connections are gone). */
  lgInit(options: LoadGenOptions, callbacks: LoadGenCallbacks): void;
  /** Connect to an IP literal and send `request` (the upgrade) once connected; the 101 must carry
   *  `accept`. Returns the id (> 0) or a negative libuv error code (then no callback follows). */
  lgConnect(host: string, port: number, localAddress: string | null, request: Buffer, accept: string): number;
  /** 0 start traffic, 1 start measuring (counters and round-trip histogram reset), 2 stop traffic,
   *  3 start a new measuring window even when one is open. */
  lgControl(what: 0 | 1 | 2 | 3): void;
  /** Into `out` (12 slots): attempted, opened, open, rawSent, rawReceived, sent, received, bytesSent,
   *  bytesReceived, corrupt, outstanding (1 when a measured message is unanswered), uv_hrtime ns. */
  lgStats(out: Float64Array): void;
  /** Copies a histogram's non-empty buckets into `out` as (microseconds, count) pairs, 0 round trip,
   *  1 recent (every reply, for progress), 2 send lag; returns the pair count. */
  lgHistogram(which: 0 | 1 | 2, out: Float64Array, reset: boolean): number;
  /** Close every open connection with `code`, each given `timeoutMs` to finish the handshake. */
  lgCloseAll(code: number, timeoutMs: number): void;
  /** Drop every remaining connection now. */
  lgDestroyAll(): void;
}

declare const loadgen: NativeLoadGen | null;
export default loadgen;
export const loadError: Error | null;
