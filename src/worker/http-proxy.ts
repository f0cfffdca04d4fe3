/**
 * Plain HTTP on a router: the request runs through the router's middlewares (src/middleware/chain.ts), then
 * goes to a backend of its service over a keep-alive connection (http-pool.ts: the native client of
 * http-native-client.ts for plain backends, undici for TLS ones and streamed request bodies), and the response is
 * streamed back with backpressure both ways, never a whole body in memory:
 *  - request body: uWS onData → RequestBody (http-body.ts) → undici; a full buffer pauses the client's socket.
 *    Small bodies of known length (≤ 64 KiB) are collected first, so the request can be replayed on another
 *    backend when its first attempt fails before anything was sent.
 *  - response body: streamed with backpressure by http-response-writer.ts.
 * A failed attempt (retry, or 502/503/504) is http-failures.ts; respondingTimeouts are http-timeouts.ts.
 *
 * Picking a backend is the service's balancer fed with HTTP requests in flight per backend (a SharedArrayBuffer
 * region apart from the WebSocket counts, layout.ts), with the same health bits, sticky cookie (set on the
 * response when the request did not name this backend) and hash key as an upgrade. A backend that dies in the
 * middle of a response body closes the client's connection, so the client sees a cut response, never a short 200.
 *
 * undici's handler is the legacy one (onConnect/onHeaders/onData/onComplete/onError): its raw header list keeps
 * every Set-Cookie and the order as sent, and its return values are the backpressure signal, with no parsing or
 * wrapper object per response. undici is pinned to one version (package.json), so this interface cannot move;
 * the native client calls the same five methods (and cork(), to hand one read over in one cork).
 */
import { STATUS_CODES } from 'node:http';
import { performance } from 'node:perf_hooks';
import type uWS from 'uWebSockets.js';
import type { Dispatcher } from 'undici';
import { HttpError, HttpField, HTTP_DURATION_BUCKETS, HTTP_DURATION_STRIDE, httpBackendOffset, httpMethodIndex, httpRequestOffset, observe, LimitKind, type LimitReason } from '../shared/metrics-plan.js';
import { ChainedExchange, type HeaderList } from '../middleware/chain.js';
import type { HeaderPair } from '../middleware/response-headers.js';
import { NO_KEY } from '../balancer/balancer.js';
import { bracketHost } from '../shared/address.js';
import { context } from './context.js';
import type { Generation } from './generation.js';
import { hostOf } from './backend-addresses.js';
import { RequestBody } from './http-body.js';
import type { BackendPool, PooledClient } from './http-pool.js';
import { readHttpRequest, type ProxyRequest } from './http-request.js';
import { sendError } from './http-responses.js';
import { logHttpRequest } from './access-log.js';
import { requestHashKey } from './pick-request.js';
import { countLimited } from './limits.js';
import type { TrustedForwarding } from './real-client.js';
import { endChunked, Out, sendChunk, sendHead, writeHead } from './http-response-writer.js';
import { armDeadline } from './http-timeouts.js';
import { attemptFailed, noBackendLeft } from './http-failures.js';

/** Bodies of known length up to this size are collected before the request goes out (replayable). */
const BUFFERED_BODY = 64 * 1024;

const enum Body {
  None = 0,
  /** Collected into `bodyBuffer` (known length ≤ BUFFERED_BODY). */
  Buffered = 1,
  /** Streamed through a RequestBody. */
  Stream = 2,
}

let inFlight = 0;

/** HTTP requests in progress in this worker (the worker waits for them when it drains). */
export function httpRequestsInFlight(): number {
  return inFlight;
}

/** A plain HTTP request routed to `routerIndex` of `gen` (call synchronously in the uWS handler). */
export function handleHttp(res: uWS.HttpResponse, req: uWS.HttpRequest, gen: Generation, routerIndex: number, entryPoint: number, clientIp: string, trusted: TrustedForwarding | null = null): void {
  const ep = gen.snapshot.entryPoints[entryPoint]!;
  const head = readHttpRequest(req, clientIp, ep.tls, ep.port, trusted);
  if (head.headBytes > ep.maxHeaderBytes) {
    sendError(res, 431, `request header fields too large (the limit is ${ep.maxHeaderBytes} bytes)`);
    return;
  }
  if (head.contentLength === -2) {
    sendError(res, 400, 'invalid Content-Length');
    return;
  }
  new HttpExchange(res, gen, routerIndex, entryPoint, head.request, head.contentLength, head.chunked).start();
}

