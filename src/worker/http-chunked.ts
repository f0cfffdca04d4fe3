/**
 * RFC 9112 chunked transfer coding of a backend's answer, decoded in place for http-native-client.ts: the
 * decoder walks the framing (sizes, extensions, CRLFs, trailers) byte by byte, which can be cut anywhere
 * between reads, and stops at each run of data so that the caller hands it on as a view of the buffer it
 * arrived in. Extensions and trailers are read and dropped (uWS cannot send trailers on).
 */

const CR = 13;
const LF = 10;

const enum State {
  Size = 0,
  Extension = 1,
  SizeLf = 2,
  Data = 3,
  DataCr = 4,
  DataLf = 5,
  TrailerStart = 6,
  TrailerLine = 7,
  EndLf = 8,
  Done = 9,
}

export class ChunkedDecoder {
  private state = State.Size;
  /** Bytes of the current chunk still to come (or its size being read). */
  private left = 0;
  private digits = 0;
  /** After step(): a run of data at [dataStart, dataStart + dataLength), 0 when none. */
  dataStart = 0;
  dataLength = 0;
  /** After step(): llhttp's code when the framing is broken, '' otherwise. */
  error = '';

  /** A new body begins. */
  reset(): void {
    this.state = State.Size;
    this.left = 0;
    this.digits = 0;
    this.error = '';
  }

  /** The last CRLF of the body has been read. */
  get done(): boolean {
    return this.state === State.Done;
  }

  /**
   * Walk `b[at, end)` until a run of data (dataLength > 0), the end of the body (done), broken framing
   * (error) or the end of the bytes; returns the offset after what was taken.
   */
  step(b: Buffer, at: number, end: number): number {
    this.dataLength = 0;
    while (at < end) {
      const c = b[at]!;
      switch (this.state) {
        case State.Size: {
          const digit = c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x61 && c <= 0x66 ? c - 0x57 : c >= 0x41 && c <= 0x46 ? c - 0x37 : -1;
          if (digit >= 0) {
            if (++this.digits > 12) return this.broken('HPE_INVALID_CHUNK_SIZE', at);
            this.left = this.left * 16 + digit;
          } else if (this.digits === 0) return this.broken('HPE_INVALID_CHUNK_SIZE', at);
          else if (c === CR) this.state = State.SizeLf;
          else if (c === 59 || c === 32 || c === 9) this.state = State.Extension;
          else return this.broken('HPE_INVALID_CHUNK_SIZE', at);
          at++;
          break;
        }
        case State.Extension:
          if (c === CR) this.state = State.SizeLf;
          at++;
          break;
        case State.SizeLf:
          if (c !== LF) return this.broken('HPE_LF_EXPECTED', at);
          this.digits = 0;
          this.state = this.left === 0 ? State.TrailerStart : State.Data;
          at++;
          break;
        case State.Data: {
          const n = Math.min(this.left, end - at);
          this.left -= n;
          if (this.left === 0) this.state = State.DataCr;
          this.dataStart = at;
          this.dataLength = n;
          return at + n;
        }
        case State.DataCr:
          if (c !== CR) return this.broken('HPE_STRICT', at);
          this.state = State.DataLf;
          at++;
          break;
        case State.DataLf:
          if (c !== LF) return this.broken('HPE_LF_EXPECTED', at);
          this.state = State.Size;
          at++;
          break;
        case State.TrailerStart:
          this.state = c === CR ? State.EndLf : State.TrailerLine;
          at++;
          break;
        case State.TrailerLine:
          if (c === LF) this.state = State.TrailerStart;
          at++;
          break;
        case State.EndLf:
          if (c !== LF) return this.broken('HPE_LF_EXPECTED', at);
          this.state = State.Done;
          return at + 1;
        default:
          return at;
      }
    }
    return at;
  }

  private broken(code: string, at: number): number {
    this.error = code;
    return at;
  }
}
