/**
 * Protocol fidelity of the frame pump, end to end through a real Sluice process: every payload size
 * class of RFC 6455 (7-bit, 16-bit and 64-bit lengths) as text and binary in both directions,
 * fragmented messages from either side, ping/pong on each leg, close codes and reasons both ways,
 * resets on either leg, ordering under a burst, many connections at once, and the maximum message
 * size on both legs. Whole file: about 20 s.
 *
 * The backend is one `ws` server driven by the request path: `/echo/...` echoes, anything else is
 * driven by the test through the backend-side Peer found under that path.
 */
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { WebSocket } from 'ws';
import { simpleConfig, startBackend, startSluice, type SluiceProcess, type TestBackend } from './helpers/sluice.js';
import { Peer, closeAllPeers, connect, until } from './helpers/peer.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** Valid UTF-8 of exactly `size` bytes, with 2-, 3- and 4-byte characters throughout. */
function utf8Text(size: number): string {
  const unit = Buffer.from('abc é € 😀 ');
  const bytes = Buffer.alloc(size);
  for (let at = 0; at + unit.length <= size; at += unit.length) unit.copy(bytes, at);
  // The tail that does not hold a whole unit is ASCII, so the string is valid and exactly `size` bytes.
  bytes.fill('z', size - (size % unit.length));
  const text = bytes.toString('utf8');
  assert.equal(Buffer.byteLength(text), size);
  return text;
}

/** A backend that records one Peer per request path and echoes on paths under /echo/. */
class ScriptedBackend {
  readonly peers = new Map<string, Peer>();
  backend!: TestBackend;

  async start(): Promise<void> {
    this.backend = await startBackend((ws: WebSocket, req: IncomingMessage) => {
      const peer = new Peer(ws);
      this.peers.set(req.url!, peer);
      if (req.url!.startsWith('/echo/')) ws.on('message', (data, isBinary) => ws.send(data as Buffer, { binary: isBinary }));
    });
  }

  async peer(path: string): Promise<Peer> {
    await until(() => this.peers.has(path), 2000, `no backend connection for ${path}`);
    return this.peers.get(path)!;
  }
}

let nextPath = 0;
function uniquePath(kind: 'echo' | 'drive'): string {
  return `/${kind}/${++nextPath}`;
}

/** 200 clients from 127.0.0.1-8 each send 500 numbered messages to an echo path; all come back in order. */
async function manyConnections(sluiceUrl: string): Promise<void> {
  const clients = await Promise.all(Array.from({ length: 200 }, (_, c) => connect(`${sluiceUrl}${uniquePath('echo')}`, { localAddress: `127.0.0.${1 + (c % 8)}` })));
  for (let c = 0; c < clients.length; c++) for (let i = 0; i < 500; i++) clients[c]!.ws.send(`${c}:${i}`);
  await Promise.all(
    clients.map(async (client, c) => {
      const got = await client.take(500, 30_000);
      for (let i = 0; i < 500; i++) if (got[i]!.data.toString() !== `${c}:${i}`) assert.fail(`connection ${c}, message ${i}: '${got[i]!.data.toString()}'`);
    }),
  );
  const addresses = new Set(clients.map((client) => (client.ws as unknown as { _socket: import('node:net').Socket })._socket.localAddress));
  assert.equal(addresses.size, 8, 'clients came from 8 addresses');
}

