/**
 * The Node socket leg (backend-leg.ts): a backend connection on node:net (plain TCP, read with `onread`
 * into one static buffer per worker) or node:tls, speaking RFC 6455 as a client through frame-codec.ts
 * (encoding) and backend-frames.ts (parsing). Used for TLS backends, backends with websocketCompression
 * and everything when SLUICE_NATIVE=0; native-leg.ts carries the rest.
 *
 * Every socket event handler is module-level and finds its tunnel through the socket's `tunnel` field:
 * no closure per connection. Client messages are masked into one buffer per connection per event-loop
 * turn (the `out*` fields: a region of a shared arena that grows in place while the same connection's
 * messages follow each other, as they do for the messages of one client read), written once at the end
 * of the turn, so a busy connection costs one Buffer and one write per turn, not one per message.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { BackendLeg, BackendTarget } from './backend-leg.js';
import { TunnelState, backendGone, type Tunnel } from './tunnel.js';
import { pumpFromBackend } from './backend-frames.js';
import { handshakeData, handshakeSocketClosed, type HandshakeTunnel } from './upgrade.js';
import { encodeCloseFrame, encodeMaskedFrameInto, maskedFrameLength, Opcode } from './frame-codec.js';
import { watchLiveness, unwatchLiveness, type Watched } from './liveness.js';
import { ViewCache } from './view-cache.js';

/** A backend socket and the leg's state for it (set once in adopt(), in this order, so every socket has
 *  the same shape). */
export type TunnelSocket = net.Socket &
  Watched & {
    tunnel: Tunnel | null;
    /** Bytes of a backend frame that arrived split across reads (backend-frames.ts). */
    partial: Buffer | null;
    partialLength: number;
    /** This turn's frames toward the backend: outArena[outStart, outEnd) (null: none this turn). */
    outArena: Buffer | null;
    outStart: number;
    outEnd: number;
  };

/** One worker-wide read buffer for every plain-TCP backend: onread fills it, the pump consumes it
 *  synchronously, so one buffer serves all sockets. */
export const backendReadBuffer = Buffer.allocUnsafe(64 * 1024);
/** Views on it by frame position, reused (view-cache.ts). */
export const backendReadViews = new ViewCache(backendReadBuffer);

// ---- writing: one buffer per connection per turn --------------------------------------------------

/** Like Node's Buffer pool, but large, and a connection's frames of one turn extend its region in place. A
 *  full arena is dropped, never reused: regions already handed to socket.write() keep it alive until
 *  written. */
const ARENA_SIZE = 256 * 1024;
let arena = Buffer.allocUnsafeSlow(ARENA_SIZE);
let arenaTop = 0;

/** Sockets with frames waiting for the end of the turn, and whether that flush is scheduled. */
const waiting: TunnelSocket[] = [];
let flushScheduled = false;

function flushWaiting(): void {
  flushScheduled = false;
  for (let i = 0; i < waiting.length; i++) writeOut(waiting[i]!);
  waiting.length = 0;
}

function writeOut(socket: TunnelSocket): void {
  const out = socket.outArena;
  if (out === null) return;
  socket.outArena = null;
  if (!socket.destroyed) socket.write(out.subarray(socket.outStart, socket.outEnd));
}

/** Room for `length` bytes at the end of this turn's region of `socket`; returns where to write. */
function reserve(socket: TunnelSocket, length: number): number {
  if (socket.outArena === arena && socket.outEnd === arenaTop && arenaTop + length <= arena.length) {
    // The last bytes reserved are this socket's: grow its region in place.
    const at = arenaTop;
    arenaTop += length;
    socket.outEnd = arenaTop;
    return at;
  }
  if (socket.outArena !== null) writeOut(socket); // another connection wrote in between: send what it has
  else {
    waiting.push(socket);
    if (!flushScheduled) {
      flushScheduled = true;
      setImmediate(flushWaiting);
    }
  }
  if (arenaTop + length > arena.length) {
    arena = Buffer.allocUnsafeSlow(Math.max(ARENA_SIZE, length));
    arenaTop = 0;
  }
  const at = arenaTop;
  arenaTop += length;
  socket.outArena = arena;
  socket.outStart = at;
  socket.outEnd = arenaTop;
  return at;
}

/** Queue one masked frame toward the backend (written at the end of this turn). */
export function queueFrame(socket: TunnelSocket, opcode: number, payload: Uint8Array): void {
  const at = reserve(socket, maskedFrameLength(payload.byteLength));
  encodeMaskedFrameInto(socket.outArena!, at, opcode, payload);
}

// ---- events ---------------------------------------------------------------------------------------

/** `onread` callback for plain TCP backends: data arrives in the worker's static buffer. */
function onBackendRead(this: TunnelSocket, length: number, buffer: Buffer): boolean {
  const t = this.tunnel;
  if (t === null) return true;
  this.heard = true;
  if (t.state === TunnelState.Upgrading) handshakeData(t as HandshakeTunnel, buffer, length);
  else pumpFromBackend(t, this, buffer, length);
  return true;
}

/** 'data' listener for TLS backends (decrypted chunks arrive as fresh Buffers). */
function onBackendData(this: TunnelSocket, chunk: Buffer): void {
  const t = this.tunnel;
  if (t === null) return;
  this.heard = true;
  if (t.state === TunnelState.Upgrading) handshakeData(t as HandshakeTunnel, chunk, chunk.length);
  else pumpFromBackend(t, this, chunk, chunk.length);
}

