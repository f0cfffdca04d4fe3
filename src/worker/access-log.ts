/**
 * The worker's half of the access log: one record per closed WebSocket connection, per plain HTTP
 * request and per request refused without either (refusals.ts), kept in a batch and
 * sent to the primary (which names the indexes and writes the JSON lines, src/primary/access-log.ts) at
 * most every FLUSH_MS, or sooner when MAX_BATCH records wait. Nothing is formatted or written on a worker.
 *
 * Why batched postMessage of msgpackr-packed arrays, not a ring in shared memory: records are per
 * connection close, not per message, so even a reconnect storm (tens of thousands of closes a second)
 * makes only 4 messages a second per worker; a record holds a variable-length client address that a fixed
 * ring slot would have to bound or intern; and a ring needs a reader polling it and an overflow policy.
 * msgpackr-packed and transferred, or structured-cloned: bench/access-log-transfer.ts measures both. On
 * this (shared, noisy) 2-core machine the worker's cost per record was 0.5-1 µs either way (clone 0.61,
 * msgpackr 0.87 µs at 1,000-record batches; clone 0.71, msgpackr 0.50 µs at 2,000), nothing next to the
 * upgrade and close of the connection it describes; with both threads counted, msgpackr moved 600,000
 * records in 0.50 s of wall time against 0.76 s for clone at 2,000-record batches, which is the case that
 * matters (a close storm). So: msgpackr, one transferred buffer per batch.
 */
import { Packr } from 'msgpackr';
import type { AccessRecord, HttpAccessRecord, RejectedRecord } from '../shared/messages.js';
import type { Tunnel } from './tunnel.js';
import type { HttpExchange } from './http-proxy.js';

const FLUSH_MS = 250;
const MAX_BATCH = 2048;

const packr = new Packr({ useRecords: false });
let enabled = false;
let pending: (AccessRecord | HttpAccessRecord | RejectedRecord)[] = [];
/** Longest path kept in an HTTP record: a log line must not grow with whatever a client sends. */
const MAX_PATH = 2048;
/** Longest Host header kept in a refusal record. */
const MAX_HOST = 256;
let timer: NodeJS.Timeout | null = null;
let send: (packed: Uint8Array) => void = () => undefined;

/** The access log is on or off for the life of the process (a reload cannot open it: the primary's
 *  writer is opened at start). */
export function initAccessLog(on: boolean, post: (packed: Uint8Array) => void): void {
  enabled = on;
  send = post;
}

/** Called once per closed connection (metrics.ts connectionClosed). */
export function logConnection(t: Tunnel, seconds: number): void {
  if (!enabled) return;
  const { snapshot } = t.gen;
  pending.push([
    Date.now(),
    t.clientAddress,
    snapshot.entryPoints[t.entryPoint]?.name ?? '',
    snapshot.routers[t.router]?.name ?? '',
    snapshot.services[t.service]?.name ?? '',
    t.backend >= 0 ? t.gen.backend(t.backend).url : '',
    Math.round(seconds * 1000),
    t.messagesToBackend,
    t.bytesToBackend,
    t.messagesToClient,
    t.bytesToClient,
    t.closeCode,
    t.closeSide,
  ]);
  if (pending.length >= MAX_BATCH) flushAccessLog();
  else if (timer === null) timer = setTimeout(flushAccessLog, FLUSH_MS);
}

/** Called once per finished plain HTTP request (http-proxy.ts). The path is the one the client sent, before
 *  middlewares rewrote it. */
export function logHttpRequest(x: HttpExchange, seconds: number, originalPath: string): void {
  if (!enabled) return;
  const { snapshot } = x.gen;
  pending.push([
    'http',
    Date.now(),
    x.request.clientIp,
    snapshot.entryPoints[x.entryPoint]?.name ?? '',
    snapshot.routers[x.router]?.name ?? '',
    snapshot.services[x.service]?.name ?? '',
    x.backend >= 0 ? x.gen.backend(x.backend).url : '',
    Math.round(seconds * 1000),
    x.request.method,
    originalPath.length > MAX_PATH ? originalPath.slice(0, MAX_PATH) : originalPath,
    x.status,
    x.requestBytes,
    x.responseBytes,
  ]);
  if (pending.length >= MAX_BATCH) flushAccessLog();
  else if (timer === null) timer = setTimeout(flushAccessLog, FLUSH_MS);
}

/** Whether refusals are logged at all (refusals.ts skips building a record when not). */
export function accessLogEnabled(): boolean {
  return enabled;
}

/** Called once per refused request (refusals.ts); the caller checked accessLogEnabled(). */
export function logRejected(record: RejectedRecord): void {
  if (record[9].length > MAX_HOST) record[9] = record[9].slice(0, MAX_HOST);
  if (record[10].length > MAX_PATH) record[10] = record[10].slice(0, MAX_PATH);
  pending.push(record);
  if (pending.length >= MAX_BATCH) flushAccessLog();
  else if (timer === null) timer = setTimeout(flushAccessLog, FLUSH_MS);
}

/** Send what is waiting (also called when the worker drains, so no record is lost on shutdown). */
export function flushAccessLog(): void {
  if (timer !== null) {
    clearTimeout(timer);
    timer = null;
  }
  if (pending.length === 0) return;
  // Copy out of msgpackr's reused buffer into an exact-size one the caller can transfer.
  const packed = Uint8Array.from(packr.pack(pending));
  pending = [];
  send(packed);
}
