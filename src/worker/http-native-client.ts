/**
 * One keep-alive HTTP/1.1 connection to a plain backend over the native addon's raw TCP connections
 * (native/src/connection.c, the same sockets the WebSocket leg uses), for http-pool.ts. It offers the part of
 * undici's Client that http-proxy.ts uses (dispatch with the legacy handler, closed/destroyed, close, destroy),
 * so an exchange does not know which one carries it.
 *
 * Why hand-written, next to undici: on this path every request paid undici's request object, header list
 * validation, its llhttp parser in WebAssembly calling back into JavaScript per header, a WriteWrap per write,
 * and for large bodies a fresh 64 KiB Buffer per socket read that became garbage as soon as uWS had copied it
 * (the bench's 1 MiB row was mostly scavenges). Here the request head is one latin1 string the addon copies
 * into the connection's write block (flushed with other writes once per loop phase), the answer is read into
 * the thread's one read buffer, parsed in place, and body bytes go to the client as views of that buffer.
 * undici stays for everything this does not cover: TLS backends, backends named by host name, and request
 * bodies streamed from the client (http-pool.ts picks).
 *
 * What it takes from a backend is RFC 9112's and no more: the head is parsed by http-response-head.ts, a
 * chunked body decoded by http-chunked.ts; a body ends by Content-Length, chunked coding or the backend's
 * close, HEAD, 1xx, 204 and 304 have none. Anything else fails the attempt as an invalid response (502),
 * as undici's parser would.
 */
import nativeUpstream, { CloseKind } from '#native';
import type { Dispatcher } from 'undici';
import { ID_INDEX_MASK, nativeReadBytes, setNativeHttpEvents, UV_ETIMEDOUT } from './native-leg.js';
import { findHeadEnd, parseResponseHead, responseHead } from './http-response-head.js';
import { ChunkedDecoder } from './http-chunked.js';


const enum Phase {
  /** Between requests (kept alive), or not yet used. */
  Idle = 0,
  /** Waiting for (the rest of) the response head. */
  Head = 1,
  /** A body of known length: `left` bytes to go. */
  Length = 2,
  /** A chunked body: `chunk` says where in it. */
  Chunked = 3,
  /** A body that ends when the backend closes. */
  UntilClose = 4,
  /** Gone: closed, destroyed or failed. */
  Gone = 5,
}

/** What the connection is given per request: undici's dispatch options, of which these fields are read. */
export interface NativeRequest {
  readonly path: string;
  readonly method: string;
  /** Flat name, value list. */
  readonly headers: string[];
  readonly body: Buffer | null;
  /** `Connection: close`: the connection is not kept after this request. */
  readonly reset: boolean;
}

/** The handler of one request (http-proxy.ts's HttpExchange): undici's legacy interface, and `cork`, which runs
 *  a function inside the client response's cork, so that the head and the body of one read leave in one write. */
type Handler = Required<Pick<Dispatcher.DispatchHandler, 'onConnect' | 'onHeaders' | 'onData' | 'onComplete' | 'onError'>> & {
  cork(run: () => void): void;
};

// The read being handed over inside the handler's cork: module-level, so no closure per read.
let readConnection: NativeHttpConnection | null = null;
let readLength = 0;

function consumeRead(): void {
  readConnection!.consumeRead(readLength);
}

function corkRead(c: NativeHttpConnection, h: Handler, length: number): void {
  readConnection = c;
  readLength = length;
  h.cork(consumeRead);
  readConnection = null;
}

/** Bytes of a response head past which the answer is refused (as undici's maxHeaderSize). */
export const MAX_RESPONSE_HEAD = 64 * 1024;

/** Header values may not carry these into the request head. */
const UNSAFE_VALUE = /[\r\n\0]/;