/** One plain HTTP request and its response. Fields without `private` are shared with http-response-writer.ts,
 *  http-timeouts.ts and http-failures.ts; nothing else writes them. */
export class HttpExchange extends ChainedExchange implements Dispatcher.DispatchHandler {
  readonly kind = 'http';
  aborted = false;
  readonly service: number;
  readonly startedAt = performance.now();
  /** Path and query as the client sent them (middlewares may rewrite request.path). */
  private readonly originalPath: string;
  /** The Set-Cookie sent with the response (sticky), '' when none. */
  setCookie = '';

  // ---- request body
  private readonly bodyMode: Body;
  private bodyBuffer: Buffer | null = null;
  bodyStream: RequestBody | null = null;
  private bodyReceived = 0;
  bodyDone: boolean;
  /** The chain finished while a collected body was still arriving: go on when it is complete. */
  private waitingForBody = false;

  // ---- attempts (PickRequest for the balancer)
  hashKey = NO_KEY;
  stickyBackend = -1;
  private readonly tried: Int32Array;
  attempts = 0;
  lastFailure: HttpError = HttpError.ConnectRefused;
  staleRetried = false;

  // ---- the current attempt
  backend = -1;
  private pool: BackendPool | null = null;
  private client: PooledClient | null = null;
  reused = false;
  private counted = false;
  abortUpstream: ((error?: Error) => void) | null = null;
  private sent = false;
  upstreamDone = false;

  // ---- the response
  out = Out.Nothing;
  status = 0;
  statusText = '';
  responseHeaders_: (Buffer | string)[] | null = null;
  total = 0;
  pending: Buffer | null = null;
  pendingBase = 0;
  resumeUpstream: (() => void) | null = null;
  upstreamPaused = false;
  retryScheduled = false;
  /** res.onWritable is set (http-response-writer.ts watchWritable). */
  watchingWritable = false;
  responseBytes = 0;
  finished = false;
  /** respondingTimeouts (readTimeout while the body arrives, writeTimeout until the response is out). */
  deadline: NodeJS.Timeout | null = null;
  timedOut = false;

  constructor(
    readonly res: uWS.HttpResponse,
    readonly gen: Generation,
    readonly router: number,
    readonly entryPoint: number,
    readonly request: ProxyRequest,
    contentLength: number,
    chunked: boolean,
  ) {
    super();
    gen.acquire();
    inFlight++;
    this.originalPath = request.url;
    this.service = gen.snapshot.routers[router]!.service;
    const service = gen.service(this.service);
    this.tried = new Int32Array(service.retries + 1);
    if (contentLength > 0 && contentLength <= BUFFERED_BODY && !chunked) {
      this.bodyMode = Body.Buffered;
      this.bodyBuffer = Buffer.allocUnsafe(contentLength);
      this.bodyDone = false;
    } else if (contentLength > 0 || chunked) {
      this.bodyMode = Body.Stream;
      this.bodyStream = new RequestBody(res);
      this.bodyDone = false;
      if (contentLength > 0) request.headers.push('content-length', String(contentLength));
    } else {
      this.bodyMode = Body.None;
      this.bodyDone = true;
    }
    res.onAborted(() => this.onClientAborted());
    const guard = gen.limits.entryPoints[entryPoint];
    if (guard !== undefined && ((this.bodyMode !== Body.None && guard.readTimeoutMs > 0) || guard.writeTimeoutMs > 0)) armDeadline(this);
    if (this.bodyMode !== Body.None) res.onData((chunk, last) => this.onClientData(chunk, last));
  }

  start(): void {
    this.runChain(this.gen.chains[this.router]!);
  }

  // ---- the client's side --------------------------------------------------------------------

