/**
 * The native leg (backend-leg.ts): TCP, the raw HTTP upgrade and RFC 6455 client framing in C (native/) on
 * this worker's libuv loop, for every plain ws:// / http:// backend when the addon is built. Host names are
 * resolved here (dns.lookup, the resolver Node's own sockets use, IPv4 first, kept 5 s) and the addon is
 * given the address. TLS backends and websocketCompression stay on the Node socket leg.
 *
 * Why: a Node net.Socket costs ~4.4-5.6 KB of RSS per idle connection and its stream machinery a visible
 * share of CPU per message; the addon holds a connection in a 368-byte struct and writes without a
 * WriteWrap per message (native/README.md has the figures).
 *
 * Per read, the addon makes one call (onFrames) with the read's data frames as offsets in a table it
 * shares with this file (a Uint32Array made once); tunnels sit in an array indexed by the low bits of
 * the connection id. So a read costs one call from C, one ws.cork and a view per frame (reused for
 * frames at the same place: view-cache.ts): no napi object per frame, no Map lookup. Per client message,
 * one call into the addon (sendMessage), which copies and masks into the connection's write block: no
 * allocation.
 */
import dns from 'node:dns';
import net from 'node:net';
import nativeUpstream, { CloseKind, FrameFlag } from '#native';
import { Total } from '../shared/layout.js';
import { countTotal } from './context.js';
import type { BackendLeg, BackendTarget } from './backend-leg.js';
import {
  backendGone,
  backendUnresponsive,
  clientBackpressureAfterRead,
  closeClientAsBackend,
  deliverData,
  failFromBackend,
  TunnelState,
  type Tunnel,
} from './tunnel.js';
import { handshakeData, handshakeSocketClosed, type HandshakeTunnel } from './upgrade.js';
import { closeStartedBy, Side } from './metrics.js';
import { ViewCache } from './view-cache.js';

/** ETIMEDOUT as libuv reports it on Linux. */
export const UV_ETIMEDOUT = -110;
/** Low bits of an addon id: its slot (native/src/upstream.h ID_INDEX_BITS). */
export const ID_INDEX_MASK = 0xfffff;

/**
 * The default for plain backends whenever the addon is built; SLUICE_NATIVE=0 is the escape hatch to the
 * Node socket leg. (It was opt-in while one test of many concurrent tunnels failed on it now and then:
 * the cause was a use-after-free read in uWebSockets.js's upgrade, which hit both legs and which
 * client-upgrade.ts now avoids.)
 */
export const nativeAvailable = nativeUpstream !== null && process.env.SLUICE_NATIVE !== '0';

/** Tunnels by the slot of their connection id (`id & ID_INDEX_MASK`); undefined when free. Dense: the
 *  addon reuses slots first in, first out. */
const tunnelBySlot: (Tunnel | undefined)[] = [];
let live = 0;

function bind(t: Tunnel, id: number): void {
  t.upstreamId = id;
  t.leg = nativeLeg;
  tunnelBySlot[id & ID_INDEX_MASK] = t;
  live++;
}

/** The tunnel lets go of its connection (t.leg and t.upstreamId cleared); nothing more is reported to it. */
function unbind(t: Tunnel): void {
  const id = t.upstreamId;
  if (id > 0 && tunnelBySlot[id & ID_INDEX_MASK] === t) {
    tunnelBySlot[id & ID_INDEX_MASK] = undefined;
    live--;
  }
  t.upstreamId = 0;
  t.leg = null;
}

function tunnelOf(id: number): Tunnel | undefined {
  const t = tunnelBySlot[id & ID_INDEX_MASK];
  return t !== undefined && t.upstreamId === id ? t : undefined;
}

/** Live native connections of this worker (a drain waits for them). */
export function nativeConnections(): number {
  return live;
}

/** Drop every native connection at once (end of a drain). No onClose follows a destroy. */
export function destroyAllNative(): void {
  for (const t of tunnelBySlot) {
    if (t === undefined) continue;
    if (t.upstreamId > 0) nativeUpstream!.destroy(t.upstreamId);
    unbind(t);
  }
  tunnelBySlot.length = 0;
  live = 0;
}

// ---- host names ---------------------------------------------------------------------------------------

