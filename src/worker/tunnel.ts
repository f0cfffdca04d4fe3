/**
 * The frame pump: one Tunnel joins a client WebSocket (uWebSockets.js) to its backend leg (backend-leg.ts:
 * a connection of the native addon, native-leg.ts, or a Node socket, backend-socket.ts) and moves messages
 * both ways with backpressure. Nothing here asks which leg it is.
 *
 * Costs this file is shaped around (all per message or per read):
 *  - backend → client: a read's frames reach uWS inside one `ws.cork()`; a frame that arrived whole is
 *    sent from the read buffer without a copy. What `ws.send` answers is acted on: a message uWS dropped
 *    (the client past websocket.clientMaxBuffer) is counted as dropped, not delivered, and ends the client.
 *  - client → backend: one call into the leg per message (the native leg: one call into the addon, which
 *    masks into the connection's write block; the Node leg: into one buffer per connection per turn).
 *  - no closures per message: every callback is a module-level function that finds its Tunnel through
 *    the uWS user data, the socket's `tunnel` field or the addon's connection id.
 *
 * Backpressure: past clientHighWaterMark of unsent client data the backend stops being read until
 * uWS reports `drain`; past upstreamWriteBudget of unsent backend data the client is closed with 1013.
 * Neither side is ever buffered without bound.
 */
import type uWS from 'uWebSockets.js';
import { TRAFFIC, Total } from '../shared/layout.js';
import { context, countTotal } from './context.js';
import type { Generation } from './generation.js';
import { countToBackend, countToClient, countBackendWire, countError, closeStartedBy, connectionClosed, ErrorReason, Side } from './metrics.js';
import { Opcode, isSendableCloseCode } from './frame-codec.js';
import type { BackendLeg } from './backend-leg.js';
import type { TunnelSocket } from './backend-socket.js';
import { compressedWireBytes } from './compression.js';
import type { BackendInflater } from './backend-inflate.js';
import { dropSession, type GripSession } from './fanout-delivery.js';
import { gripFilter } from './fanout-grip.js';
import { admitMessage, type ConnectionLimits } from './limits-connection.js';

export const enum TunnelState {
  /** Upgrade in progress (connect, handshake). */
  Upgrading = 0,
  Open = 1,
  /** Close started on one leg. */
  Closing = 2,
  Closed = 3,
}

/** uWS user data: uWS copies the object given to res.upgrade(), so it carries a reference. */
export interface TunnelRef {
  readonly tunnel: Tunnel;
}

export class Tunnel {
  ws: uWS.WebSocket<TunnelRef> | null = null;
  /** The backend leg carrying this tunnel's backend connection, null when there is none (not yet, or
   *  over). Only the leg itself touches its handle below. */
  leg: BackendLeg | null = null;
  /** The Node socket leg's handle (backend-socket.ts)... */
  socket: TunnelSocket | null = null;
  /** ...or the native leg's (native-leg.ts): the addon's connection id, 0 when none. */
  upstreamId = 0;
  state = TunnelState.Upgrading;
  backend = -1;
  /** Offset of this backend's traffic counters in the worker's slab. */
  trafficOffset = 0;
  /** This tunnel holds one count in the shared live-connection counters. */
  counted = false;
  readPaused = false;
  /** Opcode (Text/Binary) of a fragmented backend message in progress, 0 when none. */
  fragmentOpcode = 0;
  fragmentBytes = 0;
  closeFromBackend = false;
  closeToBackend = false;
  // permessage-deflate (compression.ts, backend-inflate.ts).
  /** Messages to the client this long or longer are sent compressed; Infinity when the client did not
   *  negotiate compression. */
  compressMin = Infinity;
  /** uWS's compressor for this client as zlib parameters (windowBits << 4 | memLevel), for the wire estimate. */
  compressor = 0;
  /** Compressed size ÷ payload size last measured for this client's messages. */
  wireRatio = 1;
  /** The backend's compressed messages are inflated by this (null: the backend leg is not compressed). */
  inflater: BackendInflater | null = null;
  /** Opcode of a compressed backend message whose fragments are still coming, 0 when none. */
  inflatingOpcode = 0;
  // Metrics and access log (metrics.ts): times from performance.now(), who closed, traffic of this tunnel.
  startedAt = 0;
  /** 0 until the upgrade completed, and again once the close was counted. */
  openedAt = 0;
  /** A metrics.ts Side, -1 until someone starts closing. */
  closeSide = -1;
  closeCode = 0;
  messagesToBackend = 0;
  bytesToBackend = 0;
  messagesToClient = 0;
  bytesToClient = 0;
  clientAddress = '';
  /** The generation's reference was given back (released exactly once). */
  released = false;
  /** GRIP fan-out on this connection (fanout-grip.ts): null unless its backend's 101 turned it on. */
  grip: GripSession | null = null;
  /** What limits hold for this connection (limits-connection.ts): released with the tunnel; null when none. */
  limits: ConnectionLimits | null = null;