/** Every backend socket of this worker, from connect to 'close': a drain waits for all of them. */
const openSockets = new Set<TunnelSocket>();
export function backendSockets(): ReadonlySet<TunnelSocket> {
  return openSockets;
}

function onBackendConnect(this: TunnelSocket): void {
  const t = this.tunnel as HandshakeTunnel | null;
  if (t === null || t.handshake === null) return;
  // Connected: the dial timeout becomes the handshake timeout.
  this.setTimeout(t.gen.websocket.handshakeTimeoutMs);
}

function onBackendClose(this: TunnelSocket): void {
  openSockets.delete(this);
  unwatchLiveness(this);
  const t = this.tunnel;
  if (t === null) return;
  this.tunnel = null;
  t.socket = null;
  t.leg = null;
  if (t.state === TunnelState.Upgrading) {
    const h = (t as HandshakeTunnel).handshake;
    handshakeSocketClosed(t as HandshakeTunnel, h !== null && h.timedOut);
  } else backendGone(t);
}

/** Armed as the dial timeout, then the handshake timeout, and after a close was sent, the time the
 *  backend has to finish the closing handshake. In every case the socket is done. */
function onBackendTimeout(this: TunnelSocket): void {
  const t = this.tunnel;
  if (t !== null && t.state === TunnelState.Upgrading) {
    const h = (t as HandshakeTunnel).handshake;
    if (h !== null) h.timedOut = true;
  }
  this.destroy();
}

function onBackendError(this: TunnelSocket): void {
  // 'close' follows every 'error' and carries the consequence; nothing to do here but to have a
  // listener, so that a reset backend never becomes an uncaught exception.
}

function adopt(socket: TunnelSocket, t: Tunnel): void {
  socket.tunnel = t;
  socket.partial = null;
  socket.partialLength = 0;
  socket.outArena = null;
  socket.outStart = 0;
  socket.outEnd = 0;
  socket.heard = false;
  socket.quietSince = 0;
  socket.pingedAt = 0;
  socket.watchIndex = -1;
}

// ---- the leg ----------------------------------------------------------------------------------------

export const nodeLeg: BackendLeg = {
  connect(t: HandshakeTunnel, target: BackendTarget): boolean {
    const localAddress = target.localAddress !== '' ? target.localAddress : undefined;
    let socket: TunnelSocket;
    if (target.tls) {
      // tls.connect hands localAddress to the net.Socket it connects (its typings leave it out).
      const options: tls.ConnectionOptions & { localAddress?: string } = {
        host: target.host,
        port: target.port,
        localAddress,
        servername: target.serverName,
        rejectUnauthorized: !target.insecureSkipVerify,
        ca: target.rootCAs !== '' ? target.rootCAs : undefined,
        ALPNProtocols: ['http/1.1'],
      };
      socket = tls.connect(options) as unknown as TunnelSocket;
      socket.on('secureConnect', onBackendConnect);
      socket.on('data', onBackendData);
    } else {
      socket = net.connect({ host: target.host, port: target.port, localAddress, onread: { buffer: backendReadBuffer, callback: onBackendRead } }) as TunnelSocket;
      socket.on('connect', onBackendConnect);
    }
    adopt(socket, t);
    t.socket = socket;
    t.leg = nodeLeg;
    socket.setNoDelay(true);
    socket.setTimeout(target.dialTimeoutMs);
    openSockets.add(socket);
    socket.on('close', onBackendClose);
    socket.on('error', onBackendError);
    socket.on('timeout', onBackendTimeout);
    socket.write(t.handshake!.request);
    return true;
  },

  startFraming(t: Tunnel, early: Buffer | null): void {
    const socket = t.socket!;
    socket.setTimeout(0);
    // Without pings of its own, let the kernel find a backend host that vanished.
    if (!watchLiveness(socket, t)) socket.setKeepAlive(true, 30_000);
    if (early !== null && early.length > 0) pumpFromBackend(t, socket, early, early.length);
  },

  send(t: Tunnel, opcode: number, payload: ArrayBuffer): number {
    const socket = t.socket!;
    if (!socket.writable) return -1;
    queueFrame(socket, opcode, new Uint8Array(payload));
    return socket.writableLength + socket.outEnd - socket.outStart;
  },

  close(t: Tunnel, code: number, reason: Uint8Array | string): void {
    const socket = t.socket!;
    writeOut(socket);
    if (socket.writable) socket.end(encodeCloseFrame(code, reason));
    socket.setTimeout(5000);
  },

  pause(t: Tunnel): void {
    t.socket!.pause();
  },

  resume(t: Tunnel): void {
    t.socket!.resume();
  },

  destroy(t: Tunnel): void {
    const socket = t.socket!;
    socket.tunnel = null;
    t.socket = null;
    t.leg = null;
    unwatchLiveness(socket);
    socket.destroy();
  },

  detach(t: Tunnel): void {
    // The socket finishes the closing handshake on its own (5 s at most), with no tunnel to report to.
    const socket = t.socket!;
    socket.tunnel = null;
    t.socket = null;
    t.leg = null;
    unwatchLiveness(socket);
    socket.resume();
  },
};

/** Answer a backend's ping (backend-frames.ts). */
export function sendPong(socket: TunnelSocket, payload: Uint8Array): void {
  queueFrame(socket, Opcode.Pong, payload);
}
