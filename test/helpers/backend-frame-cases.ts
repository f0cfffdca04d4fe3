/**
 * The RFC 6455 rules a client must enforce on a server's frames, as one case table that every backend
 * leg must pass (Hono's `runTest({ newRouter })` style): a raw TCP backend completes the upgrade, then
 * writes a case's bytes; the case says which close the client sees and which close frame Sluice sends
 * the backend. `runFrameCases` runs the table against a real Sluice process with one leg forced by
 * SLUICE_NATIVE, so the Node socket leg (backend-frames.ts) and the native leg (native/src/frames.c)
 * are held to the same rules, codes and reasons.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import net, { type AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { simpleConfig, startSluice, type SluiceProcess } from './sluice.js';
import { waitFor } from './wait.js';

export interface CloseSeen {
  readonly code: number;
  readonly reason: string;
}

export interface FrameCase {
  readonly name: string;
  /** What the backend writes right after its 101 (in one write, unless `splitAt`). */
  readonly bytes: Buffer;
  /** Write `bytes` in two writes split here, 30 ms apart, so the rule is applied to a frame that
   *  arrived in pieces (the reassembly path of both legs). */
  readonly splitAt?: number;
  /** Data messages the client receives before its close. */
  readonly messages?: number;
  readonly client: CloseSeen;
  /** The close frame Sluice sends the backend (1005: one without a status). */
  readonly backend: CloseSeen;
}

/** websocket.maxMessageSize of the Sluice the cases run against. */
export const MAX_MESSAGE = 64 * 1024;

/** An unmasked frame with first byte `b0` (FIN, RSV, opcode) and the shortest length encoding. */
function frame(b0: number, payload: Buffer | readonly number[]): Buffer {
  const body = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const n = body.length;
  let head: Buffer;
  if (n < 126) head = Buffer.from([b0, n]);
  else if (n < 65536) head = Buffer.from([b0, 126, n >> 8, n & 0xff]);
  else {
    head = Buffer.from([b0, 127, 0, 0, 0, 0, 0, 0, 0, 0]);
    head.writeBigUInt64BE(BigInt(n), 2);
  }
  return Buffer.concat([head, body]);
}

function closePayload(code: number, reason: Buffer | string = ''): Buffer {
  const r = typeof reason === 'string' ? Buffer.from(reason) : reason;
  const p = Buffer.alloc(2 + r.length);
  p.writeUInt16BE(code, 0);
  r.copy(p, 2);
  return p;
}

const protocolError = (reason: string): Pick<FrameCase, 'client' | 'backend'> => ({ client: { code: 1002, reason }, backend: { code: 1002, reason } });
const MASKED = 'backend sent a masked frame';
const RESERVED = 'backend set reserved bits';
const UNKNOWN = 'backend sent an unknown opcode';
const BAD_CONTROL = 'backend sent an invalid control frame';
const BAD_CLOSE = 'invalid close frame';
const BAD_LENGTH = 'backend sent an invalid frame length';
const NO_MESSAGE = 'backend sent a continuation with no message';
const INSIDE = 'backend started a message inside a fragmented one';
const NOT_UTF8 = 'backend sent a close reason that is not UTF-8';
const TOO_BIG = { code: 1009, reason: 'message too big' };

