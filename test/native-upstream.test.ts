/**
 * The native upstream addon (native/) against real backends on loopback: a `ws` WebSocketServer for
 * the protocol (handshake, every payload length class, fragments, pings, closes both ways) and raw
 * TCP servers for what `ws` will not do (a 101 with frames in the same packet, protocol breaches,
 * vanishing). Also connect failures, pause/resume, and the addon inside worker threads, which must
 * exit (or be terminated) without leaving a handle behind. Skipped when the addon is not built.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import os from 'node:os';
import { spawn, type ChildProcess } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import { WebSocketServer, type WebSocket } from 'ws';
import type { CloseKind as CloseKindType, UpstreamCallbacks, UpstreamViews } from '../native/index.js';
import { waitFor } from './helpers/wait.js';

/** Resolves after `n` full turns of this thread's event loop (each through its poll phase). */
async function loopTurns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve));
}

type NativeModule = typeof import('../native/index.js');
// Compiled to dist/test/, the addon's loader stays at <repo>/native/.
const nativeUrl = new URL('../../native/index.js', import.meta.url).href;
const nativeModule = (await import(nativeUrl)) as NativeModule;
const native = nativeModule.default;
const CloseKind = nativeModule.CloseKind;
const FrameFlag = nativeModule.FrameFlag;
const skip =
  native === null
    ? `native addon unavailable (${nativeModule.loadError?.message ?? 'unknown'}); build it with: cd native && node "$(npm root -g)/npm/node_modules/node-gyp/bin/node-gyp.js" rebuild --nodedir=/usr`
    : false;

const KiB = 1024;
const MiB = 1024 * KiB;
const ECONNREFUSED = -os.constants.errno.ECONNREFUSED;
const ETIMEDOUT = -os.constants.errno.ETIMEDOUT;
const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

interface Received {
  opcode: number;
  data: Buffer;
}
interface Closed {
  code: number;
  reason: string;
  kind: CloseKindType;
  status: number;
}

/** One backend connection driven through the addon, recording everything the addon reports. */
class Upstream {
  openStatus: number | null = null;
  head = '';
  upgraded = false;
  /** Whole messages (fragments joined); `frames` keeps each onMessage call as it came. */
  readonly messages: Received[] = [];
  readonly frames: { opcode: number; fin: boolean; length: number }[] = [];
  closed: Closed | null = null;
  drains = 0;
  private fragments: Buffer[] = [];
  private fragmentOpcode = 0;
  private expectedAccept = '';
  private rawBuffer = Buffer.alloc(0);

  constructor(
    readonly id: number,
    readonly port: number,
    readonly maxMessageSize: number,
    readonly pingIntervalMs = 0,
    readonly pongTimeoutMs = 0,
  ) {}

  sendUpgrade(path = '/'): void {
    const key = randomBytes(16).toString('base64');
    this.expectedAccept = createHash('sha1').update(key + GUID).digest('base64');
    const request = `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${this.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`;
    assert.ok(native!.writeRaw(this.id, Buffer.from(request)) > 0);
  }

  onRaw(bytes: Uint8Array): void {
    this.rawBuffer = Buffer.concat([this.rawBuffer, bytes]);
    const end = this.rawBuffer.indexOf('\r\n\r\n');
    if (end < 0) return;
    this.head = this.rawBuffer.toString('latin1', 0, end);
    const accept = /\r\nsec-websocket-accept: *([^\r]*)/i.exec(this.head)?.[1];
    assert.match(this.head, /^HTTP\/1\.1 101 /);
    assert.equal(accept, this.expectedAccept);
    this.upgraded = true;
    native!.startFraming(this.id, this.maxMessageSize, this.pingIntervalMs, this.pongTimeoutMs, this.rawBuffer.subarray(end + 4));
  }

  onMessage(opcode: number, fin: boolean, payload: Uint8Array): void {
    this.frames.push({ opcode, fin, length: payload.byteLength });
    if (opcode !== 0) this.fragmentOpcode = opcode;
    this.fragments.push(Buffer.from(payload)); // copy: the view is only valid during the call
    if (fin) {
      this.messages.push({ opcode: this.fragmentOpcode, data: Buffer.concat(this.fragments) });
      this.fragments = [];
    }
  }
}

