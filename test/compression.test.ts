/**
 * permessage-deflate through a real Sluice process: what each entry point negotiates with what clients
 * offer (RFC 7692), payloads intact both ways for clients and backends with and without the extension
 * (text and binary, 0 B to 16 MiB, fragmented), the threshold, the limits on the inflated size on both
 * legs (zip bombs: 1009 below uWebSockets.js's ceiling, a dropped connection past it, memory bounded),
 * corrupt deflate data closing only its own connection, the wire-bytes metric, and a reload that changes
 * an entry point's compression. Browsers are in compression-browser.test.ts. Whole file: about 15 s.
 *
 * One Sluice serves entry points `off`, `shared`, `dedicated` and `thresholded` in front of `ws` echo
 * backends: one that cannot compress (`/plain`) and one that compresses everything (`/deflating`, through
 * a transport with websocketCompression). Frames no library sends come from the raw client and the raw
 * backend below.
 */
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, connect as netConnect, type AddressInfo, type Server, type Socket } from 'node:net';
import zlib from 'node:zlib';
import type { WebSocket } from 'ws';
import type { IncomingMessage } from 'node:http';
import { freePort, startBackend, startSluice, type SluiceProcess, type TestBackend } from './helpers/sluice.js';
import { closeAllPeers, connect, rawRequest, upgradeRequest, until, within } from './helpers/peer.js';
import { parsePrometheus, sampleSum } from './helpers/admin.js';
import { startInProcess } from './helpers/in-process.js';
import { Opcode, WS_GUID, encodeMaskedFrame } from '../src/worker/frame-codec.js';
import { parseExtensions } from '../src/worker/ws-extensions.js';
import { clientDeflateOffer } from '../src/worker/compression.js';
import { listenerKey } from '../src/worker/listeners.js';
import type { CompressionSpec, EntryPointSpec } from '../src/config/snapshot.js';
import type { Generation } from '../src/worker/generation.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const SYNC = { finishFlush: zlib.constants.Z_SYNC_FLUSH };

/** A JSON feed message of `size` bytes: compressible, like the feeds compression is for. */
function jsonMessage(size: number, seed = 0): string {
  let text = '[';
  for (let i = 0; text.length < size; i++) {
    text += `${i > 0 ? ',' : ''}{"symbol":"SYM${(i + seed) % 97}","bid":${(100 + ((i * 7 + seed) % 50) / 8).toFixed(3)},"ts":${1700000000000 + i}}`;
  }
  return text.slice(0, size);
}

/** A message compressed as a permessage-deflate sender does: raw deflate, sync flush, marker removed. */
function deflated(data: Buffer): Buffer {
  return zlib.deflateRawSync(data, SYNC).subarray(0, -4);
}

/** The compressed form of `size` zero bytes, built in 1 MiB steps so the test never holds `size` bytes. */
async function deflatedZeros(size: number): Promise<Buffer> {
  const stream = zlib.createDeflateRaw({ level: 9 });
  const parts: Buffer[] = [];
  stream.on('data', (d: Buffer) => parts.push(d));
  const zeros = Buffer.alloc(MiB);
  for (let done = 0; done < size; done += MiB) stream.write(zeros);
  await new Promise<void>((resolve) => stream.flush(zlib.constants.Z_SYNC_FLUSH, () => resolve()));
  stream.close();
  return Buffer.concat(parts).subarray(0, -4);
}

/** Resident memory of process `pid` (all its threads), in bytes. */
function rss(pid: number): number {
  const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return Number(kb) * 1024;
}

// ---- a raw client and a raw backend, for frames no library sends ------------------------------------

interface Frame {
  readonly b0: number;
  readonly payload: Buffer;
}

/** Collects the WebSocket frames arriving on a socket (masked or not) as they complete. */
class FrameReader {
  readonly frames: Frame[] = [];
  private pending: Buffer = Buffer.alloc(0);
  closed = false;

  constructor(socket: Socket, initial: Buffer) {
    socket.on('data', (d: Buffer) => this.push(d));
    socket.on('close', () => (this.closed = true));
    this.push(initial);
  }

