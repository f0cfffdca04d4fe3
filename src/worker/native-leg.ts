/**
 * The backend leg on the native addon (native/): TCP, the raw HTTP upgrade and RFC 6455 client
 * framing in C on this worker's libuv loop. Used for plain ws:// / http:// backends given by IP
 * address when the addon is built; TLS backends and host names stay on the Node socket path.
 *
 * Why: a Node net.Socket costs ~4.4-5.6 KB of RSS per idle connection and its stream machinery a
 * visible share of CPU per message; the addon holds a connection in ~0.4 KB and writes without a
 * WriteWrap per message (bench/native-upstream.ts measures both, native/README.md has the figures).
 *
 * The addon's callbacks are per thread and carry only an id; `tunnelById` maps ids to tunnels.
 * This file turns the addon's events into the same steps the Node socket path takes (upgrade.ts
 * for the handshake, tunnel.ts for the pump), so both legs behave alike.
 */
import nativeUpstream, { CloseKind } from '#native';
import { Total } from '../shared/layout.js';
import { countTotal } from './context.js';
import {
  backendGone,
  checkClientBackpressure,
  closeClientAsBackend,
  deliverData,
  failFromBackend,
  TunnelState,
  type Tunnel,
} from './tunnel.js';
import { handshakeData, handshakeSocketClosed, type HandshakeTunnel } from './upgrade.js';
import { closeStartedBy, Side } from './metrics.js';

/** ETIMEDOUT as libuv reports it on Linux. */
const UV_ETIMEDOUT = -110;

const tunnelById = new Map<number, Tunnel>();

/**
 * The default for plain backends whenever the addon is built; SLUICE_NATIVE=0 is the escape hatch to the
 * Node socket leg. (It was opt-in while one test of many concurrent tunnels failed on it now and then:
 * the cause was a use-after-free read in uWebSockets.js's upgrade, which hit both legs and which
 * client-upgrade.ts now avoids.)
 */
export const nativeAvailable = nativeUpstream !== null && process.env.SLUICE_NATIVE !== '0';

/** Live native connections of this worker (a drain waits for them). */
export function nativeConnections(): number {
  return tunnelById.size;
}

/** Drop every native connection at once (end of a drain). No onClose follows a destroy. */
export function destroyAllNative(): void {
  for (const [id, t] of tunnelById) {
    nativeUpstream!.destroy(id);
    t.upstreamId = 0;
  }
  tunnelById.clear();
}

/** Start connecting `t` to host:port; returns false when the addon could not even start (then the
 *  caller treats it as a refused connect). */
export function connectNative(t: Tunnel, host: string, port: number, dialTimeoutMs: number): boolean {
  const id = nativeUpstream!.connect(host, port, dialTimeoutMs);
  if (id <= 0) return false;
  t.upstreamId = id;
  tunnelById.set(id, t);
  return true;
}

/** Let go of the native connection of `t` without any close handshake (upgrade abandoned). */
export function destroyNative(t: Tunnel): void {
  if (t.upstreamId === 0) return;
  nativeUpstream!.destroy(t.upstreamId);
  tunnelById.delete(t.upstreamId);
  t.upstreamId = 0;
}

/** The handshake was accepted: stop the handshake deadline and parse frames from now on (the bytes
 *  that came with the 101 first). */
export function startNativeFraming(t: Tunnel, early: Uint8Array | null): void {
  const id = t.upstreamId;
  nativeUpstream!.setDeadline(id, 0);
  const max = t.gen.websocket.maxMessageSize;
  if (early !== null && early.byteLength > 0) nativeUpstream!.startFraming(id, max, early);
  else nativeUpstream!.startFraming(id, max);
  checkClientBackpressure(t);
}

// One read's frames are delivered inside one ws.cork(), as the Node path does: module-level state
// so that the cork callback is not a closure per read.
let corkId = 0;
function deliverCorked(): void {
  nativeUpstream!.deliver(corkId);
}

function onOpen(id: number, status: number): void {
  const t = tunnelById.get(id) as HandshakeTunnel | undefined;
  if (t === undefined) return;
  if (status === 0) {
    const h = t.handshake;
    if (h === null) return;
    nativeUpstream!.setDeadline(id, t.gen.websocket.handshakeTimeoutMs);
    nativeUpstream!.writeRaw(id, Buffer.from(h.request, 'latin1'));
    return;
  }
  // A failed connect: the id is gone already.
  tunnelById.delete(id);
  t.upstreamId = 0;
  handshakeSocketClosed(t, status === UV_ETIMEDOUT);
}

function onRaw(id: number, bytes: Uint8Array): void {
  const t = tunnelById.get(id) as HandshakeTunnel | undefined;
  if (t === undefined) return;
  handshakeData(t, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), bytes.byteLength);
}

function onRead(id: number): void {
  const t = tunnelById.get(id);
  if (t === undefined || t.ws === null) return;
  corkId = id;
  t.ws.cork(deliverCorked);
  checkClientBackpressure(t);
}

function onMessage(id: number, opcode: 0 | 1 | 2, fin: boolean, payload: Uint8Array): void {
  const t = tunnelById.get(id);
  if (t !== undefined) deliverData(t, opcode, fin, payload);
}

function onClose(id: number, code: number, reason: Buffer, kind: number, status: number): void {
  const t = tunnelById.get(id);
  if (t === undefined) return;
  tunnelById.delete(id);
  t.upstreamId = 0;
  if (t.state === TunnelState.Upgrading) {
    handshakeSocketClosed(t as HandshakeTunnel, kind === CloseKind.Timeout || status === UV_ETIMEDOUT);
    return;
  }
  switch (kind) {
    case CloseKind.Frame:
      // The addon answered the backend's close; the client gets the same code and reason.
      if (!t.closeFromBackend && t.ws !== null) {
        t.closeFromBackend = true;
        t.state = TunnelState.Closing;
        closeStartedBy(t, Side.Backend, code);
        closeClientAsBackend(t, code === 1005 ? 0 : code, reason.length > 0 ? reason : undefined);
      }
      backendGone(t);
      return;
    case CloseKind.Protocol:
    case CloseKind.Oversize:
      // The addon already sent the backend its 1002/1007/1009; the client gets the same.
      if (kind === CloseKind.Oversize) countTotal(Total.OversizeCloses);
      t.closeToBackend = true;
      failFromBackend(t, code, reason.length > 0 ? reason.toString() : 'backend broke the protocol');
      backendGone(t);
      return;
    default:
      backendGone(t);
  }
}

if (nativeAvailable) nativeUpstream!.init({ onOpen, onRaw, onMessage, onClose, onRead });
