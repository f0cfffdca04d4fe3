/**
 * The backend leg of a tunnel behind one small interface, so that tunnel.ts and upgrade.ts never ask which
 * kind of connection carries it: the Node socket leg (backend-socket.ts: node:net / node:tls with
 * backend-frames.ts, for TLS backends, backends with websocketCompression, and SLUICE_NATIVE=0) and the
 * native leg (native-leg.ts: TCP and RFC 6455 in C on the worker's own loop, for every other backend).
 *
 * Costs: each leg is one module-level object whose methods take the tunnel, and the tunnel carries the
 * leg's handle (a socket, or an addon id), so a connection costs no object beyond its Tunnel and its
 * socket or C struct, and a message neither an object nor a closure.
 *
 * Events come back as plain calls, in this order for one connection (no emitter, no registration):
 *  - before the 101 (upgrade.ts): `handshakeData(t, bytes, length)` for the answer's bytes, and
 *    `handshakeSocketClosed(t, timedOut)` when the connection failed or ended (no other event follows);
 *  - after it (tunnel.ts): `deliverData(t, opcode, fin, data)` per data frame, all of one read inside one
 *    `ws.cork()`, then `clientBackpressureAfterRead(t)`; `closeClientAsBackend` for the backend's close frame
 *    (already answered), `failFromBackend` for a breach of RFC 6455 (already told to the backend),
 *    `backendUnresponsive(t)` when a ping went unanswered, and `backendGone(t)` last, exactly once,
 *    when the connection is over. After `destroy` or `detach` nothing more is reported.
 */
import net from 'node:net';
import type { TransportSpec } from '../config/snapshot.js';
import { context } from './context.js';
import type { Tunnel } from './tunnel.js';
import type { HandshakeTunnel } from './upgrade.js';
import { backendSockets, nodeLeg } from './backend-socket.js';
import { destroyAllNative, nativeAvailable, nativeConnections, nativeLeg } from './native-leg.js';

/** Where one connection attempt goes, as upgrade.ts resolved it. */
export interface BackendTarget {
  /** An IP literal, or a host name (each leg resolves it: Node's socket, or native-leg.ts before the addon). */
  readonly host: string;
  readonly port: number;
  readonly tls: boolean;
  /** SNI and certificate name (TLS only; undefined: none). */
  readonly serverName: string | undefined;
  readonly insecureSkipVerify: boolean;
  readonly rootCAs: string;
  readonly dialTimeoutMs: number;
  /** Local address to bind before connecting (serversTransport.sourceAddresses), '' for the kernel's choice. */
  readonly localAddress: string;
}

export interface BackendLeg {
  /** Start connecting and send the upgrade request (`t.handshake.request`) once connected: the dial
   *  timeout, then websocket.handshakeTimeout, run until `startFraming`. False when the connect could not
   *  even start (the caller treats it as refused; no event follows). */
  connect(t: HandshakeTunnel, target: BackendTarget): boolean;
  /** The backend's 101 was accepted and the client upgraded: stop the handshake timeout, read RFC 6455
   *  frames from now on, starting with `early` (the bytes that came after the 101's head), and start the
   *  liveness pings (websocket.pingInterval). */
  startFraming(t: Tunnel, early: Buffer | null): void;
  /** One client message to the backend as a masked frame (opcode 1 or 2; the payload is only read during
   *  the call). Returns the bytes now waiting to be written on this connection, -1 when it cannot send. */
  send(t: Tunnel, opcode: number, payload: ArrayBuffer): number;
  /** Start the closing handshake (once): a close frame (code 0: none), then 5 s for the backend's answer. */
  close(t: Tunnel, code: number, reason: Uint8Array | string): void;
  /** Stop / restart reading the backend (backpressure from the client). */
  pause(t: Tunnel): void;
  resume(t: Tunnel): void;
  /** Drop the connection now, without a close frame; nothing more is reported. */
  destroy(t: Tunnel): void;
  /** Leave the tunnel: the connection finishes its closing handshake on its own and reports nothing. */
  detach(t: Tunnel): void;
}

/** The leg for one connection attempt. The native leg has no TLS and no inflater: TLS backends and
 *  transports with websocketCompression stay on the Node socket leg, as does everything with
 *  SLUICE_NATIVE=0 or without the addon. Host names go to either (the native leg resolves them itself). */
export function legFor(tls: boolean, websocketCompression: boolean): BackendLeg {
  return nativeAvailable && !tls && !websocketCompression ? nativeLeg : nodeLeg;
}

/** Backend connections of this worker on either leg, from connect to their last byte (a drain waits for them). */
export function backendConnections(): number {
  return backendSockets().size + nativeConnections();
}

/** Socket leg connections still open: a destroyed socket's fd closes only when its 'close' event runs. */
export function backendSocketsClosing(): number {
  return backendSockets().size;
}

/** End of a drain: drop every backend connection of this worker at once (nothing more is reported). */
export function destroyAllBackends(): void {
  for (const socket of backendSockets()) socket.destroy();
  destroyAllNative();
}

// ---- serversTransport.sourceAddresses -----------------------------------------------------------------

/** Per transport (of any live generation), this worker's round robin over its source addresses by family. */
interface SourceRotation {
  readonly v4: readonly string[];
  readonly v6: readonly string[];
  next4: number;
  next6: number;
}
const rotations = new WeakMap<TransportSpec, SourceRotation>();

/**
 * The local address the next connection through `transport` to `host` leaves from: its sourceAddresses in
 * turn (per worker, so workers start at different places and no state is shared), only those of the
 * host's address family ('' when there are none: the kernel chooses). A host name takes an IPv4 address
 * when there is one. Called once per connection attempt.
 */
export function sourceAddressFor(transport: TransportSpec, host: string): string {
  const all = transport.sourceAddresses;
  if (all === undefined || all.length === 0) return '';
  let rotation = rotations.get(transport);
  if (rotation === undefined) {
    const start = context().workerIndex;
    rotation = { v4: all.filter((a) => net.isIPv4(a)), v6: all.filter((a) => net.isIPv6(a)), next4: start, next6: start };
    rotations.set(transport, rotation);
  }
  const v6 = net.isIPv6(host) || (rotation.v4.length === 0 && net.isIP(host) === 0);
  const list = v6 ? rotation.v6 : rotation.v4;
  if (list.length === 0) return '';
  if (v6) return list[rotation.next6++ % list.length]!;
  return list[rotation.next4++ % list.length]!;
}
