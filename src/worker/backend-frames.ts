/**
 * The frame reader of the Node socket leg: parses a backend's RFC 6455 server frames in place from
 * the bytes a read delivered (the worker's static onread buffer, or a TLS chunk) and hands each data
 * frame to the tunnel (tunnel.ts deliverData) inside one ws.cork() per read. Only a frame split across
 * reads is copied, into a buffer sized to that frame and bounded by websocket.maxMessageSize. Pings are
 * answered here; compressed frames (RSV1) go to backend-inflate.ts; the native leg (native-leg.ts) does all
 * of this in C, without compression.
 */
import { isUtf8 } from 'node:buffer';
import { Total } from '../shared/layout.js';
import { countTotal } from './context.js';
import { closeStartedBy, Side } from './metrics.js';
import { Opcode, isSendableCloseCode } from './frame-codec.js';
import { inflateFromBackend } from './backend-inflate.js';
import { Tunnel, TunnelState, answerBackendClose, clientBackpressureAfterRead, closeClientAsBackend, deliverData, failFromBackend } from './tunnel.js';
import { backendReadBuffer, backendReadViews, sendPong, type TunnelSocket } from './backend-socket.js';

// The read loop works on module-level state so that `ws.cork(flushRead)` needs no closure per read.
let readTunnel: Tunnel | null = null;
let readSocket: TunnelSocket | null = null;
let readBuffer: Buffer = Buffer.alloc(0);
let readEnd = 0;

/** Feed bytes read from the backend (socket open, after the 101) into the pump. */
export function pumpFromBackend(t: Tunnel, socket: TunnelSocket, buffer: Buffer, length: number): void {
  const ws = t.ws;
  if (ws === null || t.state !== TunnelState.Open) return;
  readTunnel = t;
  readSocket = socket;
  readBuffer = buffer;
  readEnd = length;
  ws.cork(flushRead);
  readTunnel = null;
  readSocket = null;
  clientBackpressureAfterRead(t);
}

function flushRead(): void {
  const t = readTunnel!;
  const socket = readSocket!;
  const buf = readBuffer;
  const end = readEnd;
  let offset = 0;
  if (socket.partial !== null) {
    offset = continuePartial(t, socket, buf, end);
    if (offset < 0) return;
  }
  while (offset < end && t.state === TunnelState.Open) {
    const available = end - offset;
    if (available < 2) {
      startPartial(socket, buf, offset, end, 14);
      return;
    }
    const b1 = buf[offset + 1]!;
    const len7 = b1 & 0x7f;
    const headerLength = len7 < 126 ? 2 : len7 === 126 ? 4 : 10;
    if (available < headerLength) {
      startPartial(socket, buf, offset, end, 14);
      return;
    }
    const payloadLength = readPayloadLength(t, buf, offset, len7);
    if (payloadLength < 0) return;
    const frameLength = headerLength + payloadLength;
    if (available < frameLength) {
      startPartial(socket, buf, offset, end, frameLength);
      return;
    }
    deliverFrame(t, socket, buf[offset]!, buf, offset + headerLength, payloadLength);
    offset += frameLength;
  }
}

/** Payload length of the frame whose (complete) header is at `offset`, or -1 after failing the tunnel
 *  for a bad frame. The rules, their order and their close codes and reasons are those of the native
 *  leg's check_header (native/src/frames.c); test/backend-frames.test.ts runs both legs. */
function readPayloadLength(t: Tunnel, buf: Buffer, offset: number, len7: number): number {
  const b0 = buf[offset]!;
  // RSV1 marks a compressed message (RFC 7692): valid on the first frame of a text or binary message,
  // and only where permessage-deflate was negotiated with this backend.
  const rsv = b0 & 0x70;
  if (rsv !== 0 && !(rsv === 0x40 && t.inflater !== null && ((b0 & 0x0f) === Opcode.Text || (b0 & 0x0f) === Opcode.Binary))) {
    return failFrame(t, 'backend set reserved bits');
  }
  if ((buf[offset + 1]! & 0x80) !== 0) return failFrame(t, 'backend sent a masked frame');
  let length = len7;
  if (len7 === 126) length = buf.readUInt16BE(offset + 2);
  else if (len7 === 127) {
    const high = buf.readUInt32BE(offset + 2);
    // RFC 6455 5.2: the most significant bit of a 64-bit length must be 0.
    if (high >= 0x80000000) return failFrame(t, 'backend sent an invalid frame length');
    length = high > 0x1fffff ? Infinity : high * 0x100000000 + buf.readUInt32BE(offset + 6);
  }
  const opcode = b0 & 0x0f;
  if ((opcode & 0x08) !== 0) {
    if (opcode !== Opcode.Close && opcode !== Opcode.Ping && opcode !== Opcode.Pong) return failFrame(t, 'backend sent an unknown opcode');
    if (length > 125 || (b0 & 0x80) === 0) return failFrame(t, 'backend sent an invalid control frame');
  } else if (opcode > Opcode.Binary) return failFrame(t, 'backend sent an unknown opcode');
  // A compressed frame may be a little longer than the message it holds (deflate's stored blocks); its
  // inflated size is checked against maxMessageSize itself (backend-inflate.ts).
  const limit = (b0 & 0x40) !== 0 && t.inflater !== null ? t.inflater.wireLimit : t.gen.websocket.maxMessageSize;
  if (length > limit) {
    countTotal(Total.OversizeCloses);
    failFromBackend(t, 1009, 'message too big');
    return -1;
  }
  return length;
}