  private push(data: Buffer): void {
    this.pending = Buffer.concat([this.pending, data]);
    for (;;) {
      const b = this.pending;
      if (b.length < 2) return;
      let length = b[1]! & 0x7f;
      let at = 2;
      if (length === 126) {
        if (b.length < 4) return;
        length = b.readUInt16BE(2);
        at = 4;
      } else if (length === 127) {
        if (b.length < 10) return;
        length = Number(b.readBigUInt64BE(2));
        at = 10;
      }
      const masked = (b[1]! & 0x80) !== 0;
      const keyAt = at;
      if (masked) at += 4;
      if (b.length < at + length) return;
      const payload = Buffer.from(b.subarray(at, at + length));
      if (masked) for (let i = 0; i < length; i++) payload[i]! ^= b[keyAt + (i & 3)]!;
      this.frames.push({ b0: b[0]!, payload });
      this.pending = b.subarray(at + length);
    }
  }

  /** The code of the close frame received, 0 while none came. */
  closeCode(): number {
    const close = this.frames.find((f) => (f.b0 & 0x0f) === Opcode.Close);
    return close === undefined ? 0 : close.payload.length >= 2 ? close.payload.readUInt16BE(0) : 1005;
  }

  dataFrames(): Frame[] {
    return this.frames.filter((f) => (f.b0 & 0x0f) < 8);
  }
}

interface RawClient {
  readonly socket: Socket;
  /** The answer's head, without the blank line. */
  readonly head: string;
  readonly reader: FrameReader;
}

/** Upgrade by hand with `extensions` offered; then frames are written to `socket` as they are made. */
async function rawClient(port: number, path: string, extensions: string): Promise<RawClient> {
  const socket = netConnect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  socket.write(upgradeRequest(path, extensions === '' ? '' : `Sec-WebSocket-Extensions: ${extensions}\r\n`));
  let got = Buffer.alloc(0);
  const { head, rest } = await within(
    new Promise<{ head: string; rest: Buffer }>((resolve) => {
      const onData = (d: Buffer): void => {
        got = Buffer.concat([got, d]);
        const end = got.indexOf('\r\n\r\n');
        if (end < 0) return;
        socket.off('data', onData);
        resolve({ head: got.subarray(0, end).toString('latin1'), rest: got.subarray(end + 4) });
      };
      socket.on('data', onData);
    }),
    5000,
    'no answer to the raw upgrade',
  );
  return { socket, head, reader: new FrameReader(socket, rest) };
}

/** A masked client frame with RSV1 set: a compressed message. */
function compressedClientFrame(opcode: number, compressed: Buffer): Buffer {
  const frame = encodeMaskedFrame(opcode, compressed);
  frame[0]! |= 0x40;
  return frame;
}

/** An unmasked server frame; `rsv1` marks it compressed. */
function serverFrame(opcode: number, payload: Buffer, rsv1: boolean, fin = true): Buffer {
  const length = payload.length;
  const header = length < 126 ? Buffer.alloc(2) : length < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
  header[0] = (fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode;
  if (length < 126) header[1] = length;
  else if (length < 65536) {
    header[1] = 126;
    header.writeUInt16BE(length, 2);
  } else {
    header[1] = 127;
    header.writeBigUInt64BE(BigInt(length), 2);
  }
  return Buffer.concat([header, payload]);
}

interface RawBackend {
  readonly server: Server;
  readonly port: number;
  /** Frames Sluice sent on each connection, by request path. */
  readonly readers: Map<string, FrameReader>;
  close(): Promise<void>;
}

/** A backend that accepts every upgrade with permessage-deflate, then writes `frames(path)` at once. */
async function startRawDeflateBackend(frames: (path: string) => Buffer[]): Promise<RawBackend> {
  const readers = new Map<string, FrameReader>();
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let got = Buffer.alloc(0);
    const onData = (d: Buffer): void => {
      got = Buffer.concat([got, d]);
      const end = got.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      const head = got.subarray(0, end).toString('latin1');
      const path = /^GET (\S+)/.exec(head)![1]!;
      const key = /\r\nsec-websocket-key: *(\S+)/i.exec(head)![1]!;
      const accept = createHash('sha1').update(key + WS_GUID).digest('base64');
      readers.set(path, new FrameReader(socket, got.subarray(end + 4)));
      socket.write(
        `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n` +
          'Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n',
      );
      for (const frame of frames(path)) socket.write(frame);
    };
    socket.on('data', onData);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    server,
    port: (server.address() as AddressInfo).port,
    readers,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Echo, or with `/frag` in the path, answer each message in three fragments. */
function echoOrFragments(ws: WebSocket, req: IncomingMessage): void {
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (!(req.url ?? '').includes('/frag')) {
      ws.send(data, { binary: isBinary });
      return;
    }
    const third = Math.ceil(data.length / 3);
    ws.send(data.subarray(0, third), { binary: isBinary, fin: false });
    ws.send(data.subarray(third, 2 * third), { fin: false });
    ws.send(data.subarray(2 * third), { fin: true });
  });
}