const live = new Map<number, Upstream>();
/** The views init() returned (the read buffer and the frame table of onFrames). */
let views: UpstreamViews | null = null;
/** onFrames calls and the frames they carried, to check that one read's frames come in one call. */
const frameCalls: number[] = [];

/** Each frame of one onFrames call, as the addon's table describes it. */
function framesOf(count: number, block: ArrayBuffer | undefined, each: (opcode: number, fin: boolean, payload: Uint8Array) => void): void {
  const { frames, readBuffer } = views!;
  for (let i = 0; i < count * 3; i += 3) {
    const flags = frames[i]!;
    const source = (flags & FrameFlag.InBlock) !== 0 ? new Uint8Array(block!) : readBuffer;
    each(flags & 0x0f, (flags & FrameFlag.Fin) !== 0, source.subarray(frames[i + 1]!, frames[i + 1]! + frames[i + 2]!));
  }
}

/** This thread's callbacks: each event goes to the Upstream that owns the id. */
const threadCallbacks: UpstreamCallbacks = {
  onOpen: (id, status) => {
    const u = live.get(id)!;
    u.openStatus = status;
    if (status !== 0) live.delete(id);
  },
  onRaw: (id, length) => live.get(id)!.onRaw(views!.readBuffer.subarray(0, length)),
  onFrames: (id, count, block) => {
    frameCalls.push(count);
    const u = live.get(id)!;
    framesOf(count, block, (opcode, fin, payload) => u.onMessage(opcode, fin, payload));
  },
  onClose: (id, code, reason, kind, status) => {
    live.get(id)!.closed = { code, reason: reason.toString(), kind, status };
    live.delete(id);
  },
  onDrain: (id) => {
    live.get(id)!.drains++;
  },
};

function dial(port: number, options: { dialTimeoutMs?: number; maxMessageSize?: number; host?: string; pingIntervalMs?: number; pongTimeoutMs?: number } = {}): Upstream {
  const id = native!.connect(options.host ?? '127.0.0.1', port, options.dialTimeoutMs ?? 2000);
  assert.ok(id > 0, `connect returned ${id}`);
  const u = new Upstream(id, port, options.maxMessageSize ?? 16 * MiB, options.pingIntervalMs, options.pongTimeoutMs);
  live.set(id, u);
  return u;
}

/** Connect and complete the WebSocket handshake. */
async function open(port: number, options: { maxMessageSize?: number; path?: string; mayClose?: boolean } = {}): Promise<Upstream> {
  const u = dial(port, options);
  await waitFor('connect', () => u.openStatus !== null);
  assert.equal(u.openStatus, 0);
  u.sendUpgrade(options.path);
  await waitFor('101 from the backend', () => u.upgraded || u.closed !== null, () => `head ${JSON.stringify(u.head)}`);
  if (options.mayClose !== true) assert.equal(u.closed, null);
  return u;
}

function text(size: number): string {
  return 'abcdefghijklmnopqrstuvwxyz0123456789'.repeat(Math.ceil(size / 36)).slice(0, size);
}

/** A raw TCP "backend" that answers any request with a 101 (valid for any key) and `early` in one
 *  write, then runs `then`. */