function failFrame(t: Tunnel, reason: string): -1 {
  failFromBackend(t, 1002, reason);
  return -1;
}

/** Keep the tail of a read that holds an incomplete frame. `need` is the frame's full size when
 *  its header is known, else the largest header (14). */
function startPartial(socket: TunnelSocket, buf: Buffer, offset: number, end: number, need: number): void {
  const partial = Buffer.allocUnsafe(Math.max(need, end - offset));
  buf.copy(partial, 0, offset, end);
  socket.partial = partial;
  socket.partialLength = end - offset;
}

/** Complete a split frame from the new read; returns where the read's unconsumed bytes start, or -1
 *  when the read was all swallowed (or the tunnel failed). */
function continuePartial(t: Tunnel, socket: TunnelSocket, buf: Buffer, end: number): number {
  let partial = socket.partial!;
  let have = socket.partialLength;
  let offset = 0;
  // Header incomplete: the buffer holds at least 14 bytes (startPartial), enough for any header.
  for (;;) {
    const need = have < 2 ? 2 : headerLengthOf(partial[1]!);
    if (have >= need) break;
    const take = Math.min(need - have, end - offset);
    buf.copy(partial, have, offset, offset + take);
    have += take;
    offset += take;
    if (have < need) {
      socket.partialLength = have;
      return -1;
    }
  }
  const headerLength = headerLengthOf(partial[1]!);
  const payloadLength = readPayloadLength(t, partial, 0, partial[1]! & 0x7f);
  if (payloadLength < 0) return -1;
  const frameLength = headerLength + payloadLength;
  if (partial.length < frameLength) {
    const grown = Buffer.allocUnsafe(frameLength);
    partial.copy(grown, 0, 0, have);
    partial = grown;
    socket.partial = grown;
  }
  const take = Math.min(frameLength - have, end - offset);
  buf.copy(partial, have, offset, offset + take);
  have += take;
  offset += take;
  if (have < frameLength) {
    socket.partialLength = have;
    return -1;
  }
  socket.partial = null;
  socket.partialLength = 0;
  deliverFrame(t, socket, partial[0]!, partial, headerLength, payloadLength);
  return t.state === TunnelState.Open ? offset : -1;
}

function headerLengthOf(b1: number): number {
  const len7 = b1 & 0x7f;
  return len7 < 126 ? 2 : len7 === 126 ? 4 : 10;
}

/** One frame whose header readPayloadLength accepted. */
function deliverFrame(t: Tunnel, socket: TunnelSocket, b0: number, buf: Buffer, start: number, length: number): void {
  const opcode = b0 & 0x0f;
  if ((b0 & 0x40) !== 0 || (t.inflatingOpcode !== 0 && opcode < 8)) {
    // A compressed message (RSV1 on its first frame, RFC 7692; readPayloadLength let it through only where
    // permessage-deflate was negotiated) and its continuations go through the inflater.
    inflateFromBackend(t, b0, buf.subarray(start, start + length));
    return;
  }
  switch (opcode) {
    case Opcode.Ping:
      // Each leg answers its own pings: the client's are answered by uWS, the backend's here.
      if (!t.closeToBackend) sendPong(socket, buf.subarray(start, start + length));
      return;
    case Opcode.Pong:
      return;
    case Opcode.Close:
      closeFromBackend(t, buf, start, length);
      return;
    default:
      deliverData(t, opcode, (b0 & 0x80) !== 0, buf === backendReadBuffer ? backendReadViews.view(start, length) : buf.subarray(start, start + length));
  }
}

/** The backend sent a close frame: answer it, and close the client with the same code and reason. */
function closeFromBackend(t: Tunnel, buf: Buffer, start: number, length: number): void {
  if (t.grip?.detached === true) return; // GRIP detach: the client outlives its backend leg
  t.closeFromBackend = true;
  t.state = TunnelState.Closing;
  let code = 0;
  if (length >= 2) code = buf.readUInt16BE(start);
  if (length === 1 || (length >= 2 && !isSendableCloseCode(code))) {
    failFromBackend(t, 1002, 'invalid close frame');
    return;
  }
  const reason = length > 2 ? buf.subarray(start + 2, start + length) : undefined;
  // A reason the client's WebSocket library would reject must not be passed on (RFC 6455 8.1).
  if (reason !== undefined && !isUtf8(reason)) {
    failFromBackend(t, 1007, 'backend sent a close reason that is not UTF-8');
    return;
  }
  closeStartedBy(t, Side.Backend, code === 0 ? 1005 : code);
  answerBackendClose(t, code, reason ?? '');
  closeClientAsBackend(t, code, reason);
}