  /** `gen`: the config generation current when the request arrived; the tunnel keeps it (and its router,
   *  service, limits and counters) until it ends, whatever reloads happen meanwhile. */
  constructor(
    readonly gen: Generation,
    readonly service: number,
    readonly router: number,
    readonly entryPoint: number,
  ) {
    gen.acquire();
  }
}

/** The tunnel is done with its generation (upgrade failed or abandoned, or the client closed). */
export function releaseTunnel(t: Tunnel): void {
  if (t.released) return;
  t.released = true;
  t.limits?.release(t);
  t.gen.release();
}

const liveTunnels = new Set<Tunnel>();
export function tunnels(): ReadonlySet<Tunnel> {
  return liveTunnels;
}

/** Open tunnels per global backend index, so draining one backend costs O(its tunnels). */
const tunnelsByBackend: (Set<Tunnel> | undefined)[] = [];
const NO_TUNNELS: ReadonlySet<Tunnel> = new Set();
export function tunnelsOf(backend: number): ReadonlySet<Tunnel> {
  return tunnelsByBackend[backend] ?? NO_TUNNELS;
}

// ---- shared live-connection counters --------------------------------------------------------

/** Claim a connection slot on `backend` in the shared counters (before connecting, so concurrent
 *  upgrades in every worker already see it). */
export function countOn(tunnel: Tunnel, backend: number): void {
  const ctx = context();
  tunnel.backend = backend;
  tunnel.trafficOffset = ctx.trafficBase + backend * TRAFFIC;
  Atomics.add(ctx.shared.backendActive, backend, 1);
  Atomics.add(ctx.shared.workerActive, ctx.activeBase + backend, 1);
  tunnel.counted = true;
}

export function uncount(tunnel: Tunnel): void {
  if (!tunnel.counted) return;
  tunnel.counted = false;
  const ctx = context();
  Atomics.sub(ctx.shared.backendActive, tunnel.backend, 1);
  Atomics.sub(ctx.shared.workerActive, ctx.activeBase + tunnel.backend, 1);
}

// ---- client → backend -----------------------------------------------------------------------

/**
 * The hook on the client → backend path, one call per client message before it is forwarded (per-connection
 * message limits: limits*.ts set it with setClientMessageCheck). It returns false when the message must not
 * go on; it has then dealt with the connection itself (counted, closed). Replaced, never chained, so the
 * path stays one call.
 */
export type ClientMessageCheck = (t: Tunnel, message: ArrayBuffer, isBinary: boolean) => boolean;
function forwardEverything(): boolean {
  return true;
}
let checkClientMessage: ClientMessageCheck = forwardEverything;
export function setClientMessageCheck(check: ClientMessageCheck | null): void {
  checkClientMessage = check ?? forwardEverything;
}

