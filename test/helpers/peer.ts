/**
 * The test side of a WebSocket, either end: a `ws` client of Sluice, or a backend's server-side
 * socket. A Peer queues messages, pings, pongs and the close from the moment it is wrapped, so no
 * event is lost between two awaits, and every wait has a deadline that fails the test with what was
 * (not) seen. `closeAllPeers()` (in an afterEach) terminates whatever a failing test left open.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import WebSocket, { type ClientOptions } from 'ws';

export interface Received {
  readonly data: Buffer;
  readonly isBinary: boolean;
}

export interface CloseInfo {
  readonly code: number;
  readonly reason: string;
}

const openPeers = new Set<Peer>();

/** Terminate every Peer still open (tests call it in afterEach, so a failed test leaks nothing). */
export function closeAllPeers(): void {
  for (const peer of openPeers) peer.ws.terminate();
  openPeers.clear();
}

/** Reject with `message` unless `promise` settles within `ms`. */
export function within<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${message} (waited ${ms} ms)`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Poll `condition` every 10 ms until it holds; reject with `message` after `ms`. */
export async function until(condition: () => boolean, ms: number, message: string | (() => string)): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${typeof message === 'string' ? message : message()} (waited ${ms} ms)`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

export class Peer {
  private readonly queue: Received[] = [];
  private head = 0;
  private wake: (() => void) | null = null;
  readonly pings: Buffer[] = [];
  readonly pongs: Buffer[] = [];
  /** Messages received so far (consumed or not). */
  count = 0;
  closeInfo: CloseInfo | null = null;
  readonly closed: Promise<CloseInfo>;

  constructor(readonly ws: WebSocket) {
    openPeers.add(this);
    ws.on('error', () => undefined);
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      this.count++;
      this.queue.push({ data, isBinary });
      this.wake?.();
    });
    ws.on('ping', (data: Buffer) => this.pings.push(data));
    ws.on('pong', (data: Buffer) => this.pongs.push(data));
    this.closed = new Promise((resolve) => {
      ws.once('close', (code: number, reason: Buffer) => {
        openPeers.delete(this);
        this.closeInfo = { code, reason: reason.toString() };
        resolve(this.closeInfo);
        this.wake?.();
      });
    });
  }

  /** The next message not yet taken. */
  async next(ms = 5000): Promise<Received> {
    const [message] = await this.take(1, ms);
    return message!;
  }

  /** The next `n` messages not yet taken. */
  async take(n: number, ms = 5000): Promise<Received[]> {
    const deadline = Date.now() + ms;
    while (this.queue.length - this.head < n) {
      if (this.closeInfo !== null) {
        throw new Error(`closed (${this.closeInfo.code} '${this.closeInfo.reason}') after ${this.queue.length - this.head} of ${n} awaited messages`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`got ${this.queue.length - this.head} of ${n} awaited messages within ${ms} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = null;
    }
    const taken = this.queue.slice(this.head, this.head + n);
    this.head += n;
    if (this.head > 4096 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
    return taken;
  }

  /** The close, within `ms`. */
  waitClose(ms = 5000): Promise<CloseInfo> {
    return within(this.closed, ms, 'the WebSocket did not close');
  }

  /** Send and resolve once `ws` handed it to the socket. */
  send(data: Buffer | string, options: { binary?: boolean; fin?: boolean } = {}): Promise<void> {
    return new Promise((resolve, reject) => this.ws.send(data, options, (error) => (error ? reject(error) : resolve())));
  }
}

export class UpgradeRefused extends Error {
  constructor(
    readonly status: number,
    readonly headers: Record<string, string | string[] | undefined>,
    readonly body: string,
  ) {
    super(`upgrade refused: ${status} ${body.trim()}`);
  }
}

/** Open a `ws` client; rejects with UpgradeRefused (status, headers and body) when the answer is not 101.
 *  `servername` (SNI) goes through `ws` to tls.connect. */
export function connect(url: string, options: ClientOptions & { protocols?: string | string[]; servername?: string } = {}): Promise<Peer> {
  const { protocols, ...rest } = options;
  const ws = new WebSocket(url, protocols, { perMessageDeflate: false, maxPayload: 64 * 1024 * 1024, handshakeTimeout: 5000, ...rest });
  const peer = new Peer(ws);
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(peer));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => {
        openPeers.delete(peer);
        ws.terminate();
        reject(new UpgradeRefused(res.statusCode ?? 0, res.headers, body));
      });
      res.on('error', reject);
    });
    ws.once('error', (error) => {
      openPeers.delete(peer);
      reject(error);
    });
  });
}

export interface RawResponse {
  readonly status: number;
  /** Lowercase header name → value (last one wins). */
  readonly headers: Map<string, string>;
  readonly body: string;
  /** Everything received, as latin1. */
  readonly raw: string;
}

/**
 * Send `request` (a whole HTTP/1.1 request head, byte for byte) on a new TCP (or TLS) connection and
 * read the answer: until the connection closes, or until the head and `content-length` bytes of
 * body arrived, or, for a 101, until the head arrived (the socket is then destroyed).
 */
export function rawRequest(port: number, request: string, tlsOptions?: ConnectionOptions, ms = 5000): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket: Socket = tlsOptions === undefined ? netConnect(port, '127.0.0.1') : tlsConnect({ port, host: '127.0.0.1', ...tlsOptions });
    let raw = '';
    let done = false;
    const timer = setTimeout(() => finish(new Error(`no complete answer within ${ms} ms; got: ${JSON.stringify(raw)}`)), ms);
    const finish = (error?: Error): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      if (error !== undefined) {
        reject(error);
        return;
      }
      const end = raw.indexOf('\r\n\r\n');
      const headText = end < 0 ? raw : raw.slice(0, end);
      const [statusLine, ...lines] = headText.split('\r\n');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? '')?.[1] ?? 0);
      const headers = new Map<string, string>();
      for (const line of lines) {
        const colon = line.indexOf(':');
        if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
      }
      const body = end < 0 ? '' : Buffer.from(raw.slice(end + 4), 'latin1').toString('utf8');
      resolve({ status, headers, body, raw });
    };
    const complete = (): boolean => {
      const end = raw.indexOf('\r\n\r\n');
      if (end < 0) return false;
      if (raw.startsWith('HTTP/1.1 101')) return true;
      const length = /\r\ncontent-length: *(\d+)/i.exec(raw.slice(0, end + 2));
      return length !== null && raw.length - end - 4 >= Number(length[1]);
    };
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      raw += d;
      if (complete()) finish();
    });
    socket.on('end', () => finish());
    socket.on('close', () => finish());
    socket.on('error', (error) => (raw === '' ? finish(error) : finish()));
    socket.write(Buffer.from(request, 'latin1'));
  });
}

/** A valid upgrade request head for `path` with `extra` header lines (each ending in \r\n). */
export function upgradeRequest(path: string, extra = '', host = 'localhost'): string {
  return (
    `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n${extra}\r\n`
  );
}
