/**
 * The client side of RFC 6455 for the upstream leg: Sluice speaks to each backend as a WebSocket
 * client over a plain node:net / node:tls socket.
 *
 * Why hand-written rather than the `ws` library: the upstream leg runs once per message, and its
 * whole cost is per-message CPU. `ws` allocates a Receiver/Sender pair, emits events and builds a
 * Buffer list per message; here a backend's frames are parsed straight out of the worker's one static
 * read buffer (see tunnel.ts) and each client message becomes exactly one Buffer written to the
 * socket. Masking, the only byte-by-byte work, goes through bufferutil's native `mask`.
 *
 * Encoders live here; the decoder is the read loop in tunnel.ts, which needs the tunnel's state.
 */
import crypto, { randomFillSync, createHash } from 'node:crypto';
import bufferUtil from 'bufferutil';

export const enum Opcode {
  Continuation = 0x0,
  Text = 0x1,
  Binary = 0x2,
  Close = 0x8,
  Ping = 0x9,
  Pong = 0xa,
}

export const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

// Masking keys must be unpredictable (RFC 6455 §5.3). Drawing 4 bytes at a time from a pooled
// CSPRNG buffer costs one refill per 1,024 messages instead of a syscall per message.
const keyPool = Buffer.allocUnsafe(4096);
let keyPoolOffset = keyPool.length;
const maskKey = Buffer.allocUnsafe(4);

function nextMaskKey(): void {
  if (keyPoolOffset === keyPool.length) {
    randomFillSync(keyPool);
    keyPoolOffset = 0;
  }
  maskKey[0] = keyPool[keyPoolOffset]!;
  maskKey[1] = keyPool[keyPoolOffset + 1]!;
  maskKey[2] = keyPool[keyPoolOffset + 2]!;
  maskKey[3] = keyPool[keyPoolOffset + 3]!;
  keyPoolOffset += 4;
}

/**
 * One masked frame: header, key and masked payload in a single Buffer (one write, one allocation;
 * small ones come from Node's pool). `payload` is only read: uWS neuters it after the handler.
 */
export function encodeMaskedFrame(opcode: number, payload: Uint8Array, fin = true): Buffer {
  const length = payload.byteLength;
  const headerLength = length < 126 ? 6 : length < 65536 ? 8 : 14;
  const frame = Buffer.allocUnsafe(headerLength + length);
  frame[0] = (fin ? 0x80 : 0) | opcode;
  if (length < 126) {
    frame[1] = 0x80 | length;
  } else if (length < 65536) {
    frame[1] = 0x80 | 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = 0x80 | 127;
    frame.writeUInt32BE(Math.floor(length / 0x100000000), 2);
    frame.writeUInt32BE(length >>> 0, 6);
  }
  nextMaskKey();
  const keyAt = headerLength - 4;
  frame[keyAt] = maskKey[0]!;
  frame[keyAt + 1] = maskKey[1]!;
  frame[keyAt + 2] = maskKey[2]!;
  frame[keyAt + 3] = maskKey[3]!;
  if (length > 0) bufferUtil.mask(payload as Buffer, maskKey, frame, headerLength, length);
  return frame;
}

/** Bytes a masked frame of `length` payload bytes takes on the wire. */
export function maskedFrameLength(length: number): number {
  return (length < 126 ? 6 : length < 65536 ? 8 : 14) + length;
}

/**
 * Encode one masked frame (FIN set) into `target` at `at`, which must have maskedFrameLength(payload)
 * bytes of room; returns the offset after it. For batching a connection's frames into one buffer
 * (backend-socket.ts) without a Buffer per message.
 */
export function encodeMaskedFrameInto(target: Buffer, at: number, opcode: number, payload: Uint8Array): number {
  const length = payload.byteLength;
  target[at] = 0x80 | opcode;
  let keyAt: number;
  if (length < 126) {
    target[at + 1] = 0x80 | length;
    keyAt = at + 2;
  } else if (length < 65536) {
    target[at + 1] = 0x80 | 126;
    target[at + 2] = length >>> 8;
    target[at + 3] = length & 0xff;
    keyAt = at + 4;
  } else {
    target[at + 1] = 0x80 | 127;
    target.writeUInt32BE(Math.floor(length / 0x100000000), at + 2);
    target.writeUInt32BE(length >>> 0, at + 6);
    keyAt = at + 10;
  }
  nextMaskKey();
  target[keyAt] = maskKey[0]!;
  target[keyAt + 1] = maskKey[1]!;
  target[keyAt + 2] = maskKey[2]!;
  target[keyAt + 3] = maskKey[3]!;
  if (length > 0) bufferUtil.mask(payload as Buffer, maskKey, target, keyAt + 4, length);
  return keyAt + 4 + length;
}

/** A masked close frame; code 0 means "no status" (empty payload). Reason is cut to fit 123 bytes. */
export function encodeCloseFrame(code: number, reason: Uint8Array | string = ''): Buffer {
  if (code === 0) return encodeMaskedFrame(Opcode.Close, Buffer.alloc(0));
  let reasonBytes = typeof reason === 'string' ? Buffer.from(reason) : Buffer.from(reason.buffer, reason.byteOffset, reason.byteLength);
  if (reasonBytes.length > 123) reasonBytes = reasonBytes.subarray(0, 123);
  const payload = Buffer.allocUnsafe(2 + reasonBytes.length);
  payload.writeUInt16BE(code, 0);
  reasonBytes.copy(payload, 2);
  return encodeMaskedFrame(Opcode.Close, payload);
}

/** Close codes a peer may put on the wire (RFC 6455 §7.4; 1004-1006 and 1015 are reserved). */
export function isSendableCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

// Sec-WebSocket-Key nonces come from a pooled CSPRNG buffer too (16 bytes each, one refill per 256 upgrades):
// randomBytes() per upgrade was a visible share of an upgrade's CPU.
const keyBytes = Buffer.allocUnsafe(4096);
let keyBytesOffset = keyBytes.length;

/** One-shot SHA-1 (crypto.hash, Node 20.12+) when there is one: no Hash object per upgrade. */
const sha1Base64: (text: string) => string =
  typeof (crypto as { hash?: unknown }).hash === 'function'
    ? (text) => (crypto as unknown as { hash(algorithm: string, data: string, encoding: string): string }).hash('sha1', text, 'base64')
    : (text) => createHash('sha1').update(text).digest('base64');

/** A fresh Sec-WebSocket-Key and the Sec-WebSocket-Accept the backend must answer with. */
export function newHandshakeKey(): { key: string; accept: string } {
  if (keyBytesOffset === keyBytes.length) {
    randomFillSync(keyBytes);
    keyBytesOffset = 0;
  }
  const key = keyBytes.toString('base64', keyBytesOffset, keyBytesOffset + 16);
  keyBytesOffset += 16;
  return { key, accept: sha1Base64(key + WS_GUID) };
}