/** uWS `message`: one client message becomes one masked frame toward the backend. */
export function onClientMessage(ws: uWS.WebSocket<TunnelRef>, message: ArrayBuffer, isBinary: boolean): void {
  const t = ws.getUserData().tunnel;
  const leg = t.leg;
  if (t.state !== TunnelState.Open || leg === null) return;
  if (t.limits !== null && !admitMessage(t, t.limits)) return;
  const limits = t.gen.websocket;
  if (message.byteLength > limits.maxMessageSize) {
    // uWS enforces only its own, larger limit (listeners.ts), and drops the socket without a
    // close frame when it does; this is where the client gets its 1009.
    countTotal(Total.OversizeCloses);
    countError(t.gen, t.backend, ErrorReason.MessageTooBig);
    closeStartedBy(t, Side.Proxy, 1009);
    t.state = TunnelState.Closing;
    ws.end(1009, 'message too big');
    return;
  }
  if (!checkClientMessage(t, message, isBinary)) return;
  const queued = leg.send(t, isBinary ? Opcode.Binary : Opcode.Text, message);
  if (queued < 0) return;
  countToBackend(t, message.byteLength);
  if (queued > limits.upstreamWriteBudget) {
    // The backend is not reading: closing this client is the only bounded choice, since uWS
    // cannot stop reading one WebSocket.
    countTotal(Total.BackpressureCloses);
    countError(t.gen, t.backend, ErrorReason.Backpressure);
    closeStartedBy(t, Side.Proxy, 1013);
    t.state = TunnelState.Closing;
    ws.end(1013, 'backend is not keeping up');
  }
}

/** uWS `drain`: the client caught up; read its backend again. */
export function onClientDrain(ws: uWS.WebSocket<TunnelRef>): void {
  const t = ws.getUserData().tunnel;
  if (t.readPaused && ws.getBufferedAmount() < t.gen.websocket.clientHighWaterMark) {
    t.readPaused = false;
    t.leg?.resume(t);
  }
}

/** uWS `close`: pass the client's close (code and reason) on to the backend, then let go. */
export function onClientClose(ws: uWS.WebSocket<TunnelRef>, code: number, reason: ArrayBuffer): void {
  const t = ws.getUserData().tunnel;
  if (t.grip !== null) dropSession(t.grip);
  t.ws = null;
  liveTunnels.delete(t);
  tunnelsByBackend[t.backend]?.delete(t);
  if (!t.closeToBackend) {
    // 1005 (none given) goes on as an empty close; 1006 (vanished) and other unsendable codes as 1001.
    const forward = code === 1005 ? 0 : isSendableCloseCode(code) ? code : 1001;
    sendCloseToBackend(t, forward, forward === 0 ? '' : new Uint8Array(reason));
  }
  t.state = backendOpen(t) ? TunnelState.Closing : TunnelState.Closed;
  uncount(t);
  connectionClosed(t, code);
  releaseTunnel(t);
}

/** The backend leg is still there. */
export function backendOpen(t: Tunnel): boolean {
  return t.leg !== null;
}

/** Start the closing handshake toward the backend (once), giving it 5 s to answer before the
 *  connection is dropped. */
function sendCloseToBackend(t: Tunnel, code: number, reason: Uint8Array | string): void {
  if (t.closeToBackend) return;
  t.closeToBackend = true;
  t.leg?.close(t, code, reason);
}

/** The backend's close frame came (Node leg, backend-frames.ts): answer it with the same code, unless
 *  Sluice already sent one. (The native leg answers in C.) */
export function answerBackendClose(t: Tunnel, code: number, reason: Uint8Array | string): void {
  sendCloseToBackend(t, code, reason);
}

/** After a read was handed to the client: stop reading the backend while the client lags. */
export function checkClientBackpressure(t: Tunnel): void {
  const ws = t.ws;
  if (ws !== null && !t.readPaused && ws.getBufferedAmount() > t.gen.websocket.clientHighWaterMark) {
    t.readPaused = true;
    t.leg?.pause(t);
  }
}

// ---- backend → client (both legs) -------------------------------------------------------------

