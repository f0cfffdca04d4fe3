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
 * The parser takes what RFC 9112 allows a server to send and no more: CRLF line ends, a status line
 * `HTTP/1.x NNN reason`, Content-Length (one value), chunked transfer coding (extensions and trailers read
 * and dropped), a body until close when neither is given, no body for HEAD, 1xx, 204 and 304. Anything else
 * fails the attempt as an invalid response (502), as undici's parser would.
 */
import nativeUpstream, { CloseKind } from '#native';
import type { Dispatcher } from 'undici';
import { nativeReadBytes, setNativeHttpEvents } from './native-leg.js';

/** ETIMEDOUT as libuv reports it on Linux. */
const UV_ETIMEDOUT = -110;
/** Low bits of an addon id: its slot (native/src/upstream.h ID_INDEX_BITS). */
const ID_INDEX_MASK = 0xfffff;

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

const enum Chunk {
  Size = 0,
  Extension = 1,
  SizeLf = 2,
  Data = 3,
  DataCr = 4,
  DataLf = 5,
  TrailerStart = 6,
  TrailerLine = 7,
  EndLf = 8,
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

const HTTP_1_ = Buffer.from('HTTP/1.');
const CR = 13;
const LF = 10;
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
  closed = false;
  destroyed = false;
  private connected = false;
  private phase = Phase.Idle;
  private handler: Handler | null = null;
  /** The request is a HEAD: its answer has no body whatever its headers say. */
  private headRequest = false;
  private reusable = true;
  /** Body bytes still to come (Length), or of the current chunk (Chunked). */
  private left = 0;
  private chunk = Chunk.Size;
  private chunkDigits = 0;
  /** The start of a response head that did not come in one read (a copy). */
  private partialHead: Buffer | null = null;
  /** The rest of a read that came while the client could not take more (a copy), replayed on resume. */
  private held: Buffer | null = null;
  private paused = false;
  /** Made once per connection: handed to every request's handler. */
  private readonly abortFn = (error?: Error): void => this.abort(error);
  private readonly resumeFn = (): void => this.resume();

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
    const id = localAddress === '' ? nativeUpstream!.connect(address, port, dialTimeoutMs) : nativeUpstream!.connect(address, port, dialTimeoutMs, localAddress);
    if (id <= 0) {
      this.closed = true;
      this.destroyed = true;
      this.phase = Phase.Gone;
      this.startError = id;
      return;
    }
    this.id = id;
    bySlot[id & ID_INDEX_MASK] = this;
  }

  /** A connect that could not even start (negative libuv code), reported at the first dispatch. */
  private startError = 0;

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
          const next = this.readChunked(b, at, end);
          if (next < 0) return;
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

  /** Status line and header fields of a complete head `b[start, end)` (end is after the blank line); false when
   *  the attempt failed or was aborted meanwhile. */
  private parseHead(b: Buffer, start: number, end: number): boolean {
    // Status line: HTTP/1.x NNN[ reason] (the space before an empty reason may be missing, as llhttp allows)
    const lineEnd = b.indexOf(LF, start);
    if (lineEnd - start < 13 || b[lineEnd - 1] !== CR || HTTP_1_.compare(b, start, start + 7) !== 0 || b[start + 8] !== 32) return this.invalid('HPE_INVALID_CONSTANT');
    const minor = b[start + 7]!;
    if (minor !== 0x30 && minor !== 0x31) return this.invalid('HPE_INVALID_VERSION');
    const d0 = b[start + 9]! - 0x30;
    const d1 = b[start + 10]! - 0x30;
    const d2 = b[start + 11]! - 0x30;
    if (d0 < 1 || d0 > 5 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9 || (b[start + 12] !== 32 && start + 12 !== lineEnd - 1)) return this.invalid('HPE_INVALID_STATUS');
    const status = d0 * 100 + d1 * 10 + d2;
    const statusText = start + 13 < lineEnd - 1 ? b.toString('latin1', start + 13, lineEnd - 1) : '';
    let keepAlive = minor === 0x31;
    let length = -1;
    let chunked = false;
    let encoded = false;
    const raw: (string | Buffer)[] = [];
    let p = lineEnd + 1;
    while (p < end - 2) {
      const lf = b.indexOf(LF, p);
      if (b[lf - 1] !== CR) return this.invalid('HPE_LF_EXPECTED');
      const colon = b.indexOf(58, p);
      if (colon < 0 || colon > lf || colon === p || b[colon - 1] === 32 || b[p] === 32 || b[p] === 9) return this.invalid('HPE_INVALID_HEADER_TOKEN');
      const name = b.toString('latin1', p, colon).toLowerCase();
      let v = colon + 1;
      let vEnd = lf - 1;
      while (v < vEnd && (b[v] === 32 || b[v] === 9)) v++;
      while (vEnd > v && (b[vEnd - 1] === 32 || b[vEnd - 1] === 9)) vEnd--;
      const value = b.subarray(v, vEnd);
      raw.push(name, value);
      p = lf + 1;
      if (name.length === 14 && name === 'content-length') {
        const text = value.toString('latin1');
        if (!/^\d{1,15}$/.test(text) || (length >= 0 && Number(text) !== length)) return this.invalid('HPE_INVALID_CONTENT_LENGTH');
        length = Number(text);
      } else if (name.length === 17 && name === 'transfer-encoding') {
        encoded = true;
        chunked = /(^|,)\s*chunked\s*$/i.test(value.toString('latin1'));
      } else if (name.length === 10 && name === 'connection') {
        const tokens = value.toString('latin1').toLowerCase();
        if (/(^|,)\s*close\s*(,|$)/.test(tokens)) keepAlive = false;
        else if (minor === 0x30 && /(^|,)\s*keep-alive\s*(,|$)/.test(tokens)) keepAlive = true;
      }
    }
    if (!keepAlive) this.reusable = false;
    if (status < 200) {
      // 101 was not asked for; 100 and 103 are dropped, as undici does, and the real answer follows.
      if (status === 101) return this.invalid('HPE_INVALID_STATUS');
      this.reusable = true;
      return true;
    }
    nativeUpstream!.setDeadline(this.id, 0);
    const h = this.handler!;
    const noBody = this.headRequest || status === 204 || status === 304;
    if (noBody) this.phase = Phase.Length;
    else if (encoded) {
      if (length >= 0) this.reusable = false; // both: the coding wins, and the connection is not trusted again
      if (chunked) {
        this.phase = Phase.Chunked;
        this.chunk = Chunk.Size;
        this.left = 0;
        this.chunkDigits = 0;
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
    h.onHeaders(status, raw as Buffer[], this.resumeFn, statusText);
    if (this.handler !== h) return false;
    if (noBody || (this.phase === Phase.Length && this.left === 0)) {
      this.left = 0;
      this.complete();
    }
    return true;
  }

  /** Chunked body bytes from `b[at, end)`; the offset to go on from, or -1 when done here. */
  private readChunked(b: Buffer, at: number, end: number): number {
    while (at < end) {
      const c = b[at]!;
      switch (this.chunk) {
        case Chunk.Size: {
          const digit = c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x61 && c <= 0x66 ? c - 0x57 : c >= 0x41 && c <= 0x46 ? c - 0x37 : -1;
          if (digit >= 0) {
            if (++this.chunkDigits > 12) return this.invalidAt('HPE_INVALID_CHUNK_SIZE');
            this.left = this.left * 16 + digit;
          } else if (this.chunkDigits === 0) return this.invalidAt('HPE_INVALID_CHUNK_SIZE');
          else if (c === CR) this.chunk = Chunk.SizeLf;
          else if (c === 59 || c === 32 || c === 9) this.chunk = Chunk.Extension;
          else return this.invalidAt('HPE_INVALID_CHUNK_SIZE');
          at++;
          break;
        }
        case Chunk.Extension:
          if (c === CR) this.chunk = Chunk.SizeLf;
          at++;
          break;
        case Chunk.SizeLf:
          if (c !== LF) return this.invalidAt('HPE_LF_EXPECTED');
          this.chunkDigits = 0;
          this.chunk = this.left === 0 ? Chunk.TrailerStart : Chunk.Data;
          at++;
          break;
        case Chunk.Data: {
          const h = this.handler!;
          const n = Math.min(this.left, end - at);
          this.left -= n;
          const more = h.onData(b.subarray(at, at + n));
          at += n;
          if (this.handler !== h) return -1;
          if (this.left === 0) this.chunk = Chunk.DataCr;
          if (!more) {
            this.pauseWith(b, at, end);
            return -1;
          }
          break;
        }
        case Chunk.DataCr:
          if (c !== CR) return this.invalidAt('HPE_STRICT');
          this.chunk = Chunk.DataLf;
          at++;
          break;
        case Chunk.DataLf:
          if (c !== LF) return this.invalidAt('HPE_LF_EXPECTED');
          this.chunk = Chunk.Size;
          at++;
          break;
        case Chunk.TrailerStart:
          this.chunk = c === CR ? Chunk.EndLf : Chunk.TrailerLine;
          at++;
          break;
        case Chunk.TrailerLine:
          if (c === LF) this.chunk = Chunk.TrailerStart;
          at++;
          break;
        case Chunk.EndLf:
          if (c !== LF) return this.invalidAt('HPE_LF_EXPECTED');
          at++;
          if (at < end) this.reusable = false;
          this.complete();
          return -1;
      }
    }
    return at;
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

  private invalidAt(code: string): -1 {
    this.fail(failure(code, 'the backend sent an invalid response'));
    return -1;
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
    this.closed = true;
    this.destroyed = true;
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

/** The offset just after the blank line ending a head in `b[start, end)`, or -1 when it has not come yet. */
function findHeadEnd(b: Buffer, start: number, end: number): number {
  let p = start;
  for (;;) {
    const lf = b.indexOf(LF, p);
    if (lf < 0 || lf >= end) return -1;
    // A line that is just CRLF (after the status line) ends the head.
    if (lf > start && b[lf - 1] === CR && lf - 2 >= start && b[lf - 2] === LF) return lf + 1;
    p = lf + 1;
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