async function metrics(sluice: SluiceProcess): Promise<ReturnType<typeof parsePrometheus>> {
  return parsePrometheus(await (await fetch(`${sluice.adminUrl}/metrics`)).text());
}

// ---- the grammar and the choice of offer, without a process ------------------------------------------

describe('the client offer Sluice lets uWebSockets.js answer', () => {
  const spec = (mode: CompressionSpec['mode']): CompressionSpec => ({ mode, threshold: 0, dedicatedCompressor: '32KB', decompressor: 'shared' });

  test('Sec-WebSocket-Extensions is parsed by RFC 6455 grammar, quoted values included', () => {
    assert.deepEqual(parseExtensions('permessage-deflate; client_max_window_bits, grip ;  a="10", x'), [
      { name: 'permessage-deflate', params: [['client_max_window_bits', true]] },
      { name: 'grip', params: [['a', '10']] },
      { name: 'x', params: [] },
    ]);
    assert.deepEqual(parseExtensions(''), []);
    for (const bad of ['permessage-deflate;', 'a b', 'x; y="unterminated', 'x; =1']) assert.equal(parseExtensions(bad), null, bad);
    // RFC 6455 wants a token inside the quotes, but GRIP's message-prefix is "m:" or "": any quoted-string
    // is read, and each extension judges its own values.
    assert.deepEqual(parseExtensions('grip; message-prefix="m:"'), [{ name: 'grip', params: [['message-prefix', 'm:']] }]);
  });

  test('the first offer uWS honours as asked wins; every other offer is declined', () => {
    const cases: [CompressionSpec['mode'], string, string][] = [
      ['off', 'permessage-deflate', ''],
      ['shared', 'permessage-deflate; client_max_window_bits', 'permessage-deflate; client_max_window_bits'],
      ['shared', 'permessage-deflate; server_max_window_bits=10', ''],
      ['shared', 'permessage-deflate; server_max_window_bits=10, permessage-deflate', 'permessage-deflate'],
      ['shared', 'permessage-deflate; server_no_context_takeover', 'permessage-deflate; server_no_context_takeover'],
      ['shared', 'x-webkit-deflate-frame', ''],
      ['shared', 'permessage-deflate; mystery', ''],
      ['shared', 'permessage-deflate; client_max_window_bits=16', ''],
      ['shared', 'permessage-deflate; client_no_context_takeover; client_no_context_takeover', ''],
      ['dedicated', 'permessage-deflate; server_no_context_takeover', ''],
      ['dedicated', 'permessage-deflate; server_max_window_bits=8', ''],
      ['dedicated', 'permessage-deflate; server_no_context_takeover, permessage-deflate; server_max_window_bits="10"', 'permessage-deflate; server_max_window_bits=10'],
    ];
    for (const [mode, offer, expected] of cases) assert.equal(clientDeflateOffer(offer, spec(mode)), expected, `${mode}: ${offer}`);
  });

  test('a change of compression gives the entry point a new app on reload; the same settings keep it', () => {
    const gen = { websocket: { maxMessageSize: 1, clientMaxBuffer: 1, idleTimeoutSeconds: 0 }, snapshot: { certificates: [], limits: { controlFrameRate: null } } } as unknown as Generation;
    const entryPoint = (compression: CompressionSpec): EntryPointSpec => ({ name: 'web', host: '', port: 1, tls: false, tlsBy: '', tlsOptions: null, maxHeaderBytes: 32 * 1024, lifeCycle: { acceptGraceMs: 0, graceMs: 0 }, compression, limits: { maxConnections: 0, proxyProtocol: null, forwardedHeaders: null, readTimeoutMs: 0, writeTimeoutMs: 0 } });
    const shared = listenerKey(entryPoint(spec('shared')), gen);
    assert.equal(listenerKey(entryPoint(spec('shared')), gen), shared);
    assert.notEqual(listenerKey(entryPoint(spec('dedicated')), gen), shared);
    assert.notEqual(listenerKey(entryPoint({ ...spec('shared'), threshold: 512 }), gen), shared);
  });
});