describe('frame pump', () => {
  const scripted = new ScriptedBackend();
  let sluice: SluiceProcess | undefined;

  before(async () => {
    await scripted.start();
    sluice = await startSluice(simpleConfig([scripted.backend.url]), { timeoutMs: 20_000 });
  });
  afterEach(closeAllPeers);
  after(async () => {
    closeAllPeers();
    await sluice?.stop();
    await scripted.backend?.close();
  });

  /** A client of Sluice and the backend's side of the same tunnel. */
  async function tunnel(kind: 'echo' | 'drive' = 'drive'): Promise<{ client: Peer; server: Peer }> {
    const path = uniquePath(kind);
    const client = await connect(sluice!.url + path);
    return { client, server: await scripted.peer(path) };
  }

  describe('payload sizes', () => {
    const sizes = [0, 125, 126, 65535, 65536, 1 * MiB, 16 * MiB];
    for (const size of sizes) {
      for (const binary of [false, true]) {
        const kind = binary ? 'binary' : 'text';
        const payload = (): Buffer | string => (binary ? randomBytes(size) : utf8Text(size));
        const expected = (p: Buffer | string): Buffer => (typeof p === 'string' ? Buffer.from(p) : p);

        test(`${kind} ${size} bytes: client → backend → client`, async () => {
          const { client, server } = await tunnel('echo');
          const sent = payload();
          await client.send(sent, { binary });
          const atBackend = await server.next(10_000);
          assert.equal(atBackend.isBinary, binary);
          assert.ok(atBackend.data.equals(expected(sent)), `backend got ${atBackend.data.length} bytes, differing from the ${size} sent`);
          const back = await client.next(10_000);
          assert.equal(back.isBinary, binary);
          assert.ok(back.data.equals(expected(sent)), `client got ${back.data.length} bytes back, differing from the ${size} sent`);
        });

        test(`${kind} ${size} bytes: backend → client`, async () => {
          const { client, server } = await tunnel();
          const sent = payload();
          await server.send(sent, { binary });
          const got = await client.next(10_000);
          assert.equal(got.isBinary, binary);
          assert.ok(got.data.equals(expected(sent)), `client got ${got.data.length} bytes, differing from the ${size} sent`);
        });
      }
    }
  });

  describe('fragmented messages', () => {
    test('from the backend, a UTF-8 character split across frames arrives as one text message', async () => {
      const { client, server } = await tunnel();
      const euro = Buffer.from('€'); // e2 82 ac
      await server.send(Buffer.concat([Buffer.from('price: '), euro.subarray(0, 2)]), { binary: false, fin: false });
      await server.send(euro.subarray(2, 3), { fin: false });
      await server.send(Buffer.from(' 12'), { fin: true });
      const got = await client.next();
      assert.equal(got.isBinary, false);
      assert.equal(got.data.toString('utf8'), 'price: € 12');
      await server.send('after', { binary: false });
      assert.equal((await client.next()).data.toString(), 'after', 'a whole message follows the fragmented one');
    });

    test('from the backend, a ping between fragments is answered and the message arrives whole', async () => {
      const { client, server } = await tunnel();
      const first = randomBytes(3000);
      const second = randomBytes(70_000);
      await server.send(first, { binary: true, fin: false });
      server.ws.ping('between');
      await server.send(second, { binary: true, fin: true });
      const got = await client.next();
      assert.equal(got.isBinary, true);
      assert.ok(got.data.equals(Buffer.concat([first, second])));
      await until(() => server.pongs.length === 1, 2000, 'the backend got no pong');
      assert.equal(server.pongs[0]!.toString(), 'between');
    });

    test('from the client, a UTF-8 character split across frames with a ping between arrives as one message', async () => {
      const { client, server } = await tunnel();
      const snowman = Buffer.from('☃'); // e2 98 83
      await client.send(Buffer.concat([Buffer.from('snow'), snowman.subarray(0, 1)]), { binary: false, fin: false });
      client.ws.ping('mid');
      await client.send(snowman.subarray(1), { fin: false });
      await client.send(Buffer.from('man'), { fin: true });
      const got = await server.next();
      assert.equal(got.isBinary, false);
      assert.equal(got.data.toString('utf8'), 'snow☃man');
      await until(() => client.pongs.length === 1, 2000, 'the client got no pong');
      assert.equal(client.pongs[0]!.toString(), 'mid');
    });

    test('from the client, a large binary message in many fragments arrives whole', async () => {
      const { client, server } = await tunnel();
      const parts = Array.from({ length: 20 }, (_, i) => randomBytes(1000 + i * 5000));
      for (let i = 0; i < parts.length; i++) await client.send(parts[i]!, { binary: true, fin: i === parts.length - 1 });
      const got = await server.next();
      assert.equal(got.isBinary, true);
      assert.ok(got.data.equals(Buffer.concat(parts)));
    });
  });

  describe('ping and pong', () => {
    test("a client's ping gets a pong with its payload", async () => {
      const { client } = await tunnel();
      client.ws.ping('client-ping');
      await until(() => client.pongs.length === 1, 2000, 'the client got no pong');
      assert.equal(client.pongs[0]!.toString(), 'client-ping');
    });

    test("a backend's ping gets a pong with its payload", async () => {
      const { server } = await tunnel();
      server.ws.ping('backend-ping');
      await until(() => server.pongs.length === 1, 2000, 'the backend got no pong');
      assert.equal(server.pongs[0]!.toString(), 'backend-ping');
    });
  });

  describe('close', () => {
    test('close 4001 "bye" from the client reaches the backend with code and reason', async () => {
      const { client, server } = await tunnel();
      client.ws.close(4001, 'bye');
      assert.deepEqual(await server.waitClose(2000), { code: 4001, reason: 'bye' });
      const atClient = await client.waitClose(2000);
      assert.equal(atClient.code, 4001, 'the client gets its close echoed');
    });

    test('close 4002 from the backend reaches the client with code and reason', async () => {
      const { client, server } = await tunnel();
      server.ws.close(4002, 'backend says bye');
      assert.deepEqual(await client.waitClose(2000), { code: 4002, reason: 'backend says bye' });
      assert.equal((await server.waitClose(2000)).code, 4002, 'the backend gets its close echoed');
    });

    test('a close reason of the maximum 123 bytes, in UTF-8, passes both ways intact', async () => {
      const reason = 'é'.repeat(60) + 'abc'; // 123 bytes
      assert.equal(Buffer.byteLength(reason), 123);
      const first = await tunnel();
      first.server.ws.close(4003, reason);
      assert.deepEqual(await first.client.waitClose(2000), { code: 4003, reason });
      const second = await tunnel();
      second.client.ws.close(4004, reason);
      assert.deepEqual(await second.server.waitClose(2000), { code: 4004, reason });
    });

    test('a close without a code from the client reaches the backend as a close without a code', async () => {
      const { client, server } = await tunnel();
      client.ws.close();
      assert.deepEqual(await server.waitClose(2000), { code: 1005, reason: '' });
    });
  });

  describe('resets', () => {
    // ws's terminate() destroys the socket (FIN); resetAndDestroy() sends an RST.
    const backendEnds: [string, (ws: WebSocket) => void][] = [
      ['destroyed (FIN)', (ws) => ws.terminate()],
      ['reset (RST)', (ws) => (ws as unknown as { _socket: import('node:net').Socket })._socket.resetAndDestroy()],
    ];
    for (const [how, end] of backendEnds) {
      test(`a backend socket ${how} without a close frame closes its client with 1011 within 2 s`, async () => {
        const { client, server } = await tunnel();
        end(server.ws);
        assert.equal((await client.waitClose(2000)).code, 1011);
      });

      test(`a client socket ${how} without a close frame closes its backend connection within 2 s`, async () => {
        const { client, server } = await tunnel();
        end(client.ws);
        const closed = await server.waitClose(2000);
        assert.notEqual(closed.code, 1011, 'a client that left is not a server error');
      });
    }

    test('a client that half-closes (FIN) without a close frame closes its backend connection within 2 s', async () => {
      const { client, server } = await tunnel();
      (client.ws as unknown as { _socket: import('node:net').Socket })._socket.end();
      await server.waitClose(2000);
    });

    test('other tunnels keep flowing after resets', async () => {
      const { client } = await tunnel('echo');
      await client.send('still here');
      assert.equal((await client.next()).data.toString(), 'still here');
    });
  });

  describe('ordering and volume', () => {
    test('a burst of 10,000 messages from the client arrives at the backend and back in order', async () => {
      const { client, server } = await tunnel('echo');
      for (let i = 0; i < 10_000; i++) client.ws.send(`m${i}`);
      const atBackend = await server.take(10_000, 15_000);
      const back = await client.take(10_000, 15_000);
      for (let i = 0; i < 10_000; i++) {
        if (atBackend[i]!.data.toString() !== `m${i}`) assert.fail(`backend: message ${i} is '${atBackend[i]!.data.toString()}'`);
        if (back[i]!.data.toString() !== `m${i}`) assert.fail(`client: message ${i} is '${back[i]!.data.toString()}'`);
      }
    });

    test('a burst of 10,000 messages from the backend arrives at the client in order', async () => {
      const { client, server } = await tunnel();
      const sizes = [1, 200, 3000, 70_000];
      for (let i = 0; i < 10_000; i++) {
        // Mixed sizes, so that frames straddle the proxy's reads in every way.
        const size = sizes[i % sizes.length]!;
        const body = Buffer.alloc(size, i % 251);
        if (size >= 4) body.writeUInt32BE(i, 0);
        else body[0] = i & 0xff;
        server.ws.send(body, { binary: true });
      }
      const got = await client.take(10_000, 20_000);
      for (let i = 0; i < 10_000; i++) {
        const size = sizes[i % sizes.length]!;
        const data = got[i]!.data;
        const ok = size >= 4 ? data.length === size && data.readUInt32BE(0) === i && data[size - 1] === i % 251 : data.length === 1 && data[0] === (i & 0xff);
        if (!ok) assert.fail(`message ${i}: ${data.length} bytes, starting ${data.subarray(0, 8).toString('hex')}`);
      }
    });

    test('200 connections × 500 messages each, from addresses spread over 127.0.0.1-8: nothing lost or reordered', () => manyConnections(sluice!.url));
  });
});