  private onClientData(chunk: ArrayBuffer, last: boolean): void {
    if (this.bodyMode === Body.Stream) {
      this.bodyStream!.fromClient(chunk, last);
      this.bodyDone = last;
      return;
    }
    const buffer = this.bodyBuffer!;
    const n = Math.min(chunk.byteLength, buffer.length - this.bodyReceived);
    if (n > 0) {
      buffer.set(new Uint8Array(chunk, 0, n), this.bodyReceived);
      this.bodyReceived += n;
    }
    if (!last) return;
    this.bodyDone = true;
    if (this.bodyReceived < buffer.length) this.bodyBuffer = buffer.subarray(0, this.bodyReceived);
    if (this.waitingForBody) {
      this.waitingForBody = false;
      this.connectNext();
    }
  }

  private onClientAborted(): void {
    if (this.aborted) return;
    this.aborted = true;
    this.bodyStream?.detach(false);
    const cut = this.out !== Out.Done;
    this.out = Out.Done;
    if (!this.upstreamDone && this.backend >= 0 && (this.client !== null || this.abortUpstream !== null)) {
      this.countHttpError(HttpError.ClientAborted);
      this.abortUpstream?.(new Error('the client went away'));
    }
    if (cut && this.status === 0) this.status = 499;
    this.finish();
  }

  // ---- the middleware chain ------------------------------------------------------------------

  respond(status: number, headers: HeaderList, body: string | Uint8Array): void {
    if (this.aborted || this.out !== Out.Nothing) return;
    this.status = status;
    const pairs: HeaderPair[] = headers.map(([name, value]) => [name, value]);
    this.answer(status, STATUS_CODES[status] ?? '', pairs, body);
  }

  protected countRefusal(reason: LimitReason): void {
    countLimited(this.gen, this.entryPoint, this.router, LimitKind.Http, reason);
  }

  protected proceed(): void {
    const service = this.gen.service(this.service);
    if (service.hash !== null) {
      const r = this.request;
      this.hashKey = requestHashKey(service, { path: r.url, host: r.host, key: '', protocols: '', extensions: '', clientIp: r.clientIp, tls: r.tls, headers: r.headers });
    }
    const sticky = this.gen.stickies[this.service] ?? null;
    if (sticky !== null) this.stickyBackend = sticky.backendFor(this.request.header('cookie'));
    if (this.bodyMode === Body.Buffered && !this.bodyDone) {
      this.waitingForBody = true;
      return;
    }
    this.connectNext();
  }

  // ---- the backend's side ------------------------------------------------------------------

  /** Pick a backend not tried yet and send the request there; answer 502/503/504 when none is left. */
  connectNext(): void {
    const balancer = this.gen.httpBalancers[this.service]!;
    const tried = this.tried;
    let backend = this.attempts < tried.length ? balancer.pick(tried, this.attempts, this) : -1;
    // A discovery slot whose address this worker has not heard of yet: count it tried and move on.
    while (backend >= 0 && hostOf(backend) === '') {
      tried[this.attempts++] = backend;
      backend = this.attempts < tried.length ? balancer.pick(tried, this.attempts, this) : -1;
    }
    if (backend < 0) {
      noBackendLeft(this);
      return;
    }
    tried[this.attempts++] = backend;
    this.attempt(backend);
  }

  attempt(backend: number): void {
    const ctx = context();
    this.backend = backend;
    Atomics.add(ctx.shared.backendHttpActive, backend, 1);
    Atomics.add(ctx.shared.workerHttpActive, ctx.activeBase + backend, 1);
    this.counted = true;
    const spec = this.gen.backend(backend);
    const pool = this.gen.httpPool(backend);
    const { client, reused } = pool.acquire(hostOf(backend), this.bodyMode === Body.Stream);
    this.pool = pool;
    this.client = client;
    this.reused = reused;
    this.sent = false;
    this.abortUpstream = null;
    const request = this.request;
    const service = this.gen.service(this.service);
    let host = request.host;
    if (!service.passHostHeader || host === '') {
      const defaultPort = spec.tls ? 443 : 80;
      host = spec.port === defaultPort ? bracketHost(spec.host) : `${bracketHost(spec.host)}:${spec.port}`;
    }
    const headers = ['host', host, ...request.headers];
    let body: Buffer | RequestBody | null = null;
    if (this.bodyMode === Body.Buffered) body = this.bodyBuffer!;
    else if (this.bodyMode === Body.Stream) body = this.bodyStream!;
    else if (request.method === 'POST' || request.method === 'PUT' || request.method === 'PATCH') body = EMPTY;
    client.dispatch({ path: spec.pathPrefix + request.url, method: request.method, headers, body, reset: !pool.keepAlive }, this);
  }