// ---- through Sluice ---------------------------------------------------------------------------------

describe('compression through Sluice', () => {
  let sluice: SluiceProcess;
  let plain: TestBackend;
  let deflating: TestBackend;
  let metered: TestBackend;
  const ports = { off: 0, shared: 0, dedicated: 0, thresholded: 0 };
  const url = (entry: keyof typeof ports, path: string): string => `ws://127.0.0.1:${ports[entry]}${path}`;

  before(async () => {
    plain = await startBackend(echoOrFragments);
    metered = await startBackend();
    // Compresses every message it sends, when offered.
    deflating = await startBackend(echoOrFragments, { perMessageDeflate: { threshold: 0 } });
    ports.shared = await freePort();
    ports.dedicated = await freePort();
    ports.thresholded = await freePort();
    sluice = await startSluice(`entryPoints:
  off: { address: "127.0.0.1:{PORT}" }
  shared: { address: "127.0.0.1:${ports.shared}", websocket: { compression: shared } }
  dedicated: { address: "127.0.0.1:${ports.dedicated}", websocket: { compression: dedicated, decompressor: 32KB } }
  thresholded: { address: "127.0.0.1:${ports.thresholded}", websocket: { compression: shared, compressionThreshold: 1KiB } }
http:
  routers:
    plain: { rule: "PathPrefix(\`/plain\`)", service: plain }
    deflating: { rule: "PathPrefix(\`/deflating\`)", service: deflating }
    metered: { rule: "PathPrefix(\`/metered\`)", service: metered }
  services:
    plain: { loadBalancer: { servers: [ { url: "${plain.url}" } ] } }
    metered: { loadBalancer: { servers: [ { url: "${metered.url}" } ] } }
    deflating: { loadBalancer: { servers: [ { url: "${deflating.url}" } ], serversTransport: deflate } }
  serversTransports:
    deflate: { websocketCompression: true }
websocket:
  compressionThreshold: 0
`);
    ports.off = sluice.port;
  });

  after(async () => {
    await sluice?.stop();
    await Promise.all([plain?.close(), deflating?.close(), metered?.close()]);
  });
  afterEach(closeAllPeers);

  /** Offers permessage-deflate as `ws` does by default, compressing every message it sends. */
  const offering = { perMessageDeflate: { threshold: 0 } };

  describe('negotiation', () => {
    const answer = async (entry: keyof typeof ports, offer: string): Promise<string | undefined> => {
      const res = await rawRequest(ports[entry], upgradeRequest('/plain/n', offer === '' ? '' : `Sec-WebSocket-Extensions: ${offer}\r\n`));
      assert.equal(res.status, 101);
      return res.headers.get('sec-websocket-extensions');
    };

    test('an entry point answers as configured, and a client that offers nothing gets nothing', async () => {
      assert.equal(await answer('off', 'permessage-deflate; client_max_window_bits'), undefined);
      assert.equal(await answer('shared', 'permessage-deflate; client_max_window_bits'), 'permessage-deflate; client_no_context_takeover; server_no_context_takeover');
      assert.equal(await answer('shared', ''), undefined);
      assert.equal(await answer('dedicated', 'permessage-deflate; client_max_window_bits'), 'permessage-deflate; server_max_window_bits=12');
      assert.equal(await answer('dedicated', 'permessage-deflate; client_max_window_bits=10'), 'permessage-deflate; client_max_window_bits=10; server_max_window_bits=12');
    });

    test('an offer uWS would not honour as asked is declined, falling back to the next one', async () => {
      assert.equal(await answer('shared', 'permessage-deflate; server_max_window_bits=10'), undefined);
      assert.equal(await answer('shared', 'x-webkit-deflate-frame'), undefined);
      assert.equal(await answer('dedicated', 'permessage-deflate; server_no_context_takeover'), undefined);
      assert.equal(
        await answer('dedicated', 'permessage-deflate; server_no_context_takeover, permessage-deflate; server_max_window_bits=10'),
        'permessage-deflate; server_max_window_bits=10',
      );
    });

    test("the client's offer never reaches a backend; a transport with websocketCompression offers its own", async () => {
      const before = { plain: plain.requests.length, deflating: deflating.requests.length };
      const a = await connect(url('shared', '/plain/offer'), offering);
      const b = await connect(url('shared', '/deflating/offer'), offering);
      assert.match(a.ws.extensions, /^permessage-deflate/);
      assert.match(b.ws.extensions, /^permessage-deflate/);
      assert.equal(plain.requests[before.plain]!.headers['sec-websocket-extensions'], undefined);
      assert.equal(deflating.requests[before.deflating]!.headers['sec-websocket-extensions'], 'permessage-deflate');
    });
  });

  describe('payloads intact both ways', () => {
    const sizes = [0, 1, 125, 126, 1023, 1024, 2048, 65535, 65536, MiB];

    for (const entry of ['shared', 'dedicated'] as const) {
      for (const backend of ['plain', 'deflating'] as const) {
        for (const offers of [true, false]) {
          test(`${entry} entry point, ${backend} backend, client ${offers ? 'offers' : 'does not offer'} the extension: text and binary, 0 B to 1 MiB`, async () => {
            const peer = await connect(url(entry, `/${backend}/sizes`), offers ? offering : {});
            assert.equal(peer.ws.extensions === '', !offers);
            for (const size of sizes) {
              const text = jsonMessage(size, size);
              const binary = randomBytes(size);
              await peer.send(text);
              await peer.send(binary, { binary: true });
              const [t, b] = await peer.take(2, 20_000);
              assert.equal(t!.isBinary, false);
              assert.equal(t!.data.toString(), text, `text of ${size} B`);
              assert.equal(b!.isBinary, true);
              assert.ok(b!.data.equals(binary), `binary of ${size} B`);
            }
          });
        }
      }
    }

    test('16 MiB (websocket.maxMessageSize) both ways: compressible text through dedicated, random binary through shared', { timeout: 120_000 }, async () => {
      const big = 16 * MiB;
      const text = jsonMessage(big);
      const a = await connect(url('dedicated', '/deflating/big'), offering);
      await a.send(text);
      assert.equal((await a.next(60_000)).data.toString(), text);
      const binary = randomBytes(big);
      const b = await connect(url('shared', '/plain/big'), offering);
      await b.send(binary, { binary: true });
      assert.ok((await b.next(60_000)).data.equals(binary));
    });

    test('fragmented messages: from a compressing client, from a compressing backend (reassembled), plain fragments to a compressing client', async () => {
      const message = jsonMessage(90 * KiB, 3);
      const client = await connect(url('shared', '/deflating/echo'), offering);
      const third = Math.ceil(message.length / 3);
      await client.send(message.slice(0, third), { fin: false });
      await client.send(message.slice(third, 2 * third), { fin: false });
      await client.send(message.slice(2 * third), { fin: true });
      assert.equal((await client.next()).data.toString(), message);

      for (const path of ['/deflating/frag', '/plain/frag']) {
        for (const offers of [true, false]) {
          const peer = await connect(url('dedicated', path), offers ? offering : {});
          await peer.send(message);
          const got = await peer.next();
          assert.equal(got.data.toString(), message, `${path}, client ${offers ? 'offers' : 'does not offer'}`);
          const binary = randomBytes(70 * KiB);
          await peer.send(binary, { binary: true });
          assert.ok((await peer.next()).data.equals(binary));
        }
      }
    });

    test('an entry point with compression off sends plain frames even when the client offers and the backend compresses', async () => {
      const peer = await connect(url('off', '/deflating/off'), offering);
      assert.equal(peer.ws.extensions, '');
      const text = jsonMessage(5000);
      await peer.send(text);
      assert.equal((await peer.next()).data.toString(), text);
    });
  });

  describe('what goes on the client wire', () => {
    test('messages below compressionThreshold go plain, larger ones compressed', async () => {
      const raw = await rawClient(ports.thresholded, '/plain/threshold', 'permessage-deflate');
      assert.match(raw.head, /\r\nsec-websocket-extensions: permessage-deflate/i);
      const small = Buffer.from(jsonMessage(1023));
      const large = Buffer.from(jsonMessage(1024));
      raw.socket.write(encodeMaskedFrame(Opcode.Text, small));
      raw.socket.write(encodeMaskedFrame(Opcode.Text, large));
      await until(() => raw.reader.dataFrames().length === 2, 5000, 'two echoes');
      const [a, b] = raw.reader.dataFrames();
      assert.equal(a!.b0 & 0x40, 0, 'below the threshold: RSV1 clear');
      assert.ok(a!.payload.equals(small));
      assert.equal(b!.b0 & 0x40, 0x40, 'at the threshold: compressed');
      assert.ok(zlib.inflateRawSync(b!.payload, SYNC).equals(large));
      raw.socket.destroy();
    });

    test("a backend's compressed frames never reach a client that did not negotiate compression", async () => {
      const raw = await rawClient(ports.shared, '/deflating/never', '');
      assert.doesNotMatch(raw.head, /sec-websocket-extensions/i);
      const message = Buffer.from(jsonMessage(4000));
      raw.socket.write(encodeMaskedFrame(Opcode.Text, message));
      await until(() => raw.reader.dataFrames().length === 1, 5000, 'the echo');
      const [echo] = raw.reader.dataFrames();
      assert.equal(echo!.b0, 0x80 | Opcode.Text);
      assert.ok(echo!.payload.equals(message));
      raw.socket.destroy();
    });

    test('websocket_wire_bytes_total: the client leg at the compressed size, the backend leg as the backend sent it', async () => {
      const message = jsonMessage(2048);
      const compressed = zlib.deflateRawSync(Buffer.from(message), { ...SYNC, windowBits: 15, memLevel: 8 }).length - 4;
      const peer = await connect(url('shared', '/metered/wire'), offering);
      const roundTrips = async (n: number): Promise<void> => {
        for (let i = 0; i < n; i++) await peer.send(message);
        await peer.take(n, 10_000);
      };
      // The client leg's compressed size is measured on one message in 64 per worker: after 64 messages
      // on this only busy connection it has been measured on it.
      await roundTrips(64);
      const wire = (m: ReturnType<typeof parsePrometheus>, service: string, leg: string): number =>
        sampleSum(m, 'websocket_wire_bytes_total', { service, leg, direction: 'backend_to_client' });
      const payload = (m: ReturnType<typeof parsePrometheus>, service: string): number => sampleSum(m, 'websocket_bytes_total', { service, direction: 'backend_to_client' });
      const m0 = await metrics(sluice);
      await roundTrips(100);
      const m1 = await metrics(sluice);
      assert.equal(payload(m1, 'metered') - payload(m0, 'metered'), 100 * 2048);
      assert.equal(wire(m1, 'metered', 'backend') - wire(m0, 'metered', 'backend'), 100 * 2048);
      assert.equal(wire(m1, 'metered', 'client') - wire(m0, 'metered', 'client'), 100 * compressed);

      const fromDeflating = await connect(url('off', '/deflating/wire'), offering);
      for (let i = 0; i < 20; i++) await fromDeflating.send(message);
      await fromDeflating.take(20, 10_000);
      const m2 = await metrics(sluice);
      const backendWire = wire(m2, 'deflating', 'backend') - wire(m1, 'deflating', 'backend');
      assert.equal(payload(m2, 'deflating') - payload(m1, 'deflating'), 20 * 2048);
      assert.ok(backendWire > 0 && backendWire < 20 * compressed, `backend leg ${backendWire} B for 20 × 2048 B (one alone compresses to ${compressed} B)`);
      assert.equal(wire(m2, 'deflating', 'client') - wire(m1, 'deflating', 'client'), 20 * 2048, 'plain to a client of an entry point without compression');
    });
  });
});

