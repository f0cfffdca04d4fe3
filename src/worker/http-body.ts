/**
 * A client's request body on its way to a backend, as a Readable that undici consumes: uWebSockets.js hands
 * the body over in chunks (onData, valid only during the call, so each is copied once), and when the stream's
 * buffer is full (the backend, or the middleware chain before it, is not taking data) the client's socket is
 * paused; undici's next read resumes it. So at most about one high-water mark of body is held per request,
 * whatever the client or backend speed.
 */
import { Readable } from 'node:stream';
import type uWS from 'uWebSockets.js';

/** Body bytes held per request before the client is paused. */
const HIGH_WATER_MARK = 64 * 1024;

export class RequestBody extends Readable {
  private paused = false;
  /** Bytes received from the client so far. */
  received = 0;
  ended = false;

  constructor(private readonly res: uWS.HttpResponse) {
    super({ highWaterMark: HIGH_WATER_MARK });
  }

  /** A chunk from uWS onData (copied here: uWS detaches it when the callback returns). */
  fromClient(chunk: ArrayBuffer, last: boolean): void {
    if (this.destroyed) return;
    if (chunk.byteLength > 0) {
      this.received += chunk.byteLength;
      if (!this.push(Buffer.copyBytesFrom(new Uint8Array(chunk))) && !this.paused && !last) {
        this.paused = true;
        this.res.pause();
      }
    }
    if (last) {
      this.ended = true;
      this.push(null);
    }
  }

  override _read(): void {
    if (this.paused) {
      this.paused = false;
      this.res.resume();
    }
  }

  /**
   * No more of the body is wanted. `live`: the response is still usable (it is being ended now), so a paused
   * socket is resumed for uWS to read past the rest of the body; after an abort uWS's response must not be
   * touched at all.
   */
  detach(live: boolean): void {
    if (this.paused && live) this.res.resume();
    this.paused = false;
    if (!this.destroyed) this.destroy();
  }
}
