/**
 * HTTP answers the worker writes itself (404 no route, 426, 502/503/504 with a short body naming
 * the service) and the relay of a backend's non-101 answer to an upgrade, status and body intact.
 */
import type uWS from 'uWebSockets.js';
import { STATUS_CODES } from 'node:http';

export interface ResponseHead {
  readonly status: number;
  readonly reason: string;
  /** Lowercase name → last value. */
  readonly headers: Map<string, string>;
  /** Every header line as sent, for relaying. */
  readonly raw: readonly (readonly [string, string])[];
  /** -1 when absent. */
  readonly contentLength: number;
  readonly chunked: boolean;
}

const STATUS_LINE = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/;

/** Parse a response head (without the final blank line); null when it is not HTTP/1.x. */
export function parseResponseHead(text: string): ResponseHead | null {
  const lines = text.split('\r\n');
  const match = STATUS_LINE.exec(lines[0] ?? '');
  if (match === null) return null;
  const headers = new Map<string, string>();
  const raw: [string, string][] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(':');
    if (colon <= 0) return null;
    const name = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    headers.set(name.toLowerCase(), value);
    raw.push([name, value]);
  }
  const length = headers.get('content-length');
  const contentLength = length !== undefined && /^\d+$/.test(length) ? Number(length) : -1;
  const chunked = (headers.get('transfer-encoding') ?? '').toLowerCase().includes('chunked');
  return { status: Number(match[1]), reason: match[2] ?? STATUS_CODES[Number(match[1])] ?? '', headers, raw, contentLength, chunked };
}

/** Response headers that describe the hop, not the content: never relayed. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'content-length', 'date']);

/** `extra`: headers the router's middlewares set; they replace the backend's headers of the same name. */
export function relayBackendResponse(res: uWS.HttpResponse, head: ResponseHead, body: Buffer, extra: readonly (readonly [string, string])[] | null = null): void {
  res.cork(() => {
    res.writeStatus(`${head.status} ${head.reason}`);
    for (const [name, value] of head.raw) {
      const lower = name.toLowerCase();
      if (!HOP_BY_HOP.has(lower) && (extra === null || !extra.some(([n]) => n === lower))) res.writeHeader(name, value);
    }
    if (extra !== null) for (const [name, value] of extra) res.writeHeader(name, value);
    res.end(body, true);
  });
}

/** Sluice's own error answer: `502 Bad Gateway: <message>`, as text, and the connection closed. */
export function sendError(res: uWS.HttpResponse, status: number, message: string, extraHeaders?: readonly (readonly [string, string])[]): void {
  const phrase = STATUS_CODES[status] ?? '';
  res.cork(() => {
    res.writeStatus(`${status} ${phrase}`);
    res.writeHeader('content-type', 'text/plain; charset=utf-8');
    if (extraHeaders !== undefined) for (const [name, value] of extraHeaders) res.writeHeader(name, value);
    res.end(`${status} ${phrase}: ${message}\n`, true);
  });
}
