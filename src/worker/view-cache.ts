/**
 * Views on a read buffer, kept for reuse: uWebSockets.js's send() needs a typed array per message, and a
 * fresh `subarray` per backend frame was half of what a worker allocated per round trip (the other half is
 * the ArrayBuffer uWS makes per client message). Traffic of similar messages reads frames at the same
 * offsets and lengths over and over, so a direct-mapped table of views by (start, length) turns most of
 * those allocations into two compares. A view's bytes are the buffer's, valid until the next read, exactly
 * as a fresh subarray's would be.
 */
const SLOTS = 512;

export class ViewCache {
  private readonly views: (Uint8Array | undefined)[] = new Array<Uint8Array | undefined>(SLOTS).fill(undefined);

  constructor(private readonly buffer: Uint8Array) {}

  /** buffer[start, start + length) as a view, reused when one for that range exists. */
  view(start: number, length: number): Uint8Array {
    const slot = (start * 40503 + length) & (SLOTS - 1);
    const cached = this.views[slot];
    if (cached !== undefined && cached.byteOffset === this.buffer.byteOffset + start && cached.byteLength === length) return cached;
    const fresh = this.buffer.subarray(start, start + length);
    this.views[slot] = fresh;
    return fresh;
  }
}
