/**
 * Dead-backend detection on the Node socket leg (the native leg does the same in C, connection.c): after
 * websocket.pingInterval without a byte from the backend Sluice pings it, and when nothing at all comes
 * back within websocket.pongTimeout the connection is dropped and its client closed with 1011
 * (tunnel.ts backendUnresponsive). A backend that is paused by backpressure is never counted silent:
 * Sluice is not reading it.
 *
 * Cost: a read sets one boolean (`heard`); one timer per worker sweeps the watched sockets every
 * `period` (a quarter of the shorter of the two settings, 20 ms to 1 s), so a backend is found dead
 * within pingInterval + pongTimeout + 3 periods, and an idle healthy one costs one ping per interval.
 */
import { performance } from 'node:perf_hooks';
import { Opcode } from './frame-codec.js';
import { queueFrame, type TunnelSocket } from './backend-socket.js';
import { TunnelState, backendUnresponsive, type Tunnel } from './tunnel.js';

/** The fields a watched socket carries (set by backend-socket.ts adopt()). */
export interface Watched {
  /** A read happened since the last sweep. */
  heard: boolean;
  /** performance.now() of the sweep that last saw the backend speak (or of startFraming). */
  quietSince: number;
  /** performance.now() of the ping sent, 0 when none is outstanding. */
  pingedAt: number;
  /** Position in `watched`, -1 when not watched. */
  watchIndex: number;
}

const EMPTY = new Uint8Array(0);
const watched: TunnelSocket[] = [];
let timer: NodeJS.Timeout | null = null;
let period = 0;

/** Longest and shortest sweep periods: a quarter of the shorter setting, within these. */
const MAX_PERIOD_MS = 1000;
const MIN_PERIOD_MS = 20;

/** Start watching a framing socket of `t`; false when its generation has pings off (pingInterval 0). */
export function watchLiveness(socket: TunnelSocket, t: Tunnel): boolean {
  const { pingIntervalMs, pongTimeoutMs } = t.gen.websocket;
  if (pingIntervalMs === 0) return false;
  socket.heard = false;
  socket.quietSince = performance.now();
  socket.pingedAt = 0;
  if (socket.watchIndex < 0) {
    socket.watchIndex = watched.length;
    watched.push(socket);
  }
  const wanted = Math.min(MAX_PERIOD_MS, Math.max(MIN_PERIOD_MS, Math.floor(Math.min(pingIntervalMs, pongTimeoutMs) / 4)));
  if (timer === null || wanted < period) {
    if (timer !== null) clearInterval(timer);
    period = wanted;
    timer = setInterval(sweep, period);
    timer.unref();
  }
  return true;
}

export function unwatchLiveness(socket: TunnelSocket): void {
  const i = socket.watchIndex;
  if (i < 0) return;
  socket.watchIndex = -1;
  const last = watched.pop()!;
  if (last !== socket) {
    watched[i] = last;
    last.watchIndex = i;
  }
  if (watched.length === 0 && timer !== null) {
    clearInterval(timer);
    timer = null;
  }
}

function sweep(): void {
  const now = performance.now();
  // Backwards: a socket dropped here is swapped with the last one, which was already looked at.
  for (let i = watched.length - 1; i >= 0; i--) {
    const socket = watched[i]!;
    const t = socket.tunnel;
    if (t === null || t.state !== TunnelState.Open || t.closeToBackend) continue; // closing has its own deadline
    if (socket.heard || t.readPaused) {
      socket.heard = false;
      socket.quietSince = now;
      socket.pingedAt = 0;
      continue;
    }
    const settings = t.gen.websocket;
    if (socket.pingedAt !== 0) {
      if (now - socket.pingedAt >= settings.pongTimeoutMs) {
        t.leg!.destroy(t);
        backendUnresponsive(t);
      }
    } else if (now - socket.quietSince >= settings.pingIntervalMs) {
      queueFrame(socket, Opcode.Ping, EMPTY);
      socket.pingedAt = now;
    }
  }
}
