/**
 * Plain HTTP test backends (node:http, or node:https with a certificate) and a client that keeps every
 * response header as sent. A backend records each request (method, URL, headers, body hash) and answers by
 * path: /status/NNN, /cookies, /chunked, /slow-head?ms=, /die (cuts its response mid-body), /hang (never
 * answers), /bytes?n= (n deterministic bytes), /hop (hop-by-hop headers in its answer); anything else echoes
 * the request as JSON. It also upgrades WebSockets (echo, and its name first) so one backend can serve
 * both kinds on the same routes.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { WebSocketServer } from 'ws';

export interface SeenRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly rawHeaders: readonly string[];
  bodyBytes: number;
  bodySha: string;
  /** The client side (Sluice) closed the request before the backend answered it. */
  closedEarly: boolean;
}

export interface HttpBackend {
  readonly name: string;
  readonly port: number;
  /** http://127.0.0.1:PORT (https:// for TLS backends). */
  readonly url: string;
  readonly requests: SeenRequest[];
  /** TCP connections accepted so far, and open now. */
  connections: number;
  readonly open: Set<Socket>;
  /** The peer address of each accepted connection, in order. */
  readonly peers: string[];
  /** Requests being answered now. */
  active: number;
  /** Refuse upgrades, and answer /health with this (200 by default). */
  healthStatus: number;
  close(): Promise<void>;
}

/** The deterministic content of /bytes: byte i is (i * 31 + i >> 8) & 255, computed a MiB at a time. */
export function patternChunk(offset: number, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) {
    const at = offset + i;
    out[i] = (at * 31 + (at >>> 8)) & 255;
  }
  return out;
}

const MiB = 1024 * 1024;
const PATTERN = patternChunk(0, MiB);

/** Bytes [offset, offset+length) of the pattern. It repeats every 65,536 bytes (both terms do), so a window
 *  of up to 960 KiB is a slice of the cached first MiB. */
export function pattern(offset: number, length: number): Buffer {
  const start = offset % 65536;
  if (start + length <= PATTERN.length) return PATTERN.subarray(start, start + length);
  return patternChunk(offset, length);
}