export const frameCases: readonly FrameCase[] = [
  // ---- what a backend may do: the close is relayed, and answered with the same code
  { name: 'a close with code and reason is relayed and answered', bytes: frame(0x88, closePayload(1000, 'bye')), client: { code: 1000, reason: 'bye' }, backend: { code: 1000, reason: 'bye' } },
  { name: 'a close with a UTF-8 reason and an application code', bytes: frame(0x88, closePayload(4000, 'fermé ✓')), client: { code: 4000, reason: 'fermé ✓' }, backend: { code: 4000, reason: 'fermé ✓' } },
  { name: 'a close without status becomes 1005', bytes: frame(0x88, []), client: { code: 1005, reason: '' }, backend: { code: 1005, reason: '' } },
  { name: 'a message, a ping and a pong, then a close', bytes: Buffer.concat([frame(0x81, Buffer.from('hi')), frame(0x89, [1]), frame(0x8a, []), frame(0x88, closePayload(1001))]), messages: 1, client: { code: 1001, reason: '' }, backend: { code: 1001, reason: '' } },
  { name: 'a close split across reads', bytes: frame(0x88, closePayload(1000, 'split')), splitAt: 3, client: { code: 1000, reason: 'split' }, backend: { code: 1000, reason: 'split' } },

  // ---- frame header (both legs check it as soon as the header is in)
  { name: 'a masked frame', bytes: Buffer.from([0x81, 0x81, 1, 2, 3, 4, 0x61 ^ 1]), ...protocolError(MASKED) },
  { name: 'a masked frame whose header arrives in two reads', bytes: Buffer.from([0x82, 0xfe, 0x00, 0x80, 1, 2, 3, 4]), splitAt: 1, ...protocolError(MASKED) },
  { name: 'RSV1 without an extension', bytes: frame(0xc1, [0x61]), ...protocolError(RESERVED) },
  { name: 'RSV2', bytes: frame(0xa1, [0x61]), ...protocolError(RESERVED) },
  { name: 'RSV3 on a control frame', bytes: frame(0x99, []), ...protocolError(RESERVED) },
  ...[0x3, 0x4, 0x5, 0x6, 0x7].map((op) => ({ name: `unknown data opcode ${op}`, bytes: frame(0x80 | op, []), ...protocolError(UNKNOWN) })),
  ...[0xb, 0xc, 0xd, 0xe, 0xf].map((op) => ({ name: `unknown control opcode 0x${op.toString(16)}`, bytes: frame(0x80 | op, []), ...protocolError(UNKNOWN) })),
  { name: 'a 64-bit length with the most significant bit set', bytes: Buffer.from([0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 1]), ...protocolError(BAD_LENGTH) },

  // ---- control frames: at most 125 bytes, never fragmented
  { name: 'a ping of 126 bytes', bytes: frame(0x89, Buffer.alloc(126)), ...protocolError(BAD_CONTROL) },
  { name: 'a pong of 126 bytes', bytes: frame(0x8a, Buffer.alloc(126)), ...protocolError(BAD_CONTROL) },
  { name: 'a close of 126 bytes', bytes: frame(0x88, closePayload(1000, 'x'.repeat(124))), ...protocolError(BAD_CONTROL) },
  { name: 'a fragmented ping', bytes: frame(0x09, [1]), ...protocolError(BAD_CONTROL) },
  { name: 'a fragmented pong', bytes: frame(0x0a, []), ...protocolError(BAD_CONTROL) },
  { name: 'a fragmented close', bytes: frame(0x08, closePayload(1000)), ...protocolError(BAD_CONTROL) },
  { name: 'a ping of 126 bytes split in its payload', bytes: frame(0x89, Buffer.alloc(126)), splitAt: 40, ...protocolError(BAD_CONTROL) },

  // ---- close frame payloads
  { name: 'a close with a 1-byte payload', bytes: frame(0x88, [0x03]), ...protocolError(BAD_CLOSE) },
  ...[0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535].map((code) => ({
    name: `a close with the invalid code ${code}`,
    bytes: frame(0x88, closePayload(code)),
    ...protocolError(BAD_CLOSE),
  })),
  { name: 'a close with an invalid code, split in its payload', bytes: frame(0x88, closePayload(1006, 'gone')), splitAt: 3, ...protocolError(BAD_CLOSE) },
  // Decided: a close reason that is not UTF-8 fails the connection with 1007 (RFC 6455 8.1), rather
  // than being passed on to a client whose WebSocket library would reject it.
  ...(
    [
      ['a truncated sequence', [0xc3]],
      ['a stray continuation byte', [0x61, 0x80]],
      ['an overlong encoding', [0xc0, 0x80]],
      ['a UTF-16 surrogate', [0xed, 0xa0, 0x80]],
      ['a code point above U+10FFFF', [0xf4, 0x90, 0x80, 0x80]],
    ] as const
  ).map(([what, bytes]) => ({
    name: `a close reason with ${what}`,
    bytes: frame(0x88, closePayload(1000, Buffer.from(bytes))),
    client: { code: 1007, reason: NOT_UTF8 },
    backend: { code: 1007, reason: NOT_UTF8 },
  })),

  // ---- fragmentation
  { name: 'a continuation with no message', bytes: frame(0x80, [0x61]), ...protocolError(NO_MESSAGE) },
  { name: 'a new text frame inside a fragmented message', bytes: Buffer.concat([frame(0x01, [0x61]), frame(0x81, [0x62])]), ...protocolError(INSIDE) },
  { name: 'a new binary frame inside a fragmented message', bytes: Buffer.concat([frame(0x02, [1]), frame(0x00, [2]), frame(0x02, [3])]), ...protocolError(INSIDE) },
  { name: 'a continuation after a complete message', bytes: Buffer.concat([frame(0x81, Buffer.from('ok')), frame(0x80, [0x61])]), messages: 1, ...protocolError(NO_MESSAGE) },
  { name: 'control frames between fragments are allowed', bytes: Buffer.concat([frame(0x01, [0x61]), frame(0x89, []), frame(0x80, [0x62]), frame(0x88, closePayload(1000))]), messages: 1, client: { code: 1000, reason: '' }, backend: { code: 1000, reason: '' } },

  // ---- size (websocket.maxMessageSize, 64 KiB here)
  { name: 'a frame over maxMessageSize is refused from its header', bytes: Buffer.from([0x82, 127, 0, 0, 0, 0, 0, 1, 0, 1]), client: TOO_BIG, backend: TOO_BIG },
  { name: 'a fragmented message that grows over maxMessageSize', bytes: Buffer.concat([frame(0x02, Buffer.alloc(40 * 1024)), frame(0x80, Buffer.alloc(40 * 1024))]), client: TOO_BIG, backend: TOO_BIG },
  { name: 'a message of exactly maxMessageSize passes', bytes: Buffer.concat([frame(0x82, Buffer.alloc(MAX_MESSAGE)), frame(0x88, closePayload(1000))]), messages: 1, client: { code: 1000, reason: '' }, backend: { code: 1000, reason: '' } },
];