async function rawBackend(then: (socket: net.Socket) => void, early: Buffer = Buffer.alloc(0)): Promise<net.Server> {
  const server = net.createServer((socket) => {
    let seen = '';
    socket.on('data', (chunk) => {
      seen += chunk.toString('latin1');
      const key = /sec-websocket-key: *([^\r]*)/i.exec(seen)?.[1];
      if (key === undefined || !seen.includes('\r\n\r\n')) return;
      seen = '';
      const accept = createHash('sha1').update(key + GUID).digest('base64');
      socket.write(Buffer.concat([Buffer.from(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`), early]));
      then(socket);
    });
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

function portOf(server: net.Server | WebSocketServer): number {
  const address = server.address();
  assert.ok(address !== null && typeof address === 'object');
  return address.port;
}

describe('native upstream addon', { skip }, () => {
  let wss: WebSocketServer;
  let port = 0;
  /** Backend-side sockets by request path, for tests that drive the backend. */
  const backendByPath = new Map<string, WebSocket>();

  before(async () => {
    views = native!.init(threadCallbacks);
    wss = new WebSocketServer({ host: '127.0.0.1', port: 0, maxPayload: 64 * MiB });
    wss.on('connection', (ws, request) => {
      const path = request.url ?? '/';
      if (path === '/' || path === '/echo') {
        ws.on('message', (data, isBinary) => ws.send(data as Buffer, { binary: isBinary }));
      } else backendByPath.set(path, ws);
    });
    await new Promise<void>((resolve) => wss.once('listening', resolve));
    port = portOf(wss);
  });

  after(async () => {
    for (const id of live.keys()) native!.destroy(id);
    for (const ws of wss.clients) ws.terminate();
    await new Promise((resolve) => wss.close(resolve));
  });

  async function driven(path: string, options: { maxMessageSize?: number } = {}): Promise<{ u: Upstream; backend: WebSocket }> {
    const u = await open(port, { ...options, path });
    await waitFor(`backend socket for ${path}`, () => backendByPath.has(path));
    return { u, backend: backendByPath.get(path)! };
  }

  test('connects and completes the upgrade handshake', async () => {
    const u = await open(port);
    assert.match(u.head, /upgrade: websocket/i);
    assert.ok(native!.stats().framing >= 1);
    native!.destroy(u.id);
  });

  for (const size of [0, 125, 126, 65535, 65536, MiB]) {
    for (const binary of [false, true]) {
      test(`echoes a ${size}-byte ${binary ? 'binary' : 'text'} message`, async () => {
        const u = await open(port);
        const payload = binary ? randomBytes(size) : Buffer.from(text(size));
        const queued = native!.sendMessage(u.id, binary ? 2 : 1, payload);
        assert.ok(queued >= size, `queued ${queued}`);
        await waitFor('the echo', () => u.messages.length === 1 || u.closed !== null, undefined, { timeoutMs: 10_000 });
        assert.equal(u.closed, null);
        assert.equal(u.messages[0]!.opcode, binary ? 2 : 1);
        assert.ok(u.messages[0]!.data.equals(payload), 'echoed bytes differ');
        native!.destroy(u.id);
      });
    }
  }

  test('sends many messages in one turn as one batch, in order', async () => {
    const u = await open(port);
    const sent: Buffer[] = [];
    for (let i = 0; i < 500; i++) {
      const payload = randomBytes(1 + (i % 300));
      sent.push(payload);
      native!.sendMessage(u.id, 2, payload.buffer.slice(payload.byteOffset, payload.byteOffset + payload.byteLength) as ArrayBuffer);
    }
    await waitFor('500 echoes', () => u.messages.length === 500 || u.closed !== null, () => `${u.messages.length} echoes`);
    for (let i = 0; i < 500; i++) assert.ok(u.messages[i]!.data.equals(sent[i]!), `message ${i} differs`);
    native!.destroy(u.id);
  });

  test('delivers a fragmented backend message frame by frame', async () => {
    const { u, backend } = await driven('/fragments');
    backend.send('first ', { fin: false });
    backend.send('second ', { fin: false });
    backend.send('last', { fin: true });
    await waitFor('the message', () => u.messages.length === 1);
    assert.deepEqual(u.frames, [
      { opcode: 1, fin: false, length: 6 },
      { opcode: 0, fin: false, length: 7 },
      { opcode: 0, fin: true, length: 4 },
    ]);
    assert.equal(u.messages[0]!.data.toString(), 'first second last');
    native!.destroy(u.id);
  });

  test('answers backend pings with pongs by itself', async () => {
    const { u, backend } = await driven('/ping');
    const pong = new Promise<Buffer>((resolve) => backend.once('pong', resolve));
    const before = native!.stats().pingsAnswered;
    backend.ping(Buffer.from('are you there'));
    assert.equal((await pong).toString(), 'are you there');
    assert.equal(native!.stats().pingsAnswered, before + 1);
    assert.equal(u.messages.length, 0);
    native!.destroy(u.id);
  });

  test('reports a backend close with its code and reason, and answers it', async () => {
    const { u, backend } = await driven('/close-from-backend');
    const answered = new Promise<[number, string]>((resolve) => backend.once('close', (code, reason) => resolve([code, reason.toString()])));
    backend.close(4001, 'backend says bye');
    await waitFor('onClose', () => u.closed !== null);
    assert.deepEqual(u.closed, { code: 4001, reason: 'backend says bye', kind: CloseKind.Frame, status: 0 });
    assert.deepEqual(await answered, [4001, 'backend says bye']);
    assert.equal(native!.sendMessage(u.id, 1, Buffer.from('too late')), -1);
  });

  test('sends a close with code and reason and reports the backend answer', async () => {
    const { u, backend } = await driven('/close-from-sluice');
    const received = new Promise<[number, string]>((resolve) => backend.once('close', (code, reason) => resolve([code, reason.toString()])));
    assert.equal(native!.sendClose(u.id, 4002, 'sluice says bye'), true);
    assert.deepEqual(await received, [4002, 'sluice says bye']);
    await waitFor('onClose', () => u.closed !== null);
    assert.equal(u.closed!.kind, CloseKind.Frame);
    assert.equal(u.closed!.code, 4002);
  });

  test('closes with 1009 when a backend message is over maxMessageSize', async () => {
    const { u, backend } = await driven('/oversize', { maxMessageSize: 1000 });
    const received = new Promise<number>((resolve) => backend.once('close', (code) => resolve(code)));
    backend.send(Buffer.alloc(999));
    backend.send(Buffer.alloc(1001));
    await waitFor('onClose', () => u.closed !== null);
    assert.equal(u.messages.length, 1);
    assert.deepEqual(u.closed, { code: 1009, reason: 'message too big', kind: CloseKind.Oversize, status: 0 });
    assert.equal(await received, 1009);
  });

  test('closes with 1009 when a fragmented message grows over maxMessageSize', async () => {
    const { u, backend } = await driven('/oversize-fragments', { maxMessageSize: 1000 });
    backend.send(Buffer.alloc(600), { fin: false });
    backend.send(Buffer.alloc(600), { fin: true });
    await waitFor('onClose', () => u.closed !== null);
    assert.equal(u.closed!.kind, CloseKind.Oversize);
  });

  test('parses frames that came in the same read as the 101', async () => {
    const server = await rawBackend(() => {}, Buffer.from([0x81, 0x05, ...Buffer.from('early'), 0x82, 0x02, 7, 8]));
    const u = await open(portOf(server));
    await waitFor('two messages', () => u.messages.length === 2);
    assert.equal(u.messages[0]!.data.toString(), 'early');
    assert.deepEqual([...u.messages[1]!.data], [7, 8]);
    native!.destroy(u.id);
    server.close();
  });

  test('completes a frame whose start came in the same read as the 101', async () => {
    const frame = Buffer.concat([Buffer.from([0x82, 126, 0x01, 0x00]), Buffer.alloc(256, 5)]);
    const server = await rawBackend((socket) => setTimeout(() => socket.write(frame.subarray(3)), 30), frame.subarray(0, 3));
    const u = await open(portOf(server));
    await waitFor('the message', () => u.messages.length === 1);
    assert.ok(u.messages[0]!.data.equals(Buffer.alloc(256, 5)));
    native!.destroy(u.id);
    server.close();
  });

  test('binds the given local address', async () => {
    const seen = new Promise<string>((resolve) => wss.once('connection', (_ws, request) => resolve(request.socket.remoteAddress ?? '')));
    const id = native!.connect('127.0.0.1', port, 2000, '127.0.0.7');
    assert.ok(id > 0);
    const u = new Upstream(id, port, MiB);
    live.set(id, u);
    await waitFor('connect', () => u.openStatus !== null);
    u.sendUpgrade('/bound');
    assert.equal(await seen, '127.0.0.7');
    native!.destroy(id);
    assert.ok(native!.connect('127.0.0.1', port, 2000, 'not an address') < 0);
  });

  test('reassembles frames split at every byte', async () => {
    const frame = Buffer.concat([Buffer.from([0x82, 126, 0x01, 0x00]), Buffer.alloc(256, 9), Buffer.from([0x81, 0x02]), Buffer.from('ok')]);
    const server = await rawBackend(async (socket) => {
      for (const byte of frame) {
        socket.write(Buffer.from([byte]));
        await new Promise((resolve) => setImmediate(resolve));
      }
    });
    const u = await open(portOf(server));
    await waitFor('two messages', () => u.messages.length === 2, () => `${u.messages.length} messages`);
    assert.ok(u.messages[0]!.data.equals(Buffer.alloc(256, 9)));
    assert.equal(u.messages[1]!.data.toString(), 'ok');
    native!.destroy(u.id);
    server.close();
  });

  for (const [name, bytes] of [
    ['a masked frame', [0x81, 0x81, 1, 2, 3, 4, 0x61]],
    ['reserved bits', [0xc1, 0x01, 0x61]],
    ['an unknown opcode', [0x83, 0x00]],
    ['a continuation with no message', [0x80, 0x00]],
    ['a ping longer than 125 bytes', [0x89, 126, 0x00, 0x80, ...new Array<number>(128).fill(0)]],
  ] as const) {
    test(`closes with 1002 when the backend sends ${name}`, async () => {
      let closeFrame: Buffer | null = null;
      const server = await rawBackend((socket) => {
        socket.write(Buffer.from(bytes));
        socket.on('data', (chunk) => (closeFrame = chunk));
      });
      const u = await open(portOf(server), { mayClose: true });
      await waitFor('onClose', () => u.closed !== null);
      assert.equal(u.closed!.kind, CloseKind.Protocol);
      assert.equal(u.closed!.code, 1002);
      await waitFor('the close frame at the backend', () => closeFrame !== null);
      assert.equal(closeFrame![0], 0x88);
      server.close();
    });
  }

  test('reports a backend that vanishes without a close frame as EOF', async () => {
    const server = await rawBackend((socket) => setTimeout(() => socket.end(), 20));
    const u = await open(portOf(server));
    await waitFor('onClose', () => u.closed !== null);
    assert.deepEqual(u.closed, { code: 1006, reason: '', kind: CloseKind.Eof, status: 0 });
    server.close();
  });

  test('reports a write to a reset backend as an error', async () => {
    let backendSocket: net.Socket | null = null;
    const server = await rawBackend((socket) => (backendSocket = socket));
    const u = await open(portOf(server));
    // Not reading, the addon only learns of the reset when the flush of the next message fails.
    native!.pause(u.id);
    await waitFor('the backend socket', () => backendSocket !== null);
    // Once the reset socket has closed, its RST is in the addon's socket (loopback delivers at once).
    const reset = new Promise((resolve) => backendSocket!.once('close', resolve));
    backendSocket!.resetAndDestroy();
    await reset;
    native!.sendMessage(u.id, 1, Buffer.from('into the void'));
    await waitFor('onClose', () => u.closed !== null);
    assert.equal(u.closed!.kind, CloseKind.Error);
    assert.equal(u.closed!.code, 1006);
    assert.ok(u.closed!.status < 0, `status ${u.closed!.status}`);
    server.close();
  });

  test('reports a refused connect as ECONNREFUSED', async () => {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const closedPort = portOf(server);
    await new Promise((resolve) => server.close(resolve));
    const u = dial(closedPort);
    await waitFor('onOpen', () => u.openStatus !== null);
    assert.equal(u.openStatus, ECONNREFUSED);
    assert.equal(native!.destroy(u.id), false, 'the id is released after a failed connect');
  });

  test('rejects a host that is not an IP literal', () => {
    assert.ok(native!.connect('localhost', 80, 1000) < 0);
  });

  test('reports a dial timeout as ETIMEDOUT', async (t) => {
    // A listener whose accept queue is full drops new SYNs, so a connect to it hangs: the only way to
    // make a dial time out on loopback. Node always accepts, so the listener is a python3 one.
    let python: ChildProcess;
    try {
      python = spawn('python3', ['-c', 'import socket,sys,time\ns=socket.socket()\ns.bind(("127.0.0.1",0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(30)'], { stdio: ['ignore', 'pipe', 'ignore'] });
    } catch {
      t.skip('python3 is not available');
      return;
    }
    const fullPort = await new Promise<number>((resolve, reject) => {
      python.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
      python.once('error', reject);
    }).catch(() => 0);
    if (fullPort === 0) {
      t.skip('python3 is not available');
      return;
    }
    const fillers: net.Socket[] = [];
    try {
      for (let i = 0; i < 3; i++) fillers.push(net.connect(fullPort, '127.0.0.1').on('error', () => {}));
      await new Promise((resolve) => setTimeout(resolve, 200));
      const started = Date.now();
      const u = dial(fullPort, { dialTimeoutMs: 300 });
      await waitFor('onOpen', () => u.openStatus !== null);
      assert.equal(u.openStatus, ETIMEDOUT);
      assert.ok(Date.now() - started >= 250, `timed out after ${Date.now() - started} ms`);
      assert.equal(native!.stats().connecting, 0);
    } finally {
      for (const s of fillers) s.destroy();
      python.kill();
    }
  });

  test('setDeadline closes an idle connection with kind Timeout', async () => {
    const u = await open(port);
    native!.setDeadline(u.id, 50);
    await waitFor('onClose', () => u.closed !== null);
    assert.deepEqual(u.closed, { code: 1006, reason: '', kind: CloseKind.Timeout, status: ETIMEDOUT });
  });

  test('the frames of one read come in one onFrames call, as offsets into the read buffer', async () => {
    const { u, backend } = await driven('/one-call');
    frameCalls.length = 0;
    // Three frames in one TCP segment: one read, one call with three entries.
    (backend as unknown as { _socket: net.Socket })._socket.write(Buffer.from([0x81, 1, 0x61, 0x81, 1, 0x62, 0x81, 1, 0x63]));
    await waitFor('three messages', () => u.messages.length === 3);
    assert.deepEqual(frameCalls, [3]);
    assert.deepEqual(
      u.messages.map((m) => m.data.toString()),
      ['a', 'b', 'c'],
    );
    native!.destroy(u.id);
  });

  test('writeRaw takes the upgrade request as a string, before the connection is up', async () => {
    const id = native!.connect('127.0.0.1', port, 2000);
    const u = new Upstream(id, port, MiB);
    live.set(id, u);
    // What Sluice does: the request is queued at connect time and goes out once connected.
    const key = randomBytes(16).toString('base64');
    (u as unknown as { expectedAccept: string }).expectedAccept = createHash('sha1').update(key + GUID).digest('base64');
    const request = `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`;
    assert.equal(native!.writeRaw(id, request), request.length);
    await waitFor('101 from the backend', () => u.upgraded || u.closed !== null);
    assert.equal(u.openStatus, 0);
    native!.sendMessage(id, 1, Buffer.from('over a string request'));
    await waitFor('echo', () => u.messages.length === 1);
    assert.equal(u.messages[0]!.data.toString(), 'over a string request');
    native!.destroy(id);
  });

  describe('liveness pings', () => {
    test('a backend that answers pings stays connected however long it is quiet', async () => {
      const pings: number[] = [];
      const u = dial(port, { pingIntervalMs: 60, pongTimeoutMs: 60 });
      await waitFor('connect', () => u.openStatus !== null);
      u.sendUpgrade('/quiet');
      await waitFor('101', () => u.upgraded);
      await waitFor('backend socket', () => backendByPath.has('/quiet'));
      backendByPath.get('/quiet')!.on('ping', () => pings.push(Date.now())); // `ws` answers each with a pong
      await waitFor('five pings answered', () => pings.length >= 5);
      assert.equal(u.closed, null);
      native!.destroy(u.id);
    });

    test('a backend that stops answering is reported Unresponsive within pingInterval + pongTimeout', async () => {
      const pingInterval = 150;
      const pongTimeout = 150;
      let heard = 0;
      // A raw backend that reads (so TCP stays up) but never answers: what a stopped process looks like.
      const server = await rawBackend((socket) => socket.on('data', () => heard++));
      try {
        const u = dial(portOf(server), { pingIntervalMs: pingInterval, pongTimeoutMs: pongTimeout });
        await waitFor('connect', () => u.openStatus !== null);
        u.sendUpgrade();
        await waitFor('101', () => u.upgraded);
        const upgradedAt = Date.now();
        await waitFor('Unresponsive', () => u.closed !== null);
        const took = Date.now() - upgradedAt;
        assert.deepEqual(u.closed, { code: 1006, reason: '', kind: CloseKind.Unresponsive, status: ETIMEDOUT });
        assert.ok(heard > 0, 'the backend got the ping');
        // Three sweep periods (a quarter of the shorter setting each) of slack on top.
        assert.ok(took >= pingInterval + pongTimeout - 20 && took <= pingInterval + pongTimeout + 3 * 40 + 100, `found after ${took} ms`);
        assert.ok(native!.stats().unresponsive >= 1);
      } finally {
        server.close();
      }
    });
  });

  test('pause stops delivery until resume', async () => {
    const { u, backend } = await driven('/pause');
    assert.equal(native!.pause(u.id), true);
    // Every message handed to the kernel (send callbacks), then a full turn of this thread's loop (its
    // poll phase reads what loopback delivered): a connection still read would have delivered by then.
    await Promise.all(Array.from({ length: 5 }, (_, i) => new Promise((resolve) => backend.send(`m${i}`, resolve))));
    await loopTurns(2);
    assert.equal(u.messages.length, 0, 'delivered while paused');
    native!.resume(u.id);
    await waitFor('five messages', () => u.messages.length === 5);
    assert.deepEqual(
      u.messages.map((m) => m.data.toString()),
      ['m0', 'm1', 'm2', 'm3', 'm4'],
    );
    native!.destroy(u.id);
  });

  test('a write the kernel cannot take at once is queued and drained', async () => {
    const { u, backend } = await driven('/drain');
    (backend as unknown as { _socket: net.Socket })._socket.pause();
    let queued = 0;
    for (let i = 0; i < 64 && queued < 8 * MiB; i++) queued = native!.sendMessage(u.id, 2, Buffer.alloc(256 * KiB));
    // The addon flushes on the loop; after a full turn whatever the kernel could not take is still queued.
    await loopTurns(2);
    assert.ok(native!.queuedBytes(u.id) > 0, 'nothing waited although the backend does not read');
    (backend as unknown as { _socket: net.Socket })._socket.resume();
    await waitFor('onDrain', () => u.drains > 0, () => `queued ${native!.queuedBytes(u.id)}`);
    assert.equal(native!.queuedBytes(u.id), 0);
    native!.destroy(u.id);
  });

  /** A worker that opens `connections` upstreams, echoes `messages` messages on each in turn, then
   *  destroys them (unless keepOpen) and posts its stats; it has nothing left and must end. */
  const workerSource = `
    const { parentPort, workerData } = require('node:worker_threads');
    const crypto = require('node:crypto');
    (async () => {
      const native = (await import(workerData.nativeUrl)).default;
      const { port, connections, messages, keepOpen } = workerData;
      const left = new Map();
      let finished = 0;
      await new Promise((resolve, reject) => {
        let head = new Map();
        const views = native.init({
          onOpen: (id, status) => {
            if (status !== 0) return reject(new Error('connect failed ' + status));
            const key = crypto.randomBytes(16).toString('base64');
            native.writeRaw(id, Buffer.from('GET / HTTP/1.1\\r\\nHost: x\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Key: ' + key + '\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n'));
          },
          onRaw: (id, length) => {
            const text = (head.get(id) || '') + Buffer.from(views.readBuffer.buffer, 0, length).toString('latin1');
            if (!text.includes('\\r\\n\\r\\n')) return head.set(id, text);
            head.delete(id);
            native.startFraming(id, 1 << 20);
            left.set(id, messages);
            native.sendMessage(id, 1, Buffer.from('from worker ' + id + ' #' + messages));
          },
          onFrames: (id, count) => {
            for (let i = 0; i < count * 3; i += 3) {
              const start = views.frames[i + 1], payload = views.readBuffer.subarray(start, start + views.frames[i + 2]);
              const n = left.get(id);
              if (Buffer.from(payload).toString() !== 'from worker ' + id + ' #' + n) return reject(new Error('wrong echo on ' + id));
              if (n > 1) {
                left.set(id, n - 1);
                native.sendMessage(id, 1, Buffer.from('from worker ' + id + ' #' + (n - 1)));
                continue;
              }
              if (!keepOpen) native.destroy(id);
              if (++finished === connections) resolve();
            }
          },
          onClose: () => reject(new Error('closed early')),
        });
        for (let i = 0; i < connections; i++) native.connect('127.0.0.1', port, 2000);
      });
      parentPort.postMessage({ stats: native.stats() });
    })().catch((error) => { parentPort.postMessage({ error: String(error) }); process.exitCode = 2; });
  `;
  interface WorkerStats {
    stats: { connections: number; messagesIn: number; openHandles: number };
  }

  function runWorker(options: { connections: number; messages: number; keepOpen: boolean }): { worker: Worker; messages: unknown[]; exit: Promise<number> } {
    const worker = new Worker(workerSource, { eval: true, workerData: { nativeUrl, port, ...options } });
    const messages: unknown[] = [];
    worker.on('message', (m) => messages.push(m));
    const exit = new Promise<number>((resolve) => worker.once('exit', resolve));
    return { worker, messages, exit };
  }

  function exitWithin<T>(exit: Promise<T>, ms: number): Promise<T | 'still running'> {
    return Promise.race([exit, new Promise<'still running'>((resolve) => setTimeout(() => resolve('still running'), ms))]);
  }

  test('works inside worker threads, which exit by themselves when done', async () => {
    // Four workers at once, each with its own connections, while this thread echoes too.
    const workers = Array.from({ length: 4 }, () => runWorker({ connections: 50, messages: 20, keepOpen: false }));
    const u = await open(port);
    for (let i = 0; i < 100; i++) native!.sendMessage(u.id, 2, Buffer.from([i]));
    for (const w of workers) {
      assert.equal(await exitWithin(w.exit, 10_000), 0, `worker did not exit cleanly: ${JSON.stringify(w.messages)}`);
      const { stats } = w.messages[0] as WorkerStats;
      assert.equal(stats.connections, 0);
      assert.equal(stats.messagesIn, 50 * 20);
    }
    await waitFor('this thread\u2019s 100 echoes', () => u.messages.length === 100);
    assert.deepEqual(
      u.messages.map((m) => m.data[0]),
      Array.from({ length: 100 }, (_, i) => i),
    );
    native!.destroy(u.id);
  });

  test('a worker terminated with open connections exits cleanly', async () => {
    const w = runWorker({ connections: 20, messages: 1, keepOpen: true });
    await waitFor('the worker to echo', () => w.messages.length >= 1, () => JSON.stringify(w.messages));
    assert.equal((w.messages[0] as WorkerStats).stats.connections, 20);
    const held = wss.clients.size;
    assert.equal(await exitWithin(w.worker.terminate(), 5000), 1);
    // The backend sees the worker's connections go away.
    await waitFor('the backend to lose the worker\u2019s connections', () => wss.clients.size <= held - 20, () => `${wss.clients.size} of ${held} left`);
  });
});