describe('maximum message size (64 KiB)', () => {
  const scripted = new ScriptedBackend();
  let sluice: SluiceProcess | undefined;

  before(async () => {
    await scripted.start();
    sluice = await startSluice(
      simpleConfig(
        [scripted.backend.url],
        `websocket:
  maxMessageSize: 64KiB
  clientMaxBuffer: 1MiB
  upstreamWriteBudget: 1MiB
`,
      ),
      { timeoutMs: 20_000 },
    );
  });
  afterEach(closeAllPeers);
  after(async () => {
    closeAllPeers();
    await sluice?.stop();
    await scripted.backend?.close();
  });

  async function tunnel(kind: 'echo' | 'drive' = 'drive'): Promise<{ client: Peer; server: Peer }> {
    const path = uniquePath(kind);
    const client = await connect(sluice!.url + path);
    return { client, server: await scripted.peer(path) };
  }

  async function roundTrip(client: Peer, text: string): Promise<void> {
    await client.send(text);
    assert.equal((await client.next()).data.toString(), text);
  }

  test('a message of exactly the limit passes both ways', async () => {
    const { client } = await tunnel('echo');
    const payload = randomBytes(64 * KiB);
    await client.send(payload, { binary: true });
    assert.ok((await client.next()).data.equals(payload));
  });

  // uWebSockets.js drops a client past its own maxPayloadLength without a close frame (1006), so
  // Sluice gives uWS twice the limit and sends the 1009 itself for anything between the two.
  test('a larger message from the client closes that client and its backend connection; other tunnels keep flowing', async () => {
    const bystander = await tunnel('echo');
    const { client, server } = await tunnel();
    await client.send(randomBytes(64 * KiB + 1), { binary: true });
    await client.waitClose(2000);
    await server.waitClose(2000);
    assert.equal(server.count, 0, 'nothing of the oversize message reached the backend');
    await roundTrip(bystander.client, 'still flowing');
  });

  test('a larger message from the client closes that client with 1009', async () => {
    const { client } = await tunnel();
    await client.send(randomBytes(64 * KiB + 1), { binary: true });
    assert.equal((await client.waitClose(2000)).code, 1009);
  });

  test('a larger message from the backend closes the client with 1009 and the backend too; other tunnels keep flowing', async () => {
    const bystander = await tunnel('echo');
    const { client, server } = await tunnel();
    await server.send(randomBytes(64 * KiB + 1), { binary: true });
    assert.equal((await client.waitClose(2000)).code, 1009);
    assert.equal((await server.waitClose(2000)).code, 1009);
    assert.equal(client.count, 0, 'nothing of the oversize message reached the client');
    await roundTrip(bystander.client, 'still flowing');
  });

  test('a fragmented message from the backend that grows past the limit closes with 1009', async () => {
    const bystander = await tunnel('echo');
    const { client, server } = await tunnel();
    for (let i = 0; i < 4; i++) await server.send(randomBytes(20 * KiB), { binary: true, fin: false });
    await server.send(randomBytes(20 * KiB), { binary: true, fin: true });
    assert.equal((await client.waitClose(2000)).code, 1009);
    assert.equal((await server.waitClose(2000)).code, 1009);
    await roundTrip(bystander.client, 'still flowing');
  });

  test('a fragmented message from the client that grows past the limit closes the client and its backend connection', async () => {
    const bystander = await tunnel('echo');
    const { client, server } = await tunnel();
    for (let i = 0; i < 4; i++) await client.send(randomBytes(20 * KiB), { binary: true, fin: false });
    await client.send(randomBytes(20 * KiB), { binary: true, fin: true }).catch(() => undefined);
    const closed = await client.waitClose(2000);
    assert.ok(closed.code === 1009 || closed.code === 1006, `closed with ${closed.code}`);
    await server.waitClose(2000);
    assert.equal(server.count, 0, 'no part of the oversize message reached the backend');
    await roundTrip(bystander.client, 'still flowing');
  });
});

describe('two workers', () => {
  const scripted = new ScriptedBackend();
  let sluice: SluiceProcess | undefined;

  before(async () => {
    await scripted.start();
    sluice = await startSluice(simpleConfig([scripted.backend.url]), { workers: 2, timeoutMs: 20_000 });
  });
  afterEach(closeAllPeers);
  after(async () => {
    closeAllPeers();
    await sluice?.stop();
    await scripted.backend?.close();
  });

  test('200 connections × 500 messages each, with two workers: nothing lost or reordered', () => manyConnections(sluice!.url));
});
