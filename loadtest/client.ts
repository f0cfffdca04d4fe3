/**
 * The seam between the load threads and a WebSocket client implementation. thread.ts and traffic.ts see
 * connections only through LoadConnection and make them only through a ClientFactory, so a second client
 * (in C, say) plugs in as one more factory: it parses frames its own way and reports to ClientEvents with
 * the same numbers. ws-client.ts is the JavaScript implementation.
 *
 * Timestamps: every message a scenario sends carries its send time, and onMessage hands that time back in
 * the thread's performance.now() clock, so latency is `now - sentAt` whatever the implementation.
 * - `echo` stamps (echo, throughput, slow-consumer): bytes 0-7 of the payload are a float64 LE written by
 *   this thread's performance.now() just before the frame was written; the echo brings them back.
 * - `push` stamps (receive): the server wrote the payload, text or binary, starting with `{"sentAt":` (JSON
 *   whitespace allowed after the colon) and a JSON number, its send time in milliseconds since the Unix
 *   epoch; the client turns it into this thread's clock (minus performance.timeOrigin). decodePushStamp is
 *   the reference decoder.
 * A message without a stamp (shorter than 8 bytes, or without the push prefix) reports NaN.
 */

export const CONNECTING = 0;
export const OPEN = 1;
export const CLOSING = 2;
export const CLOSED = 3;

/** Where and how to connect: one per --url, with --host-header and --servername applied. */
export interface Target {
  readonly secure: boolean;
  /** Address to connect to (no brackets around IPv6). */
  readonly host: string;
  readonly port: number;
  /** Path and query of the upgrade request. */
  readonly path: string;
  /** The Host header of the upgrade request. */
  readonly hostHeader: string;
  /** TLS server name (SNI) for wss://; undefined sends none (an IP address cannot be one). */
  readonly servername: string | undefined;
}

export type StampFormat = 'echo' | 'push';

export interface ClientOptions {
  readonly localAddress?: string;
  /** TCP connect + TLS + upgrade must finish within this, else the attempt fails as 'timeout'. */
  readonly timeoutMs: number;
  /** Accept any certificate (self-signed test certificates). */
  readonly insecure: boolean;
  readonly stamps: StampFormat;
}

/** What a scenario hears from its connections; one object per thread, not one closure per connection. */
export interface ClientEvents {
  onOpen(client: LoadConnection): void;
  /**
   * A whole message (text or binary, fragments joined): `sentAt` is its stamp in this thread's
   * performance.now() clock, NaN when it has none; `now` is the arrival time, shared by the messages of one
   * read.
   */
  onMessage(client: LoadConnection, sentAt: number, length: number, now: number): void;
  /** Exactly once per connection, whether it opened or not. */
  onClose(client: LoadConnection): void;
}

/** One client connection as the scenarios drive it. */
export interface LoadConnection {
  /** CONNECTING, OPEN, CLOSING or CLOSED. */
  readonly state: number;
  /** Why it failed or ended unasked ('refused', 'timeout', 'reset', 'status 503', 'bad accept', 'closed'…); null if it did not. */
  readonly failure: string | null;
  /** Close code the peer sent (1005 if it gave none); 0 until a close frame arrives. */
  readonly peerCloseCode: number;
  readonly wasOpen: boolean;
  /** performance.now() when the connection was started, and when the 101 was parsed. */
  readonly startedAt: number;
  readonly openedAt: number;

  /** Free for the scenario: flags, and per-connection counts it keeps. */
  tag: number;
  sent: number;
  received: number;
  /** Messages the closed-loop scenario owes this connection, and whether a send was refused. */
  queued: number;
  blocked: boolean;

  /**
   * Sends `count` binary messages of `body`, each with its echo stamp written into bytes 0-7 just before it is
   * framed (the implementation may write into `body` to do so). Returns false when the transport buffer is
   * full: the messages are queued, and whenWritable says when to send more.
   */
  sendStamped(body: Buffer, count: number): boolean;
  /** Calls `callback` once, when what was queued has been handed to the kernel. */
  whenWritable(callback: () => void): void;
  /** Stop and restart reading (a slow consumer: the peer's sends back up). */
  pauseReading(): void;
  resumeReading(): void;
  /** Starts the closing handshake; the connection is destroyed if the peer has not finished it within `timeoutMs`. */
  close(code?: number, timeoutMs?: number): void;
  /** Ends the connection at once (onClose follows). */
  destroy(): void;
}

export type ClientFactory = (target: Target, events: ClientEvents, options: ClientOptions) => LoadConnection;

/** `--url` plus `--host-header` and `--servername`: the servername defaults to the Host header's name. */
export function parseTarget(url: string, overrides: { hostHeader?: string; servername?: string } = {}): Target {
  const u = new URL(url);
  const secure = u.protocol === 'wss:';
  const hostHeader = overrides.hostHeader ?? u.host;
  const name = overrides.servername ?? hostName(hostHeader);
  return {
    secure,
    host: u.hostname.replace(/^\[|\]$/g, ''),
    port: u.port === '' ? (secure ? 443 : 80) : Number(u.port),
    path: `${u.pathname || '/'}${u.search}`,
    hostHeader,
    servername: isIpAddress(name) ? undefined : name,
  };
}

/** `chat.example.com:8443` → `chat.example.com`; `[::1]:80` → `::1`. */
function hostName(hostHeader: string): string {
  const bracketed = /^\[([^\]]*)\]/.exec(hostHeader);
  if (bracketed !== null) return bracketed[1]!;
  const colon = hostHeader.lastIndexOf(':');
  return colon >= 0 && hostHeader.indexOf(':') === colon ? hostHeader.slice(0, colon) : hostHeader;
}

export function isIpAddress(name: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(name) || name.includes(':');
}

const PUSH_PREFIX = Buffer.from('{"sentAt":', 'latin1');
/** Long enough for any JSON number a clock gives (e.g. 1733060000123.456789e0). */
const MAX_NUMBER_LENGTH = 32;

/**
 * The push stamp of the payload at data[start, end): milliseconds since the Unix epoch as the server wrote
 * them, or NaN when the payload does not start with `{"sentAt":` and a number.
 */
export function decodePushStamp(data: Buffer, start: number, end: number): number {
  if (end - start < PUSH_PREFIX.length + 1 || data.compare(PUSH_PREFIX, 0, PUSH_PREFIX.length, start, start + PUSH_PREFIX.length) !== 0) {
    return NaN;
  }
  let from = start + PUSH_PREFIX.length;
  while (from < end && (data[from] === 0x20 || data[from] === 0x09 || data[from] === 0x0a || data[from] === 0x0d)) from++;
  let to = from;
  const limit = Math.min(end, from + MAX_NUMBER_LENGTH);
  while (to < limit && isNumberByte(data[to]!)) to++;
  if (to === from) return NaN;
  const value = Number(data.toString('latin1', from, to));
  return Number.isFinite(value) ? value : NaN;
}

function isNumberByte(byte: number): boolean {
  // 0-9 . - + e E
  return (byte >= 0x30 && byte <= 0x39) || byte === 0x2e || byte === 0x2d || byte === 0x2b || byte === 0x65 || byte === 0x45;
}