/** How long a resolved address is reused: a burst of upgrades to one backend costs one lookup. */
const RESOLVED_FOR_MS = 5000;
const resolved = new Map<string, { address: string; until: number }>();
/** upstreamId of a tunnel whose host is being resolved: -(attempt), so a late answer for an attempt
 *  that was dropped (or retried elsewhere) is recognised and ignored. */
let lookups = 0;

function connectByName(t: HandshakeTunnel, target: BackendTarget): void {
  const cached = resolved.get(target.host);
  if (cached !== undefined && cached.until > Date.now()) {
    connectTo(t, cached.address, target);
    return;
  }
  const ticket = -++lookups;
  t.upstreamId = ticket;
  t.leg = nativeLeg;
  // The dial timeout covers the lookup too, as it does for a Node socket.
  const timer = setTimeout(() => {
    if (t.upstreamId !== ticket) return;
    t.upstreamId = 0;
    t.leg = null;
    handshakeSocketClosed(t, true);
  }, target.dialTimeoutMs);
  dns.lookup(target.host, { all: true }, (error, addresses) => {
    clearTimeout(timer);
    if (t.upstreamId !== ticket) return; // abandoned or timed out meanwhile
    t.upstreamId = 0;
    t.leg = null;
    if (error !== null || addresses.length === 0) {
      handshakeSocketClosed(t, false);
      return;
    }
    connectTo(t, remember(target.host, addresses), target);
  });
}

/** Keep the address a lookup of `host` found (IPv4 first, as most backends listen there; Node's sockets try
 *  both, this leg takes one) for RESOLVED_FOR_MS, and return it. */
function remember(host: string, addresses: readonly dns.LookupAddress[]): string {
  const address = (addresses.find((a) => a.family === 4) ?? addresses[0]!).address;
  resolved.set(host, { address, until: Date.now() + RESOLVED_FOR_MS });
  return address;
}

const refreshing = new Set<string>();

/**
 * For plain HTTP (http-pool.ts), which does not wait for a lookup: the address `host` last resolved to, or ''
 * when it never was. A lookup starts when there is none or it is older than RESOLVED_FOR_MS, so a later
 * request finds a fresh one (meanwhile the last one serves: no request falls back for a refresh).
 */
export function resolvedAddress(host: string): string {
  const cached = resolved.get(host);
  if (cached !== undefined && cached.until > Date.now()) return cached.address;
  if (!refreshing.has(host)) {
    refreshing.add(host);
    dns.lookup(host, { all: true }, (error, addresses) => {
      refreshing.delete(host);
      if (error === null && addresses.length > 0) remember(host, addresses);
    });
  }
  return cached?.address ?? '';
}

function connectTo(t: HandshakeTunnel, address: string, target: BackendTarget): void {
  const id = nativeUpstream!.connect(address, target.port, target.dialTimeoutMs, target.localAddress !== '' ? target.localAddress : undefined);
  if (id <= 0) {
    handshakeSocketClosed(t, false);
    return;
  }
  bind(t, id);
  // Written as soon as the connection is up, without waiting for onOpen.
  nativeUpstream!.writeRaw(id, t.handshake!.request);
}

// ---- the leg --------------------------------------------------------------------------------------------

export const nativeLeg: BackendLeg = {
  connect(t: HandshakeTunnel, target: BackendTarget): boolean {
    if (net.isIP(target.host) === 0) connectByName(t, target);
    else connectTo(t, target.host, target);
    return true;
  },

  startFraming(t: Tunnel, early: Buffer | null): void {
    const id = t.upstreamId;
    const { maxMessageSize, pingIntervalMs, pongTimeoutMs } = t.gen.websocket;
    nativeUpstream!.setDeadline(id, 0);
    if (early !== null && early.byteLength > 0) nativeUpstream!.startFraming(id, maxMessageSize, pingIntervalMs, pongTimeoutMs, early);
    else nativeUpstream!.startFraming(id, maxMessageSize, pingIntervalMs, pongTimeoutMs);
  },

  send(t: Tunnel, opcode: number, payload: ArrayBuffer): number {
    // The addon copies, masks and batches the frame itself.
    return nativeUpstream!.sendMessage(t.upstreamId, opcode as 1 | 2, payload);
  },

  close(t: Tunnel, code: number, reason: Uint8Array | string): void {
    nativeUpstream!.sendClose(t.upstreamId, code, reason);
    nativeUpstream!.setDeadline(t.upstreamId, 5000);
  },

  pause(t: Tunnel): void {
    nativeUpstream!.pause(t.upstreamId);
  },

  resume(t: Tunnel): void {
    nativeUpstream!.resume(t.upstreamId);
  },

  destroy(t: Tunnel): void {
    if (t.upstreamId > 0) nativeUpstream!.destroy(t.upstreamId);
    unbind(t);
  },

  detach(t: Tunnel): void {
    // The connection finishes its closing handshake in C (5 s at most); its onClose finds no tunnel.
    unbind(t);
  },
};