  /** undici: the request is about to be written on a connected socket. */
  onConnect(abort: (error?: Error) => void): void {
    if (this.aborted) {
      abort(new Error('the client went away'));
      return;
    }
    this.sent = true;
    this.abortUpstream = abort;
  }

  /** The native client (http-native-client.ts): one read of the backend's answer is handed over inside one
   *  cork, so that its head and body reach the client in one write. */
  cork(run: () => void): void {
    if (this.aborted) run();
    else this.res.cork(run);
  }

  /** undici: the backend's status line and headers. */
  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    if (statusCode < 200) return true;
    if (this.aborted) return false;
    this.status = statusCode;
    this.statusText = statusText !== '' ? statusText : STATUS_CODES[statusCode] ?? '';
    this.resumeUpstream = resume;
    this.responseHeaders_ = rawHeaders;
    sendHead(this);
    return true;
  }

  /** Inside res.cork (http-response-writer.ts): the backend's head, with this exchange's middleware edits. */
  writeHead(): void {
    writeHead(this, this.responseEdits);
  }

  /** undici: a piece of the response body. Returning false pauses the backend until resumeUpstream(). */
  onData(chunk: Buffer): boolean {
    if (this.out !== Out.Length && this.out !== Out.Chunked) return !this.aborted;
    this.responseBytes += chunk.length;
    this.countBytes(HttpField.ResponseBytes, chunk.length);
    sendChunk(this, chunk);
    return !this.upstreamPaused;
  }

  /** undici: the response is complete and the connection may serve another request. */
  onComplete(): void {
    this.upstreamDone = true;
    this.releaseUpstream(true);
    if (this.aborted) return;
    if (this.out === Out.Chunked) {
      endChunked(this);
    } else if (this.out === Out.Length && this.pending === null) {
      // Complete, yet uWS did not see the declared length: never let the client take a short body as whole.
      this.countHttpError(HttpError.BackendLost);
      this.cut();
      return;
    }
    if (this.out === Out.Done) this.finish();
  }

  /** Close the client's connection after this response: its request body was not read to its end, or it asked. */
  get closeAfter(): boolean {
    return !this.bodyDone || this.request.closeAfter;
  }

  /** undici: the attempt failed (connect, timeout, reset, invalid answer, or our own abort). */
  onError(error: Error): void {
    if (this.timedOut) {
      // Our own abort at a respondingTimeout: the client was already answered or cut.
      this.upstreamDone = true;
      this.releaseUpstream(false);
      this.finish();
      return;
    }
    const sent = this.sent;
    this.upstreamDone = true;
    this.releaseUpstream(false);
    if (this.aborted) return;
    if (this.status !== 0) {
      // The response head went out: cut the client's connection so the truncation is visible.
      this.countHttpError(HttpError.BackendLost);
      if (this.out !== Out.Done) this.cut();
      else this.finish();
      return;
    }
    // undici's parser errors often carry no code (HTTPParserError with code undefined): they are still an
    // invalid answer, not a connection the backend reset.
    const code = (error as { code?: string }).code ?? (error.name === 'HTTPParserError' ? 'HPE_' : '');
    attemptFailed(this, code, sent);
  }

  /** Close the client's connection in the middle of its response (a backend that died mid-body). */
  cut(): void {
    this.out = Out.Done;
    this.aborted = true; // close() runs onAborted, and nothing may touch res after it
    this.bodyStream?.detach(false);
    this.res.close();
    this.finish();
  }

  /** The request can go out again: no body, a collected one, or a stream nobody has read from yet. */
  replayable(): boolean {
    if (this.bodyMode !== Body.Stream) return true;
    const stream = this.bodyStream!;
    return !stream.destroyed && !stream.readableDidRead;
  }

  /** Give the backend connection back (kept for reuse after a clean response) and its in-flight count. */
  releaseUpstream(clean: boolean): void {
    const client = this.client;
    if (client !== null) {
      this.client = null;
      if (clean) this.pool!.release(client, true);
      else this.pool!.discard(client);
    }
    this.abortUpstream = null;
    if (this.counted) {
      this.counted = false;
      const ctx = context();
      Atomics.sub(ctx.shared.backendHttpActive, this.backend, 1);
      Atomics.sub(ctx.shared.workerHttpActive, ctx.activeBase + this.backend, 1);
    }
  }

  // ---- answers written by Sluice ------------------------------------------------------------

  answerError(status: number, message: string, extra: HeaderList = []): void {
    if (status === 503) this.backend = -1;
    this.status = status;
    const phrase = STATUS_CODES[status] ?? '';
    const headers: HeaderPair[] = [['content-type', 'text/plain; charset=utf-8'], ...extra.map(([n, v]): HeaderPair => [n, v])];
    this.answer(status, phrase, headers, `${status} ${phrase}: ${message}\n`, true);
  }

  /** Write a whole answer (a middleware's or Sluice's); the connection closes when the request body was not
   *  read to its end (or `close`). */
  private answer(status: number, phrase: string, headers: HeaderPair[], body: string | Uint8Array, close = false): void {
    const edits = this.responseEdits;
    if (edits !== null) edits.apply(headers);
    const closeConnection = close || this.closeAfter;
    this.out = Out.Done;
    this.bodyStream?.detach(true);
    const res = this.res;
    res.cork(() => {
      res.writeStatus(`${status} ${phrase}`);
      for (const [name, value] of headers) res.writeHeader(name, value);
      if (this.request.method === 'HEAD') {
        res.writeHeader('content-length', String(typeof body === 'string' ? Buffer.byteLength(body) : body.length));
        res.endWithoutBody();
      } else res.end(body, closeConnection);
    });
    this.upstreamDone = true;
    this.finish();
  }

  // ---- bookkeeping ------------------------------------------------------------------------------

  /** Once both the client's response and the backend's part are over (or the client left): count, log,
   *  give the generation back. */
  finish(): void {
    if (this.finished || !(this.out === Out.Done && (this.upstreamDone || this.aborted))) return;
    this.finished = true;
    inFlight--;
    if (this.deadline !== null) clearTimeout(this.deadline);
    if (this.aborted && this.client !== null) {
      this.abortUpstream?.(new Error('the client went away'));
      this.releaseUpstream(false);
    }
    this.bodyStream?.detach(false);
    const seconds = (performance.now() - this.startedAt) / 1000;
    const g = this.gen;
    const plan = g.plan;
    const route = plan.routes[plan.routeIndex[this.entryPoint * g.snapshot.routers.length + this.router]!];
    const backend = this.status === 503 || this.attempts === 0 ? -1 : this.backend;
    if (backend >= 0) this.countBytes(HttpField.RequestBytes, this.requestBytes);
    if (route !== undefined) {
      const status = this.status === 0 ? 499 : this.status;
      g.slab[g.slabBase + httpRequestOffset(plan, route, backend, httpMethodIndex(this.request.method), status)]++;
      observe(g.slab, g.slabBase + plan.httpDurationBase + this.service * HTTP_DURATION_STRIDE, HTTP_DURATION_BUCKETS, seconds);
    }
    logHttpRequest(this, seconds, this.originalPath);
    this.runEndHooks();
    g.release();
  }

  private countBytes(field: HttpField, n: number): void {
    if (this.backend < 0 || this.gen.plan.backendLocal[this.backend]! < 0) return;
    const g = this.gen;
    g.slab[g.slabBase + httpBackendOffset(g.plan, this.backend, field)] += n;
  }

  get requestBytes(): number {
    return this.bodyMode === Body.Stream ? this.bodyStream!.received : this.bodyReceived;
  }

  countHttpError(reason: HttpError): void {
    if (this.backend < 0 || this.gen.plan.backendLocal[this.backend]! < 0) return;
    const g = this.gen;
    g.slab[g.slabBase + httpBackendOffset(g.plan, this.backend, HttpField.Errors + reason)]++;
  }
}

const EMPTY = Buffer.alloc(0);