/** What ws.send() and the fragment calls answer (uWS's SendStatus; its typings say boolean for the
 *  fragment calls, but 20.30 returns these numbers from all four). */
const enum SendStatus {
  /** Sent, but it added to the client's buffer: check the buffer after this read. */
  Backpressure = 0,
  Success = 1,
  Dropped = 2,
}
type FragmentSender = (message: Uint8Array, isBinary?: boolean) => SendStatus;

/** Set by deliverData when uWS reported backpressure during the current read; the leg then checks the
 *  client's buffer once after the read (clientBackpressureAfterRead), and not at all after a read whose
 *  every send went straight out. */
let sawBackpressure = false;

/**
 * uWS dropped a message (the client's buffer was past websocket.clientMaxBuffer, so closeOnBackpressureLimit
 * has already shut its socket for reading): count it as dropped, never as delivered, and close the client
 * with 1013 now rather than let the frames that follow be dropped one by one.
 */
function droppedByClient(t: Tunnel, ws: uWS.WebSocket<TunnelRef>): void {
  countError(t.gen, t.backend, ErrorReason.MessageDropped);
  countTotal(Total.BackpressureCloses);
  closeStartedBy(t, Side.Proxy, 1013);
  t.state = TunnelState.Closing;
  t.fragmentOpcode = 0;
  ws.end(1013, 'client is not keeping up');
}

/** One data frame from the backend (either leg) to the client: a whole message, or a fragment passed on
 *  as a fragment. `data` is only valid during the call (uWS copies it). `wire`: its size on the backend's
 *  wire (differs for a message the backend compressed: backend-inflate.ts). On a GRIP connection the
 *  message goes through fanout-grip.ts first (control messages, the prefix). A whole message of at least
 *  `compressMin` bytes goes compressed when the client negotiated it; fragments always go plain, as
 *  compressing them would need the whole message first. */
export function deliverData(t: Tunnel, opcode: number, fin: boolean, data: Uint8Array, wire = data.byteLength): void {
  const ws = t.ws;
  if (ws === null || t.state !== TunnelState.Open) return;
  countBackendWire(t, wire);
  const payload = t.grip === null ? data : gripFilter(t, opcode, fin, data);
  if (payload === null) return;
  const length = payload.byteLength;
  if (opcode !== Opcode.Continuation) {
    if (t.fragmentOpcode !== 0) {
      failFromBackend(t, 1002, 'backend started a message inside a fragmented one');
      return;
    }
    if (fin) {
      const compress = length >= t.compressMin;
      const status = ws.send(payload, opcode === Opcode.Binary, compress) as SendStatus;
      if (status === SendStatus.Success) countToClient(t, length, compress ? compressedWireBytes(t, payload) : length);
      else if (status === SendStatus.Dropped) droppedByClient(t, ws);
      else {
        sawBackpressure = true;
        countToClient(t, length, compress ? compressedWireBytes(t, payload) : length);
      }
    } else {
      t.fragmentOpcode = opcode;
      t.fragmentBytes = length;
      fragmentSent(t, ws, (ws.sendFirstFragment as unknown as FragmentSender)(payload, opcode === Opcode.Binary));
    }
    return;
  }
  if (t.fragmentOpcode === 0) {
    failFromBackend(t, 1002, 'backend sent a continuation with no message');
    return;
  }
  t.fragmentBytes += length;
  if (t.fragmentBytes > t.gen.websocket.maxMessageSize) {
    countTotal(Total.OversizeCloses);
    failFromBackend(t, 1009, 'message too big');
    return;
  }
  if (fin) {
    if (!fragmentSent(t, ws, (ws.sendLastFragment as unknown as FragmentSender)(payload))) return;
    countToClient(t, t.fragmentBytes, t.fragmentBytes);
    t.fragmentOpcode = 0;
    t.fragmentBytes = 0;
  } else fragmentSent(t, ws, (ws.sendFragment as unknown as FragmentSender)(payload));
}

