/**
 * The response side of a plain HTTP exchange (http-proxy.ts), kept apart so the per-chunk path reads on its
 * own: the backend's head goes out with hop-by-hop headers dropped, then the body is streamed with
 * backpressure, never held whole: uWS tryEnd (known length) or write (chunked); when the client cannot take
 * more, undici is paused (its onData returns false) until uWS says the client is writable again. Writes from
 * outside a uWS callback must be corked; the cork target is a module variable, so no closure per chunk.
 */
import type uWS from 'uWebSockets.js';
import type { HeaderPair } from '../middleware/response-headers.js';
import type { ResponseHeaders } from '../middleware/chain.js';
import type { HttpExchange } from './http-proxy.js';

export const enum Out {
  /** Nothing written to the client yet. */
  Nothing = 0,
  /** Known length: tryEnd. */
  Length = 1,
  /** Unknown length: write (uWS chunks it), end at the end. */
  Chunked = 2,
  /** The client's response is complete (or was cut). */
  Done = 3,
}

/** Response headers that describe the hop, or that uWS writes itself (Content-Length, Date). */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'content-length', 'date']);

/** Module-level target of the corked writes below: res.cork() runs its callback at once, so no closure per call. */
let corked: HttpExchange | null = null;
let corkedChunk: Buffer | null = null;

/** Run `fn` inside res.cork with `x` as the target (uWS needs writes from outside its callbacks corked). */
function corkOn(x: HttpExchange, res: uWS.HttpResponse, fn: () => void): void {
  corked = x;
  res.cork(fn);
  corked = null;
}

function writeHeadCorked(): void {
  corked!.writeHead();
}

function writeChunkCorked(): void {
  writeChunk(corked!, corkedChunk!);
}

function endCorked(): void {
  const x = corked!;
  x.out = Out.Done;
  endResponse(x.res, x.closeAfter);
}

function flushPendingCorked(): void {
  flushPending(corked!);
}

/** The retry scheduled by onClientWritable. */
function retryPending(x: HttpExchange): void {
  x.retryScheduled = false;
  if (x.aborted || x.out !== Out.Length || x.pending === null) return;
  corkOn(x, x.res, flushPendingCorked);
}

/** The backend's head (in x.responseHeaders_) to the client, corked. */
export function sendHead(x: HttpExchange): void {
  corkOn(x, x.res, writeHeadCorked);
}

/** One chunk of the backend's body to the client, corked; on backpressure x.upstreamPaused is set. */
export function sendChunk(x: HttpExchange, chunk: Buffer): void {
  corkedChunk = chunk;
  corkOn(x, x.res, writeChunkCorked);
  corkedChunk = null;
}

/** The end of a chunked response, corked. */
export function endChunked(x: HttpExchange): void {
  corkOn(x, x.res, endCorked);
}

/** Inside res.cork: status, headers (hop-by-hop removed, middleware `edits` and the sticky cookie applied),
 *  and the whole answer when it has no body. */
