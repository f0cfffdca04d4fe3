/**
 * Event handlers of a backend socket, shared by every socket of the worker (no closure per
 * connection): each finds its Tunnel through the socket's `tunnel` field and hands the event to the
 * upgrade (before the 101) or to the pump (after it).
 */
import { TunnelState, backendGone, type TunnelSocket } from './tunnel.js';
import { pumpFromBackend } from './backend-frames.js';
import { handshakeData, handshakeSocketClosed, type HandshakeTunnel } from './upgrade.js';

/** `onread` callback for plain TCP backends: data arrives in the worker's static buffer. */
export function onBackendRead(this: TunnelSocket, length: number, buffer: Buffer): boolean {
  const t = this.tunnel;
  if (t === null) return true;
  if (t.state === TunnelState.Upgrading) handshakeData(t as HandshakeTunnel, buffer, length);
  else pumpFromBackend(t, buffer, length);
  return true;
}

/** 'data' listener for TLS backends (decrypted chunks arrive as fresh Buffers). */
export function onBackendData(this: TunnelSocket, chunk: Buffer): void {
  const t = this.tunnel;
  if (t === null) return;
  if (t.state === TunnelState.Upgrading) handshakeData(t as HandshakeTunnel, chunk, chunk.length);
  else pumpFromBackend(t, chunk, chunk.length);
}

/** Every backend socket of this worker, from connect to 'close': a drain waits for all of them. */
const openSockets = new Set<TunnelSocket>();
export function backendSockets(): ReadonlySet<TunnelSocket> {
  return openSockets;
}
export function trackBackendSocket(socket: TunnelSocket): void {
  openSockets.add(socket);
}

export function onBackendClose(this: TunnelSocket): void {
  openSockets.delete(this);
  const t = this.tunnel;
  if (t === null) return;
  this.tunnel = null;
  if (t.state === TunnelState.Upgrading) {
    const h = (t as HandshakeTunnel).handshake;
    handshakeSocketClosed(t as HandshakeTunnel, h !== null && h.timedOut);
  } else backendGone(t);
}

/** Armed as the dial timeout, then the handshake timeout, and after a close was sent, the time the
 *  backend has to finish the closing handshake. In every case the socket is done. */
export function onBackendTimeout(this: TunnelSocket): void {
  const t = this.tunnel;
  if (t !== null && t.state === TunnelState.Upgrading) {
    const h = (t as HandshakeTunnel).handshake;
    if (h !== null) h.timedOut = true;
  }
  this.destroy();
}

export function onBackendError(this: TunnelSocket): void {
  // 'close' follows every 'error' and carries the consequence; nothing to do here but to have a
  // listener, so that a reset backend never becomes an uncaught exception.
}