describe('limits on the inflated size, and corrupt data', () => {
  const MAX = MiB;
  let sluice: SluiceProcess;
  let echo: TestBackend;
  let raw: RawBackend;
  let bomb: Buffer;

  before(async () => {
    bomb = await deflatedZeros(256 * MiB);
    echo = await startBackend();
    const over = deflated(Buffer.alloc(MAX + MAX / 2, 'a'));
    raw = await startRawDeflateBackend((path) => {
      if (path.startsWith('/raw/over')) return [serverFrame(Opcode.Text, over, true)];
      if (path.startsWith('/raw/bomb')) return [serverFrame(Opcode.Binary, bomb, true)];
      if (path.startsWith('/raw/corrupt')) return [serverFrame(Opcode.Text, Buffer.from([0xff, 0xff, 0xff, 0x00, 0x13]), true)];
      return [];
    });
    sluice = await startSluice(`entryPoints:
  web: { address: "127.0.0.1:{PORT}", websocket: { compression: shared } }
http:
  routers:
    echo: { rule: "PathPrefix(\`/echo\`)", service: echo }
    raw: { rule: "PathPrefix(\`/raw\`)", service: raw }
  services:
    echo: { loadBalancer: { servers: [ { url: "${echo.url}" } ] } }
    raw: { loadBalancer: { servers: [ { url: "ws://127.0.0.1:${raw.port}" } ], serversTransport: deflate } }
  serversTransports:
    deflate: { websocketCompression: true }
websocket:
  maxMessageSize: ${MAX}
`);
  });

  after(async () => {
    await sluice?.stop();
    await Promise.all([echo?.close(), raw?.close()]);
  });
  afterEach(closeAllPeers);

  test("a client's message that inflates past maxMessageSize (below uWS's ceiling of twice that) closes it with 1009", async () => {
    const client = await rawClient(sluice.port, '/echo/over', 'permessage-deflate');
    const before = echo.sockets.size;
    client.socket.write(compressedClientFrame(Opcode.Text, deflated(Buffer.alloc(MAX + MAX / 2, 'a'))));
    await until(() => client.reader.closeCode() !== 0, 5000, 'a close frame');
    assert.equal(client.reader.closeCode(), 1009);
    await until(() => echo.sockets.size < before || echo.sockets.size === 0, 5000, 'the backend connection closed too');
  });

  test("a client's zip bomb past the ceiling: uWS drops the connection without a close frame (1006), memory stays bounded", async () => {
    const watcher = await connect(`${sluice.url}/echo/watcher`, { perMessageDeflate: { threshold: 0 } });
    const before = rss(sluice.child.pid!);
    const client = await rawClient(sluice.port, '/echo/bomb', 'permessage-deflate');
    client.socket.write(compressedClientFrame(Opcode.Binary, bomb));
    await until(() => client.reader.closed, 10_000, 'the bomb thrower dropped');
    assert.equal(client.reader.closeCode(), 0, 'no close frame: uWS force-closes past maxPayloadLength');
    const grown = rss(sluice.child.pid!) - before;
    assert.ok(grown < 64 * MiB, `Sluice grew by ${Math.round(grown / MiB)} MiB for a 256 MiB bomb`);
    await watcher.send('still here');
    assert.equal((await watcher.next()).data.toString(), 'still here', 'other connections carry on');
  });

  test("corrupt deflate data from a client closes only that client's connection", async () => {
    const watcher = await connect(`${sluice.url}/echo/watcher2`, { perMessageDeflate: { threshold: 0 } });
    const client = await rawClient(sluice.port, '/echo/corrupt', 'permessage-deflate');
    client.socket.write(compressedClientFrame(Opcode.Text, Buffer.from([0xff, 0xff, 0xff, 0x00, 0x13])));
    await until(() => client.reader.closed, 5000, 'the corrupt client closed');
    await watcher.send('unharmed');
    assert.equal((await watcher.next()).data.toString(), 'unharmed');
  });

  test("a backend's message that inflates past maxMessageSize closes both legs with 1009", async () => {
    const client = await connect(`${sluice.url}/raw/over`, { perMessageDeflate: { threshold: 0 } });
    const close = await client.waitClose();
    assert.deepEqual(close, { code: 1009, reason: 'message too big' });
    await until(() => raw.readers.get('/raw/over')?.closeCode() === 1009, 5000, 'a 1009 close frame to the backend');
  });

  test("a backend's zip bomb closes with 1009 too, and memory stays bounded", async () => {
    const before = rss(sluice.child.pid!);
    const client = await connect(`${sluice.url}/raw/bomb`);
    assert.equal((await client.waitClose(10_000)).code, 1009);
    const grown = rss(sluice.child.pid!) - before;
    assert.ok(grown < 64 * MiB, `Sluice grew by ${Math.round(grown / MiB)} MiB for a 256 MiB bomb`);
    await until(() => raw.readers.get('/raw/bomb')?.closeCode() === 1009, 5000, 'a 1009 close frame to the backend');
  });

  test('corrupt deflate data from a backend closes that connection with 1007, and only that one', async () => {
    const watcher = await connect(`${sluice.url}/echo/watcher3`);
    const client = await connect(`${sluice.url}/raw/corrupt`);
    assert.deepEqual(await client.waitClose(), { code: 1007, reason: 'backend sent invalid compressed data' });
    await watcher.send('unharmed');
    assert.equal((await watcher.next()).data.toString(), 'unharmed');
  });
});