// ---- events from the addon ----------------------------------------------------------------------------

/** The addon has one set of callbacks per thread; connections that carry plain HTTP (http-native-client.ts)
 *  get the events no tunnel owns. */
export interface NativeHttpEvents {
  onOpen(id: number, status: number): void;
  onRaw(id: number, length: number): void;
  onClose(id: number, kind: number, status: number): void;
}

let httpEvents: NativeHttpEvents | null = null;

export function setNativeHttpEvents(events: NativeHttpEvents): void {
  httpEvents = events;
}

const views = nativeAvailable ? nativeUpstream!.init({ onOpen, onRaw, onFrames, onClose }) : null;
const readBuffer = views?.readBuffer ?? new Uint8Array(0);
const frames = views?.frames ?? new Uint32Array(0);
/** The same bytes as readBuffer, as a Buffer for the handshake parser (made once). */
const readBytes = Buffer.from(readBuffer.buffer, readBuffer.byteOffset, readBuffer.byteLength);
/** The thread's read buffer as a Buffer: onRaw's bytes for http-native-client.ts, valid only during the call. */
export const nativeReadBytes = readBytes;
/** Views on readBuffer by frame position, reused (view-cache.ts). */
const readViews = new ViewCache(readBuffer);

function onOpen(id: number, status: number): void {
  const t = tunnelOf(id) as HandshakeTunnel | undefined;
  if (t === undefined) {
    httpEvents?.onOpen(id, status);
    return;
  }
  if (status === 0) {
    if (t.handshake !== null) nativeUpstream!.setDeadline(id, t.gen.websocket.handshakeTimeoutMs);
    return;
  }
  // A failed connect: the id is gone already.
  unbind(t);
  handshakeSocketClosed(t, status === UV_ETIMEDOUT);
}

function onRaw(id: number, length: number): void {
  const t = tunnelOf(id) as HandshakeTunnel | undefined;
  if (t !== undefined) handshakeData(t, readBytes, length);
  else httpEvents?.onRaw(id, length);
}

// One read's frames reach the client inside one ws.cork(): module-level state, so that the cork
// callback is not a closure per read.
let batchTunnel: Tunnel | null = null;
let batchCount = 0;
let batchBlock: Uint8Array | null = null;

function deliverBatch(): void {
  const t = batchTunnel!;
  const end = batchCount * 3;
  for (let i = 0; i < end && t.state === TunnelState.Open; i += 3) {
    const flags = frames[i]!;
    const start = frames[i + 1]!;
    const length = frames[i + 2]!;
    const payload = (flags & FrameFlag.InBlock) !== 0 ? batchBlock!.subarray(start, start + length) : readViews.view(start, length);
    deliverData(t, flags & 0x0f, (flags & FrameFlag.Fin) !== 0, payload);
  }
}

function onFrames(id: number, count: number, block: ArrayBuffer | undefined): void {
  const t = tunnelOf(id);
  if (t === undefined || t.ws === null) return;
  batchTunnel = t;
  batchCount = count;
  batchBlock = block === undefined ? null : new Uint8Array(block);
  t.ws.cork(deliverBatch);
  batchTunnel = null;
  batchBlock = null;
  clientBackpressureAfterRead(t);
}

function onClose(id: number, code: number, reason: Buffer, kind: number, status: number): void {
  const t = tunnelOf(id);
  if (t === undefined) {
    httpEvents?.onClose(id, kind, status);
    return;
  }
  unbind(t);
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
    case CloseKind.Unresponsive:
      backendUnresponsive(t);
      return;
    default:
      backendGone(t);
  }
}
