/**
 * Helpers for the limits tests: one request of either kind (a plain HTTP request, or a WebSocket upgrade that
 * stays open) from a chosen local address, with the answer's status and headers; and a /metrics scrape.
 */
import http from 'node:http';
import { WebSocket } from 'ws';
import { parsePrometheus, type Sample } from './admin.js';

export type Kind = 'http' | 'upgrade';

export interface Attempt {
  /** 101 for an upgrade that opened, else the answer's status (0: the connection closed without one). */
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
  /** The open WebSocket of an upgrade that went through (close it when done). */
  readonly ws: WebSocket | null;
  /** An HTTP request still waiting for its answer (`hold`): destroy to give up. */
  readonly request: http.ClientRequest | null;
}

export interface AttemptOptions {
  readonly localAddress?: string;
  readonly headers?: Record<string, string>;
  /** HTTP: resolve as soon as the request is sent (for requests that stay in flight). */
  readonly hold?: boolean;
  readonly timeoutMs?: number;
}

/** One request or upgrade to 127.0.0.1:`port``path`. */
export function attempt(kind: Kind, port: number, path: string, options: AttemptOptions = {}): Promise<Attempt> {
  return kind === 'http' ? httpAttempt(port, path, options) : upgradeAttempt(port, path, options);
}

function httpAttempt(port: number, path: string, options: AttemptOptions): Promise<Attempt> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, agent: false, headers: options.headers, localAddress: options.localAddress }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, ws: null, request: null });
      });
    });
    const timer = setTimeout(() => req.destroy(new Error(`no answer to ${path} within ${options.timeoutMs ?? 5000} ms`)), options.timeoutMs ?? 5000);
    req.on('error', (error) => {
      clearTimeout(timer);
      if (options.hold) return; // destroyed by the test
      reject(error);
    });
    req.end();
    if (options.hold) {
      clearTimeout(timer);
      req.on('socket', (socket) => socket.once('connect', () => setTimeout(() => resolve({ status: 0, headers: {}, body: '', ws: null, request: req }), 20)));
    }
  });
}

function upgradeAttempt(port: number, path: string, options: AttemptOptions): Promise<Attempt> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, { perMessageDeflate: false, headers: options.headers, localAddress: options.localAddress });
    ws.on('error', () => undefined);
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`no answer to the upgrade of ${path} within ${options.timeoutMs ?? 5000} ms`));
    }, options.timeoutMs ?? 5000);
    ws.once('upgrade', (res) => {
      ws.once('open', () => {
        clearTimeout(timer);
        resolve({ status: 101, headers: res.headers, body: '', ws, request: null });
      });
    });
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => {
        clearTimeout(timer);
        ws.terminate();
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, ws: null, request: null });
      });
    });
    ws.once('close', () => {
      clearTimeout(timer);
      resolve({ status: 0, headers: {}, body: '', ws: null, request: null });
    });
  });
}

/** Close what an attempt holds open. */
export function release(a: Attempt): void {
  a.ws?.terminate();
  a.request?.destroy();
}

/** Sluice's /metrics, parsed. */
export async function scrape(adminUrl: string): Promise<Sample[]> {
  const res = await fetch(`${adminUrl}/metrics`);
  return parsePrometheus(await res.text());
}