describe('compression across a reload', () => {
  afterEach(closeAllPeers);

  test('changing an entry point\'s compression opens a new app: new clients get the new setting, open ones keep theirs', async () => {
    const backend = await startBackend();
    const config = (mode: string): string => `entryPoints:
  web: { address: "127.0.0.1:{PORT}", websocket: { compression: ${mode} } }
http:
  routers:
    all: { rule: "PathPrefix(\`/\`)", service: s }
  services:
    s: { loadBalancer: { servers: [ { url: "${backend.url}" } ] } }
`;
    const sluice = await startInProcess(config('shared'), 1);
    try {
      const before = await connect(`${sluice.url}/before`, { perMessageDeflate: { threshold: 0 } });
      assert.match(before.ws.extensions, /^permessage-deflate/);
      const text = readFileSync(sluice.configFile, 'utf8').replace('compression: shared', 'compression: off');
      writeFileSync(sluice.configFile, text);
      assert.equal((await sluice.primary.reload('test')).result, 'success');
      const after = await connect(`${sluice.url}/after`, { perMessageDeflate: { threshold: 0 } });
      assert.equal(after.ws.extensions, '');
      const message = jsonMessage(3000);
      for (const peer of [before, after]) {
        await peer.send(message);
        assert.equal((await peer.next()).data.toString(), message);
      }
    } finally {
      await sluice.stop();
      await backend.close();
    }
  });
});
