/**
 * The fan-out bench's receiver on the load generator's C client (native/src/loadgen*.c, its receive
 * scenario): N WebSockets whose frames are read, counted and timed in C on this process's libuv loop, with
 * the same stdin protocol as the Node receiver in fanout-peer.ts (`ready N`, then `reset`, `report`, `quit`).
 *
 * Why: the Node receiver pays a 'data' event and a Buffer for every read, and at low publish rates every
 * read holds one message: about 7 µs of CPU per message, so reading one publication to 8,000 subscribers
 * took it ~60 ms, and its own queue was most of the latency the bench reported. In C a message costs
 * little more than the kernel's read.
 */
import type { NativeLoadGen } from '../native/loadgen.js';
import { newHistogram, percentiles } from '../loadtest/histogram.js';
import { copyNativeHistogram, nativeUpgrade, newHistogramPairs } from '../loadtest/native-client.js';

/** Upgrades in flight at once during the ramp. */
const CONNECT_CONCURRENCY = 100;
/** Attempts per subscriber: a proxy may refuse upgrades while a burst is in flight (Pushpin's 502). */
const ATTEMPTS = 10;

export interface ReceiverControl {
  reset(): void;
  report(): { received: number; p50: number; p99: number; p999: number; max: number };
  quit(): void;
}

/** Open `connections` subscribers of `url` (source addresses over 127.0.0.2-51); resolves with the number
 *  ready (with `subscribeSignal`, those that got their backend's text notice) and the window controls. */
export function nativeReceiver(lg: NativeLoadGen, url: URL, connections: number, subscribeSignal: boolean): Promise<{ ready: number; control: ReceiverControl }> {
  return new Promise((resolve, reject) => {
    const indexOf = new Map<number, number>();
    const attempts = new Uint8Array(connections);
    let next = 0;
    let pending = 0;
    let opened = 0;
    let failed: Error | null = null;
    let done = false;
    const stats = new Float64Array(12);
    const pairs = newHistogramPairs();

    const connect = (index: number): void => {
      const { request, accept } = nativeUpgrade(`${url.pathname}${url.search}`, url.host);
      attempts[index]!++;
      pending++;
      const id = lg.lgConnect(url.hostname, Number(url.port), `127.0.0.${2 + (index % 50)}`, request, accept);
      if (id < 0) settle(index, new Error(`connect failed (libuv ${id})`));
      else indexOf.set(id, index);
    };
    const fill = (): void => {
      while (failed === null && pending < CONNECT_CONCURRENCY && next < connections) connect(next++);
      if (opened === connections && !done) {
        done = true;
        void allOpen();
      }
    };
    const settle = (index: number, error: Error | null): void => {
      pending--;
      if (error === null) opened++;
      else if (attempts[index]! >= ATTEMPTS) failed ??= error;
      else setTimeout(() => connect(index), 100 * attempts[index]!);
      if (failed !== null) reject(failed);
      else fill();
    };
    const allOpen = async (): Promise<void> => {
      let ready = connections;
      if (subscribeSignal) {
        const deadline = Date.now() + 30_000;
        for (;;) {
          lg.lgStats(stats);
          if (stats[4]! >= connections || Date.now() > deadline) break;
          await new Promise((r) => setTimeout(r, 50));
        }
        ready = Math.min(connections, stats[4]!);
      }
      resolve({ ready, control });
    };
    const control: ReceiverControl = {
      reset: () => lg.lgControl(3),
      report: () => {
        lg.lgStats(stats);
        const h = copyNativeHistogram(lg, 0, pairs, newHistogram(), false);
        const p = percentiles(h);
        h.destroy();
        return { received: stats[6]!, p50: p.p50, p99: p.p99, p999: p.p999, max: p.max };
      },
      quit: () => lg.lgDestroyAll(),
    };

    lg.lgInit(
      { scenario: 3, size: 8, inFlight: 0, intervalMs: 1000, threads: 1, thread: 0, timeoutMs: 10_000 },
      {
        onOpen: (id) => {
          indexOf.delete(id);
          settle(0, null);
        },
        onClose: (id, reason, detail, wasOpen) => {
          const index = indexOf.get(id);
          if (wasOpen || index === undefined) return; // after the ramp: the bench counts what is missing
          indexOf.delete(id);
          settle(index, new Error(`upgrade failed (reason ${reason}, ${detail})`));
        },
      },
    );
    fill();
  });
}