/** Parse the masked frames Sluice sent the backend; the first close, or null while none is complete. */
function closeIn(bytes: Buffer): CloseSeen | null {
  let at = 0;
  while (at + 2 <= bytes.length) {
    const len7 = bytes[at + 1]! & 0x7f;
    const header = (len7 < 126 ? 2 : len7 === 126 ? 4 : 10) + ((bytes[at + 1]! & 0x80) !== 0 ? 4 : 0);
    if (at + header > bytes.length) return null;
    const length = len7 < 126 ? len7 : len7 === 126 ? bytes.readUInt16BE(at + 2) : Number(bytes.readBigUInt64BE(at + 2));
    if (at + header + length > bytes.length) return null;
    const payload = Buffer.from(bytes.subarray(at + header, at + header + length));
    if ((bytes[at + 1]! & 0x80) !== 0) {
      const key = bytes.subarray(at + header - 4, at + header);
      for (let i = 0; i < payload.length; i++) payload[i]! ^= key[i & 3]!;
    }
    if ((bytes[at]! & 0x0f) === 0x8) {
      return payload.length < 2 ? { code: 1005, reason: '' } : { code: payload.readUInt16BE(0), reason: payload.subarray(2).toString() };
    }
    at += header + length;
  }
  return null;
}

/** A backend that answers every upgrade with a valid 101 and then writes the case named by the path
 *  (/case/N); it records the close frame Sluice sends it per case. */
async function startCaseBackend(): Promise<{ server: net.Server; port: number; closes: Map<number, CloseSeen> }> {
  const closes = new Map<number, CloseSeen>();
  const server = net.createServer((socket) => {
    socket.on('error', () => undefined);
    let head = Buffer.alloc(0);
    let index = -1;
    let received = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      if (index < 0) {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        const text = head.toString('latin1', 0, end);
        index = Number(/^GET \/case\/(\d+) /.exec(text)?.[1] ?? -1);
        const key = /\r\nsec-websocket-key: *([^\r]+)/i.exec(text)?.[1] ?? '';
        const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
        socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
        const c = frameCases[index]!;
        if (c.splitAt === undefined) socket.write(c.bytes);
        else {
          socket.write(c.bytes.subarray(0, c.splitAt));
          setTimeout(() => socket.writable && socket.write(c.bytes.subarray(c.splitAt)), 30);
        }
        received = head.subarray(end + 4);
      } else received = Buffer.concat([received, chunk]);
      const close = closeIn(received);
      if (close !== null && !closes.has(index)) {
        closes.set(index, close);
        socket.end(); // a server closes TCP once the closing handshake is done
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port, closes };
}

/** What a `ws` client of Sluice sees on /case/N: its messages and its close. */
function runClient(url: string, timeoutMs = 5000): Promise<{ messages: number; close: CloseSeen }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    let messages = 0;
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`no close within ${timeoutMs} ms (${messages} messages)`));
    }, timeoutMs);
    ws.on('error', () => undefined);
    ws.on('message', () => messages++);
    ws.on('close', (code, reason) => {
      clearTimeout(timer);
      resolve({ messages, close: { code, reason: reason.toString() } });
    });
  });
}

/** Run every case against a Sluice whose upstream leg is chosen by `env` (SLUICE_NATIVE). */
export function runFrameCases(leg: string, env: NodeJS.ProcessEnv, skip: string | false = false): void {
  describe(`${leg}: a backend's frames are held to RFC 6455`, { skip }, () => {
    let backend: Awaited<ReturnType<typeof startCaseBackend>> | undefined;
    let sluice: SluiceProcess | undefined;

    before(async () => {
      backend = await startCaseBackend();
      sluice = await startSluice(simpleConfig([`ws://127.0.0.1:${backend.port}`], `websocket:\n  maxMessageSize: ${MAX_MESSAGE / 1024}KiB\n`), { env: { ...process.env, ...env } });
    });
    after(async () => {
      await sluice?.stop();
      backend?.server.close();
    });

    frameCases.forEach((c, index) => {
      test(c.name, async () => {
        const seen = await runClient(`${sluice!.url}/case/${index}`);
        assert.deepEqual(seen.close, c.client, 'the close the client saw');
        assert.equal(seen.messages, c.messages ?? 0, 'messages the client received');
        await waitFor('the close frame at the backend', () => backend!.closes.has(index));
        assert.deepEqual(backend!.closes.get(index), c.backend, 'the close frame Sluice sent the backend');
      });
    });
  });
}