function failure(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

/** Connections by the slot of their addon id. */
const bySlot: (NativeHttpConnection | undefined)[] = [];

function connectionOf(id: number): NativeHttpConnection | undefined {
  const c = bySlot[id & ID_INDEX_MASK];
  return c !== undefined && c.id === id ? c : undefined;
}

export class NativeHttpConnection {
  id = 0;
  private connected = false;
  private phase = Phase.Idle;
  private handler: Handler | null = null;
  /** The request is a HEAD: its answer has no body whatever its headers say. */
  private headRequest = false;
  private reusable = true;
  /** Body bytes still to come (Length). */
  private left = 0;
  private readonly chunked = new ChunkedDecoder();
  /** The start of a response head that did not come in one read (a copy). */
  private partialHead: Buffer | null = null;
  /** The rest of a read that came while the client could not take more (a copy), replayed on resume. */
  private held: Buffer | null = null;
  private paused = false;
  /** Made once per connection: handed to every request's handler. */
  private readonly abortFn = (error?: Error): void => this.abort(error);
  private readonly resumeFn = (): void => this.resume();
  /** A connect that could not even start (negative libuv code), reported at the first dispatch. */
  private startError = 0;

  constructor(
    address: string,
    port: number,
    /** serversTransport.sourceAddresses' turn, '' for the kernel's choice. */
    localAddress: string,
    dialTimeoutMs: number,
    private readonly responseHeaderTimeoutMs: number,
    private readonly idleTimeoutMs: number,
    /** Called once when the connection is over for good (the pool forgets it). */
    private readonly onGone: (c: NativeHttpConnection) => void,
  ) {
    const id = nativeUpstream!.connect(address, port, dialTimeoutMs, localAddress === '' ? undefined : localAddress);
    if (id <= 0) {
      this.phase = Phase.Gone;
      this.startError = id;
      return;
    }
    this.id = id;
    bySlot[id & ID_INDEX_MASK] = this;
  }

  /** Over for good (undici's Client has both; here they are one state). */
  get closed(): boolean {
    return this.phase === Phase.Gone;
  }

  get destroyed(): boolean {
    return this.phase === Phase.Gone;
  }

  dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const h = handler as Handler;
    if (this.phase === Phase.Gone) {
      h.onError(failure(this.startError === UV_ETIMEDOUT ? 'UND_ERR_CONNECT_TIMEOUT' : 'ECONNREFUSED', 'the backend connection is closed'));
      return false;
    }
    const request = options as unknown as NativeRequest;
    this.handler = h;
    this.headRequest = request.method === 'HEAD';
    this.reusable = !request.reset;
    this.phase = Phase.Head;
    if (this.connected) {
      h.onConnect(this.abortFn);
      if (this.handler !== h) return true; // aborted at once
    }
    const body = request.body;
    const headers = request.headers;
    let text = `${request.method} ${request.path} HTTP/1.1\r\n`;
    for (let i = 0; i + 1 < headers.length; i += 2) {
      const value = headers[i + 1]!;
      if (UNSAFE_VALUE.test(value)) {
        this.fail(failure('UND_ERR_INVALID_ARG', `invalid value of request header ${headers[i]}`));
        return false;
      }
      text += `${headers[i]}: ${value}\r\n`;
    }
    if (body !== null) text += `content-length: ${body.length}\r\n`;
    text += request.reset ? 'connection: close\r\n\r\n' : 'connection: keep-alive\r\n\r\n';
    nativeUpstream!.writeRaw(this.id, text);
    if (body !== null && body.length > 0) nativeUpstream!.writeRaw(this.id, body);
    if (this.connected) nativeUpstream!.setDeadline(this.id, this.responseHeaderTimeoutMs);
    return true;
  }

  close(): void {
    this.destroy();
  }

  destroy(): void {
    if (this.phase === Phase.Gone) return;
    this.gone();
    nativeUpstream!.destroy(this.id);
  }

  // ---- events (from native-leg.ts's callbacks) ------------------------------------------------------

  opened(status: number): void {
    if (status !== 0) {
      // The id is gone already.
      this.fail(failure(status === UV_ETIMEDOUT ? 'UND_ERR_CONNECT_TIMEOUT' : 'ECONNREFUSED', `connect failed (${status})`), false);
      return;
    }
    this.connected = true;
    const h = this.handler;
    if (h === null) return;
    h.onConnect(this.abortFn);
    if (this.handler === h) nativeUpstream!.setDeadline(this.id, this.responseHeaderTimeoutMs);
  }

  read(length: number): void {
    if (this.paused) {
      // A read that was already under way when the client pushed back.
      this.hold(nativeReadBytes, 0, length);
      return;
    }
    const h = this.handler;
    if (h === null) this.consume(nativeReadBytes, 0, length);
    else corkRead(this, h, length);
  }

  /** read(), inside the handler's cork. */
  consumeRead(length: number): void {
    this.consume(nativeReadBytes, 0, length);
  }

  closedByAddon(kind: number, status: number): void {
    if (this.phase === Phase.Gone) return;
    const phase = this.phase;
    if (phase === Phase.UntilClose && kind === CloseKind.Eof) {
      this.reusable = false;
      this.complete();
      return;
    }
    if (phase === Phase.Idle) {
      this.gone();
      return;
    }
    if (kind === CloseKind.Timeout && phase === Phase.Head) {
      this.fail(failure('UND_ERR_HEADERS_TIMEOUT', 'no response head within responseHeaderTimeout'), false);
      return;
    }
    this.fail(failure(kind === CloseKind.Eof ? 'UND_ERR_SOCKET' : 'ECONNRESET', `the backend closed the connection (${status})`), false);
  }

  // ---- parsing ------------------------------------------------------------------------------------

  /** Parse `b[at, end)`: response heads and body bytes, handing them to the handler. */
  private consume(b: Buffer, at: number, end: number): void {
    while (at < end) {
      const h = this.handler;
      switch (this.phase) {
        case Phase.Head: {
          const next = this.readHead(b, at, end);
          if (next < 0) return; // incomplete (kept) or failed
          at = next;
          break;
        }
        case Phase.Length: {
          const n = Math.min(this.left, end - at);
          this.left -= n;
          const more = h!.onData(b.subarray(at, at + n));
          at += n;
          if (this.handler !== h) return;
          if (this.left === 0) {
            if (at < end) this.reusable = false; // bytes past the response: not a connection to trust
            this.complete();
            return;
          }
          if (!more) {
            this.pauseWith(b, at, end);
            return;
          }
          break;
        }
        case Phase.UntilClose: {
          const more = h!.onData(b.subarray(at, end));
          if (!more && this.handler === h) this.pause();
          return;
        }
        case Phase.Chunked: {
          const d = this.chunked;
          const next = d.step(b, at, end);
          if (d.error !== '') {
            this.invalid(d.error);
            return;
          }
          if (d.dataLength > 0) {
            const more = h!.onData(b.subarray(d.dataStart, next));
            if (this.handler !== h) return;
            if (!more) {
              this.pauseWith(b, next, end);
              return;
            }
          } else if (d.done) {
            if (next < end) this.reusable = false; // bytes past the response: not a connection to trust
            this.complete();
            return;
          }
          at = next;
          break;
        }
        default:
          // Bytes while idle (or after the end): the backend broke HTTP/1.1's one-answer-per-request.
          this.destroy();
          return;
      }
    }
  }

  /** The response head from `b[at, end)` (or with what came before); the offset after it, or -1. */
  private readHead(b: Buffer, at: number, end: number): number {
    let buf = b;
    let start = at;
    let stop = end;
    if (this.partialHead !== null) {
      buf = Buffer.concat([this.partialHead, b.subarray(at, end)]);
      start = 0;
      stop = buf.length;
    }
    const headEnd = findHeadEnd(buf, start, stop);
    if (headEnd < 0) {
      if (stop - start > MAX_RESPONSE_HEAD) {
        this.fail(failure('UND_ERR_HEADERS_OVERFLOW', 'the response head is too large'));
        return -1;
      }
      this.partialHead = buf === b ? Buffer.from(b.subarray(at, end)) : buf;
      return -1;
    }
    if (headEnd - start > MAX_RESPONSE_HEAD) {
      this.fail(failure('UND_ERR_HEADERS_OVERFLOW', 'the response head is too large'));
      return -1;
    }
    this.partialHead = null;
    if (!this.parseHead(buf, start, headEnd)) return -1;
    // Past the head in b: a body, the real answer after a 1xx, or bytes that must not be there (consume).
    return buf === b ? headEnd : end - (stop - headEnd);
  }

  /** Act on a complete head `b[start, end)` (end is after the blank line), parsed by http-response-head.ts;
   *  false when the attempt failed or was aborted meanwhile. */
  private parseHead(b: Buffer, start: number, end: number): boolean {
    const problem = parseResponseHead(b, start, end);
    if (problem !== '') return this.invalid(problem);
    const { status, length, chunked, encoded } = responseHead;
    if (status < 200) {
      // 101 was not asked for; 100 and 103 are dropped, as undici does, and the real answer follows.
      return status === 101 ? this.invalid('HPE_INVALID_STATUS') : true;
    }
    if (!responseHead.keepAlive) this.reusable = false;
    nativeUpstream!.setDeadline(this.id, 0);
    const h = this.handler!;
    const noBody = this.headRequest || status === 204 || status === 304;
    if (noBody) this.phase = Phase.Length;
    else if (encoded) {
      if (length >= 0) this.reusable = false; // both: the coding wins, and the connection is not trusted again
      if (chunked) {
        this.phase = Phase.Chunked;
        this.chunked.reset();
      } else {
        this.phase = Phase.UntilClose;
        this.reusable = false;
      }
    } else if (length >= 0) {
      this.phase = Phase.Length;
      this.left = length;
    } else {
      this.phase = Phase.UntilClose;
      this.reusable = false;
    }
    h.onHeaders(status, responseHead.raw as Buffer[], this.resumeFn, responseHead.statusText);
    if (this.handler !== h) return false;
    if (noBody || (this.phase === Phase.Length && this.left === 0)) {
      this.left = 0;
      this.complete();
    }
    return true;
  }

  // ---- the request's end ----------------------------------------------------------------------------

  /** The response is whole: the handler hears so, and the connection waits for the next request or closes. */
  private complete(): void {
    const h = this.handler!;
    this.handler = null;
    this.held = null;
    if (this.paused) {
      this.paused = false;
      nativeUpstream!.resume(this.id);
    }
    if (this.reusable) {
      this.phase = Phase.Idle;
      if (this.idleTimeoutMs > 0) nativeUpstream!.setDeadline(this.id, this.idleTimeoutMs);
    } else this.destroy();
    h.onComplete(null);
  }

  private invalid(code: string): false {
    this.fail(failure(code, 'the backend sent an invalid response'));
    return false;
  }

  /** The request failed (or was aborted): the connection is dropped and the handler hears why. */
  private fail(error: Error, live = true): void {
    const h = this.handler;
    this.handler = null;
    if (live) this.destroy();
    else this.gone();
    h?.onError(error);
  }

  private abort(error?: Error): void {
    if (this.handler === null) return;
    this.fail(error ?? failure('UND_ERR_ABORTED', 'aborted'));
  }

  /** Over for good; the addon's id is released (or about to be) and no event of it is taken any more. */
  private gone(): void {
    if (this.phase === Phase.Gone) return;
    this.phase = Phase.Gone;
    this.held = null;
    this.partialHead = null;
    if (bySlot[this.id & ID_INDEX_MASK] === this) bySlot[this.id & ID_INDEX_MASK] = undefined;
    this.onGone(this);
  }

  // ---- backpressure -------------------------------------------------------------------------------

  private pause(): void {
    if (this.paused) return;
    this.paused = true;
    nativeUpstream!.pause(this.id);
  }

  /** The client could not take more: stop reading, and keep the rest of this read for resume(). */
  private pauseWith(b: Buffer, at: number, end: number): void {
    this.pause();
    if (at < end) this.hold(b, at, end);
  }

  private hold(b: Buffer, at: number, end: number): void {
    const rest = b.subarray(at, end);
    this.held = this.held === null ? Buffer.from(rest) : Buffer.concat([this.held, rest]);
  }

  private resume(): void {
    if (!this.paused || this.phase === Phase.Gone) return;
    this.paused = false;
    const held = this.held;
    if (held !== null) {
      this.held = null;
      this.consume(held, 0, held.length);
    }
    if (!this.paused && !this.destroyed) nativeUpstream!.resume(this.id);
  }
}

setNativeHttpEvents({
  onOpen(id: number, status: number): void {
    connectionOf(id)?.opened(status);
  },
  onRaw(id: number, length: number): void {
    connectionOf(id)?.read(length);
  },
  onClose(id: number, kind: number, status: number): void {
    connectionOf(id)?.closedByAddon(kind, status);
  },
});