export function writeHead(x: HttpExchange, edits: ResponseHeaders | null): void {
  const raw = x.responseHeaders_!;
  x.responseHeaders_ = null;
  const pairs: HeaderPair[] = [];
  let length = -1;
  let connection = '';
  for (let i = 0; i + 1 < raw.length; i += 2) {
    // Names come as Buffers from undici, as lowercase strings from the native client.
    const n = raw[i]!;
    const name = typeof n === 'string' ? n : n.toString('latin1').toLowerCase();
    if (name === 'content-length') length = Number(raw[i + 1]!.toString('latin1'));
    else if (name === 'connection') connection = raw[i + 1]!.toString('latin1').toLowerCase();
    if (!HOP_BY_HOP.has(name)) pairs.push([name, raw[i + 1]!]);
  }
  let headers = pairs;
  if (connection !== '' && connection !== 'keep-alive' && connection !== 'close') {
    const named = new Set(connection.split(',').map((t) => t.trim()));
    headers = pairs.filter(([name]) => !named.has(name));
  }
  const sticky = x.gen.stickies[x.service] ?? null;
  if (sticky !== null && x.backend !== x.stickyBackend) {
    x.setCookie = sticky.setCookieFor(x.backend);
    if (x.setCookie !== '') headers.push(['set-cookie', x.setCookie]);
  }
  if (edits !== null) edits.apply(headers);
  const res = x.res;
  res.writeStatus(`${x.status} ${x.statusText}`);
  for (const [name, value] of headers) res.writeHeader(name, value);
  const status = x.status;
  if (x.request.method === 'HEAD' || status === 204 || status === 304) {
    x.out = Out.Done;
    if (!x.bodyDone) x.bodyStream?.detach(true);
    // A HEAD answer reports the length a GET would have. It is written as a header: this uWS build's
    // endWithoutBody(length) leaves the response open, and the keep-alive connection stuck behind it.
    // endWithoutBody() writes no Content-Length (a 204 must not have one) and still closes after
    // `Connection: close`.
    if (x.request.method === 'HEAD' && length >= 0 && Number.isSafeInteger(length)) res.writeHeader('content-length', String(length));
    res.endWithoutBody();
    return;
  }
  if (length === 0) {
    x.out = Out.Done;
    endResponse(res, x.closeAfter);
    return;
  }
  if (length > 0 && Number.isSafeInteger(length)) {
    x.out = Out.Length;
    x.total = length;
  } else x.out = Out.Chunked;
}

/** Hear from uWS when the client can take more: set only once a write met backpressure, since the handler
 *  is a closure and a persistent handle in uWS, which most small answers never need. */
function watchWritable(x: HttpExchange): void {
  if (x.watchingWritable) return;
  x.watchingWritable = true;
  x.res.onWritable(() => onClientWritable(x));
}

/** Inside res.cork: one chunk to the client; on backpressure the rest waits for onWritable. */
function writeChunk(x: HttpExchange, chunk: Buffer): void {
  const res = x.res;
  if (x.out === Out.Length) {
    const base = res.getWriteOffset();
    const [ok, done] = res.tryEnd(chunk, x.total);
    if (done) {
      x.out = Out.Done;
      x.finish();
    } else if (!ok) {
      // The rest waits for onWritable, as a copy: a native client's chunk is a view of the thread's read
      // buffer, valid only during this call.
      const taken = res.getWriteOffset() - base;
      x.pending = Buffer.from(chunk.subarray(taken));
      x.pendingBase = base + taken;
      x.upstreamPaused = true;
      watchWritable(x);
    }
    return;
  }
  if (!res.write(chunk)) {
    x.upstreamPaused = true;
    watchWritable(x);
  }
}

/** uWS: the client can take more. */
function onClientWritable(x: HttpExchange): boolean {
  if (x.out === Out.Length && x.pending !== null) {
    const before = x.res.getWriteOffset();
    if (flushPending(x)) return true;
    // uWS reported the socket writable yet took nothing: it calls onWritable again only when a write of its
    // own is left over, and with a user handler it never drains its own buffer here, so a response could
    // stall for good. Try once more on the next turn, outside this callback.
    if (x.res.getWriteOffset() === before && !x.retryScheduled) {
      x.retryScheduled = true;
      setImmediate(retryPending, x);
    }
    return false;
  }
  resume(x);
  return true;
}

/** Send the rest of the chunk that met backpressure (inside a cork); true once it all went. */
function flushPending(x: HttpExchange): boolean {
  const res = x.res;
  const [ok, done] = res.tryEnd(x.pending!.subarray(res.getWriteOffset() - x.pendingBase), x.total);
  if (done) {
    x.pending = null;
    x.out = Out.Done;
    resume(x);
    x.finish();
    return true;
  }
  if (!ok) return false;
  x.pending = null;
  resume(x);
  return true;
}

function resume(x: HttpExchange): void {
  if (!x.upstreamPaused) return;
  x.upstreamPaused = false;
  const go = x.resumeUpstream;
  if (go !== null && !x.upstreamDone) go();
}

/** End a response (chunked, or of length 0); `close` when the client's request body was not read to its end. */
function endResponse(res: uWS.HttpResponse, close: boolean): void {
  if (close) res.end('', true);
  else res.end();
}
