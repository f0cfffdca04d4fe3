/**
 * Test backends for balancing and health: each has a name it sends as its first message, a plain
 * HTTP health endpoint (`/health`, its status settable), can refuse upgrades with a status, can be
 * killed (every connection reset, port closed) and brought back on the same address. Plus a client
 * that reports which backend it reached and the Set-Cookie of the 101.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';

export interface PoolBackend {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly url: string;
  /** Upgrade requests that reached it (accepted or refused). */
  upgrades: number;
  /** Headers of the last upgrade request that reached it. */
  lastHeaders: http.IncomingHttpHeaders;
  /** Health check requests that reached it. */
  healthChecks: number;
  /** Status /health answers (200 by default). */
  healthStatus: number;
  /** 0: accept upgrades; else answer them with this status. */
  refuseWith: number;
  readonly sockets: Set<WebSocket>;
  readonly running: boolean;
  /** Reset every connection and close the port (a crashed backend). */
  kill(): Promise<void>;
  /** Listen again on the same address. */
  revive(): Promise<void>;
}

export async function startPoolBackend(name: string, host = '127.0.0.1', port = 0): Promise<PoolBackend> {
  let server: http.Server | null = null;
  let wss: WebSocketServer | null = null;
  const backend = {
    name,
    host,
    port,
    url: '',
    upgrades: 0,
    lastHeaders: {} as http.IncomingHttpHeaders,
    healthChecks: 0,
    healthStatus: 200,
    refuseWith: 0,
    sockets: new Set<WebSocket>(),
    get running(): boolean {
      return server !== null;
    },
    async kill(): Promise<void> {
      const s = server;
      server = null;
      if (s === null) return;
      for (const ws of backend.sockets) ws.terminate();
      s.closeAllConnections();
      wss?.close();
      await new Promise<void>((resolve) => s.close(() => resolve()));
    },
    async revive(): Promise<void> {
      await listen();
    },
  };
  const listen = async (): Promise<void> => {
    const s = http.createServer((req, res) => {
      if (req.url === '/health') {
        backend.healthChecks++;
        res.writeHead(backend.healthStatus, { 'content-type': 'text/plain' }).end(`${name}\n`);
      } else res.writeHead(404).end();
    });
    const w = new WebSocketServer({ noServer: true, perMessageDeflate: false });
    s.on('upgrade', (req, socket, head) => {
      backend.upgrades++;
      backend.lastHeaders = req.headers;
      if (backend.refuseWith !== 0) {
        socket.end(`HTTP/1.1 ${backend.refuseWith} Refused\r\nContent-Length: ${name.length}\r\nConnection: close\r\n\r\n${name}`);
        return;
      }
      w.handleUpgrade(req, socket, head, (ws) => {
        backend.sockets.add(ws);
        ws.on('close', () => backend.sockets.delete(ws));
        ws.on('error', () => undefined);
        ws.send(name);
        ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
      });
    });
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.listen(backend.port, host, () => resolve());
    });
    server = s;
    wss = w;
    backend.port = (s.address() as AddressInfo).port;
    backend.url = `ws://${host}:${backend.port}`;
  };
  await listen();
  return backend;
}

export interface Reached {
  readonly ws: WebSocket;
  /** Name of the backend that answered. */
  readonly backend: string;
  /** Set-Cookie of the 101 ('' when none). */
  readonly setCookie: string;
  /** Close code and time, once closed. */
  readonly closed: Promise<{ code: number; at: number }>;
}

export type Attempt = Reached | { readonly status: number; readonly headers: http.IncomingHttpHeaders; readonly body: string };

/** Upgrade through Sluice and read the backend's name; a refusal resolves with its status. */
export function reach(url: string, headers: Record<string, string> = {}, timeoutMs = 5000): Promise<Attempt> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers, perMessageDeflate: false });
    let setCookie = '';
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`no answer from ${url} within ${timeoutMs} ms`));
    }, timeoutMs);
    const closed = new Promise<{ code: number; at: number }>((done) => ws.once('close', (code) => done({ code, at: Date.now() })));
    ws.on('upgrade', (res) => {
      const value = res.headers['set-cookie'];
      setCookie = Array.isArray(value) ? value.join('\n') : value ?? '';
    });
    ws.once('message', (data) => {
      clearTimeout(timer);
      resolve({ ws, backend: String(data), setCookie, closed });
    });
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => {
        clearTimeout(timer);
        ws.terminate();
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
      });
    });
    ws.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

/** reach(), expecting a backend: throws with the refusal otherwise. */
export async function reachBackend(url: string, headers: Record<string, string> = {}): Promise<Reached> {
  const attempt = await reach(url, headers);
  if ('status' in attempt) throw new Error(`upgrade refused with ${attempt.status}: ${attempt.body.trim()}`);
  return attempt;
}

/** The `name=value` part of a Set-Cookie, to send back as a Cookie header. */
export function cookiePair(setCookie: string): string {
  return setCookie.split(';')[0]!.trim();
}

/** How many of `names` are each backend's, as `{ b0: 3, b1: 2 }`. */
export function tally(names: readonly string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const n of names) counts[n] = (counts[n] ?? 0) + 1;
  return counts;
}