/** Act on a fragment's send status; false when the message was dropped. */
function fragmentSent(t: Tunnel, ws: uWS.WebSocket<TunnelRef>, status: SendStatus): boolean {
  if (status === SendStatus.Success) return true;
  if (status === SendStatus.Backpressure) {
    sawBackpressure = true;
    return true;
  }
  droppedByClient(t, ws);
  return false;
}

/** After a read was handed to the client (inside its cork): when uWS reported backpressure during it, stop
 *  reading the backend while the client lags. */
export function clientBackpressureAfterRead(t: Tunnel): void {
  if (!sawBackpressure) return;
  sawBackpressure = false;
  checkClientBackpressure(t);
}

/** Close the client with the backend's close code (0: none) and reason. */
export function closeClientAsBackend(t: Tunnel, code: number, reason: Uint8Array | undefined): void {
  const ws = t.ws;
  if (ws !== null) {
    if (code === 0) ws.end();
    else ws.end(code, reason ?? '');
  }
}

/** A protocol breach or size breach on the backend leg: close both legs with `code`. */
export function failFromBackend(t: Tunnel, code: number, reason: string): void {
  t.state = TunnelState.Closing;
  countError(t.gen, t.backend, code === 1009 ? ErrorReason.MessageTooBig : ErrorReason.ProtocolError);
  closeStartedBy(t, Side.Proxy, code);
  sendCloseToBackend(t, code, reason);
  t.ws?.end(code, reason);
}

/** The backend connection ended after the upgrade (the leg has let go of it, `t.leg` is null): a backend
 *  that vanished without a close frame closes its client with 1011 (1001 when Sluice itself is shutting
 *  down). */
export function backendGone(t: Tunnel): void {
  t.inflater = null;
  uncount(t);
  const ws = t.ws;
  if (ws !== null && !t.closeFromBackend) {
    t.state = TunnelState.Closing;
    if (context().shuttingDown) {
      closeStartedBy(t, Side.Proxy, 1001);
      ws.end(1001, 'Sluice is shutting down');
    } else {
      countTotal(Total.BackendClosedAbruptly);
      countError(t.gen, t.backend, ErrorReason.BackendLost);
      closeStartedBy(t, Side.Backend, 1006);
      ws.end(1011, 'backend connection lost');
    }
  }
  if (t.ws === null) t.state = TunnelState.Closed;
}

/** The backend did not answer a ping within websocket.pongTimeout: the leg has dropped the connection;
 *  its client is closed with 1011 and it counts as `backend_unresponsive`. */
export function backendUnresponsive(t: Tunnel): void {
  const ws = t.ws;
  if (ws !== null && !t.closeFromBackend) {
    t.closeFromBackend = true; // told the client here: backendGone must not count it lost as well
    t.state = TunnelState.Closing;
    countError(t.gen, t.backend, ErrorReason.BackendUnresponsive);
    closeStartedBy(t, Side.Proxy, 1011);
    ws.end(1011, 'backend did not answer a ping');
  }
  backendGone(t);
}

/** GRIP `detach`: the backend leg gets a 1000 close and leaves the tunnel (its live count and its drains);
 *  the client stays open, fed by publications. Whatever the backend still sends is ignored. */
export function detachBackend(t: Tunnel): void {
  const leg = t.leg;
  if (leg === null || t.closeToBackend) return;
  t.closeFromBackend = true;
  sendCloseToBackend(t, 1000, '');
  tunnelsByBackend[t.backend]?.delete(t);
  uncount(t);
  leg.detach(t);
}

/** Called by the upgrade once uWS opened the client: start pumping (frames that came with the 101 first). */
export function openTunnel(t: Tunnel, ws: uWS.WebSocket<TunnelRef>, early: Buffer | null): void {
  t.ws = ws;
  t.state = TunnelState.Open;
  liveTunnels.add(t);
  (tunnelsByBackend[t.backend] ??= new Set()).add(t);
  t.leg!.startFraming(t, early);
}