export async function startHttpBackend(
  name: string,
  options: {
    tls?: { cert: string; key: string };
    /** Answers instead of the built-in paths when it returns true (called once the body was read). */
    handler?: (req: http.IncomingMessage, res: http.ServerResponse, seen: SeenRequest) => boolean;
    /** Read request bodies in bursts: pause `ms` after every `every` bytes (a slow backend). */
    readPauses?: { every: number; ms: number };
  } = {},
): Promise<HttpBackend> {
  const requests: SeenRequest[] = [];
  const open = new Set<Socket>();
  const backend: HttpBackend = {
    name,
    port: 0,
    url: '',
    requests,
    connections: 0,
    open,
    peers: [],
    active: 0,
    healthStatus: 200,
    close: async () => {
      for (const s of open) s.destroy();
      wss.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const seen: SeenRequest = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, bodyBytes: 0, bodySha: '', closedEarly: false };
    requests.push(seen);
    backend.active++;
    let counted = true;
    const done = (): void => {
      if (counted) backend.active--;
      counted = false;
    };
    res.on('close', () => {
      if (!res.writableFinished) seen.closedEarly = true;
      done();
    });
    const hash = createHash('sha256');
    let sincePause = 0;
    req.on('data', (chunk: Buffer) => {
      seen.bodyBytes += chunk.length;
      hash.update(chunk);
      const pauses = options.readPauses;
      if (pauses === undefined) return;
      sincePause += chunk.length;
      if (sincePause >= pauses.every) {
        sincePause = 0;
        req.pause();
        setTimeout(() => req.resume(), pauses.ms);
      }
    });
    req.on('end', () => {
      seen.bodySha = hash.digest('hex');
      if (options.handler?.(req, res, seen)) return;
      answer(name, backend, req, res, seen);
    });
  };
  const server = options.tls === undefined ? http.createServer(onRequest) : https.createServer({ cert: options.tls.cert, key: options.tls.key }, onRequest);
  server.keepAliveTimeout = 60_000;
  server.on('connection', (socket: Socket) => {
    backend.connections++;
    backend.peers.push(socket.remoteAddress ?? '');
    open.add(socket);
    socket.on('close', () => open.delete(socket));
  });
  server.on('secureConnection', () => undefined);
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  server.on('upgrade', (req, socket, head) => {
    requests.push({ method: 'GET', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, bodyBytes: 0, bodySha: '', closedEarly: false });
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.send(JSON.stringify({ name, url: req.url, headers: req.headers }));
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
      ws.on('error', () => undefined);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as AddressInfo).port;
  Object.assign(backend, { port, url: `${options.tls === undefined ? 'http' : 'https'}://127.0.0.1:${port}` });
  return backend;
}

function answer(name: string, backend: HttpBackend, req: http.IncomingMessage, res: http.ServerResponse, seen: SeenRequest): void {
  const url = new URL(req.url ?? '/', 'http://x');
  const path = url.pathname;
  const status = /\/status\/(\d{3})$/.exec(path);
  if (status !== null) {
    const code = Number(status[1]);
    res.writeHead(code, code === 304 ? { etag: '"v1"' } : { 'content-type': 'text/plain', 'x-backend': name });
    res.end(code === 204 || code === 304 ? undefined : `${name} ${code}\n`);
    return;
  }
  if (path.endsWith('/health')) {
    res.writeHead(backend.healthStatus).end(`${name}\n`);
    return;
  }
  if (path.endsWith('/cookies')) {
    res.setHeader('set-cookie', ['a=1; Path=/; HttpOnly', 'b=2; Path=/', 'c=3; Expires=Wed, 21 Oct 2037 07:28:00 GMT']);
    res.end(`${name}\n`);
    return;
  }
  if (path.endsWith('/chunked')) {
    res.writeHead(200, { 'content-type': 'text/plain', 'x-backend': name });
    res.write('first,');
    setTimeout(() => res.end('second\n'), 20);
    return;
  }
  if (path.endsWith('/hop')) {
    res.writeHead(200, { connection: 'keep-alive, x-hop', 'x-hop': 'secret', 'keep-alive': 'timeout=5', 'proxy-connection': 'x', 'x-end': 'kept', 'content-length': '3' });
    res.end('hop');
    return;
  }
  if (path.endsWith('/slow-head')) {
    setTimeout(() => {
      if (!res.destroyed) res.end(`${name} slow\n`);
    }, Number(url.searchParams.get('ms') ?? '1000'));
    return;
  }
  if (path.endsWith('/hang')) return;
  if (path.endsWith('/die')) {
    res.writeHead(200, { 'content-length': '100000' });
    res.write(Buffer.alloc(1000, 1));
    setTimeout(() => res.socket?.destroy(), 50);
    return;
  }
  if (path.endsWith('/die-chunked')) {
    res.writeHead(200);
    res.write(Buffer.alloc(1000, 1));
    setTimeout(() => res.socket?.destroy(), 50);
    return;
  }
  if (path.endsWith('/bytes')) {
    const total = Number(url.searchParams.get('n') ?? '0');
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(total) });
    let sent = 0;
    const pump = (): void => {
      while (sent < total) {
        const n = Math.min(MiB, total - sent);
        const chunk = pattern(sent, n);
        sent += n;
        if (!res.write(chunk)) {
          res.once('drain', pump);
          return;
        }
      }
      res.end();
    };
    res.on('close', () => (sent = total));
    pump();
    return;
  }
  const body = JSON.stringify({ name, method: req.method, url: req.url, headers: req.headers, rawHeaders: req.rawHeaders, bodyBytes: seen.bodyBytes, bodySha: seen.bodySha });
  res.writeHead(200, { 'content-type': 'application/json', 'x-backend': name });
  res.end(body);
}

export interface Answer {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  /** Name, value, name, value… as received (repeated headers kept apart). */
  readonly rawHeaders: readonly string[];
  readonly body: Buffer;
  text(): string;
  json<T = Record<string, unknown>>(): T;
}

/** One request through a fresh connection (no agent), the body read whole. */
export function fetchRaw(
  url: string,
  options: { method?: string; headers?: Record<string, string | string[]>; body?: string | Buffer; timeoutMs?: number; ca?: string } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    const lib = target.protocol === 'https:' ? https : http;
    const req = lib.request(
      { host: target.hostname, port: target.port, path: `${target.pathname}${target.search}`, method: options.method ?? 'GET', headers: options.headers, agent: false, ca: options.ca },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          clearTimeout(timer);
          const body = Buffer.concat(chunks);
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            rawHeaders: res.rawHeaders,
            body,
            text: () => body.toString('utf8'),
            json: <T>() => JSON.parse(body.toString('utf8')) as T,
          });
        });
        res.on('error', (error) => {
          clearTimeout(timer);
          reject(error);
        });
      },
    );
    const timer = setTimeout(() => req.destroy(new Error(`no answer from ${url} within ${options.timeoutMs ?? 5000} ms`)), options.timeoutMs ?? 5000);
    req.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    req.end(options.body);
  });
}

/** All values of a header in a raw header list (names compared without case). */
export function rawValues(rawHeaders: readonly string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) if (rawHeaders[i]!.toLowerCase() === name) out.push(rawHeaders[i + 1]!);
  return out;
}
