/**
 * Bad input never hurts other clients, and what uWebSockets.js 20.30 does with it is pinned here, since some
 * of it happens before Sluice's code runs (docs/configuration.md, "Limits and timeouts"):
 *  - messages: 1009 with a close frame up to twice websocket.maxMessageSize; past that uWS drops the client
 *    without one (1006). Invalid UTF-8, and unmasked frames (uWS unmasks every client frame with the four bytes
 *    where the mask should be), end in a drop without a close frame too, counted as client_protocol_error.
 *  - request heads: over entryPoints.<name>.http.maxHeaderBytes, 431; what uWS refuses itself (more than about
 *    47 headers, a head over about 128 KiB in one read, over 4 KiB across reads) it drops without an answer; a
 *    head that arrives too slowly (slowloris) is cut by uWS after about 10 s; others are served meanwhile.
 *  - 1,000 clients that leave mid-handshake leak no socket, count or slot.
 *  - respondingTimeouts: readTimeout answers 408, writeTimeout cuts; neither touches a WebSocket.
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startBackend, startSluice, type SluiceProcess, type TestBackend } from './helpers/sluice.js';
import { closeAllPeers, connect, rawRequest, until, upgradeRequest } from './helpers/peer.js';
import { attempt, release, scrape } from './helpers/limits.js';
import { sampleSum } from './helpers/admin.js';
import { startHttpBackend, type HttpBackend } from './helpers/http-backend.js';
import { localAddress } from './helpers/fleet.js';

const KiB = 1024;

/** An upgraded raw socket to Sluice (the 101 read), for frames no WebSocket library sends. */
async function rawWebSocket(port: number, path = '/'): Promise<{ socket: net.Socket; after: Buffer[]; closed: Promise<void> }> {
  const socket = net.connect(port, '127.0.0.1');
  const after: Buffer[] = [];
  let head = '';
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => socket.write(upgradeRequest(path)));
    const onData = (d: Buffer): void => {
      head += d.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      if (!head.startsWith('HTTP/1.1 101')) reject(new Error(head));
      const rest = Buffer.from(head.slice(end + 4), 'latin1');
      if (rest.length > 0) after.push(rest);
      socket.on('data', (more: Buffer) => after.push(more));
      resolve();
    };
    socket.on('data', onData);
    socket.once('error', reject);
  });
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return { socket, after, closed };
}

function maskedFrame(opcode: number, payload: Buffer): Buffer {
  const mask = Buffer.from([0x11, 0x22, 0x33, 0x44]);
  const body = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!));
  return Buffer.concat([Buffer.from([0x80 | opcode, 0x80 | payload.length]), mask, body]);
}

describe('messages and frames', () => {
  let sluice: SluiceProcess | undefined;
  let backend: TestBackend | undefined;
  const received: Buffer[] = [];
  const backendCloses: number[] = [];

  before(async () => {
    backend = await startBackend((ws) => {
      ws.on('message', (data: Buffer) => received.push(data));
      ws.on('close', (code) => backendCloses.push(code));
    });
    sluice = await startSluice(
      // maxHeaderBytes below uWS's 4 KiB bound for heads that arrive across several reads: a head over it
      // reaches Sluice however the kernel splits it (a 40 KiB head split in two reads is uWS's to drop).
      `entryPoints: { web: { address: "127.0.0.1:{PORT}", http: { maxHeaderBytes: 2KiB } } }
http:
  routers: { all: { rule: "PathPrefix(\`/\`)", service: pool } }
  services: { pool: { loadBalancer: { servers: [ { url: "${backend.url}" } ] } } }
websocket: { maxMessageSize: 64KiB }
`,
      { timeoutMs: 20_000 },
    );
  });
  after(async () => {
    closeAllPeers();
    await sluice?.stop();
    await backend?.close();
  });

  async function errors(reason: string): Promise<number> {
    return sampleSum(await scrape(sluice!.adminUrl), 'websocket_errors_total', { reason });
  }

  test('below uWS\'s ceiling (twice maxMessageSize) a larger client message gets a 1009 close frame', async () => {
    const client = await connect(sluice!.url);
    await client.send(Buffer.alloc(100 * KiB, 1), { binary: true });
    assert.deepEqual(await client.waitClose(5000), { code: 1009, reason: 'message too big' });
    assert.equal(await errors('message_too_big'), 1);
  });

  test('past the ceiling uWS drops the client without a close frame (1006); the backend connection closes; it is counted', async () => {
    const before = backendCloses.length;
    const client = await connect(sluice!.url);
    await client.send(Buffer.alloc(200 * KiB, 1), { binary: true }).catch(() => undefined);
    assert.equal((await client.waitClose(5000)).code, 1006);
    await until(() => backendCloses.length > before, 5000, 'the backend connection closed');
    assert.equal(await errors('message_too_big'), 2);
  });

  test('invalid UTF-8 in a text message: uWS drops the client without a close frame; nothing reaches the backend', async () => {
    const seen = received.length;
    const before = backendCloses.length;
    const ws = await rawWebSocket(sluice!.port);
    ws.socket.write(maskedFrame(0x1, Buffer.from([0xc3, 0x28])));
    await ws.closed;
    assert.equal(Buffer.concat(ws.after).length, 0, 'no close frame, only the TCP close');
    await until(() => backendCloses.length > before, 5000, 'the backend connection closed');
    assert.equal(backendCloses.at(-1), 1001, "the client's 1006 goes to the backend as 1001");
    assert.equal(received.length, seen);
    assert.equal(await errors('client_protocol_error'), 1);
  });

  test('unmasked text frames: uWS takes the first four payload bytes as the mask, the text turns invalid, same drop', async () => {
    const seen = received.length;
    const ws = await rawWebSocket(sluice!.port);
    const unmasked = Buffer.concat([Buffer.from([0x81, 8]), Buffer.from('abcdefgh')]);
    ws.socket.write(Buffer.concat([unmasked, unmasked]));
    await ws.closed;
    assert.equal(Buffer.concat(ws.after).length, 0);
    assert.equal(received.length, seen);
    assert.equal(await errors('client_protocol_error'), 2);
  });

  test('an unmasked binary frame reaches the backend unmasked with its own first four bytes (corrupted), as uWS reads it', async () => {
    const ws = await rawWebSocket(sluice!.port);
    // 8-byte payload sent unmasked: uWS reads [1,2,3,4] as the mask and the next 8 bytes as the payload.
    ws.socket.write(Buffer.concat([Buffer.from([0x82, 8, 1, 2, 3, 4, 5, 6, 7, 8]), maskedFrame(0x2, Buffer.from([9, 9, 9, 9]))]));
    await until(() => received.some((r) => r.length === 8 && r[0] === (5 ^ 1)), 5000, 'the corrupted message at the backend');
    ws.socket.destroy();
  });
});

describe('request heads', { concurrency: true }, () => {
  let sluice: SluiceProcess | undefined;
  let backend: HttpBackend | undefined;

  before(async () => {
    backend = await startHttpBackend('heads');
    sluice = await startSluice(
      // maxHeaderBytes below uWS's 4 KiB bound for heads that arrive across several reads: a head over it
      // reaches Sluice however the kernel splits it (a 40 KiB head split in two reads is uWS's to drop).
      `entryPoints: { web: { address: "127.0.0.1:{PORT}", http: { maxHeaderBytes: 2KiB } } }
http:
  routers: { all: { rule: "PathPrefix(\`/\`)", service: pool } }
  services: { pool: { loadBalancer: { servers: [ { url: "${backend.url}" } ] } } }
`,
      { timeoutMs: 20_000 },
    );
  });
  after(async () => {
    await sluice?.stop();
    await backend?.close();
  });

  /** Send `chunks` with `gapMs` between them; resolve with what came back and when the socket closed. */
  function send(chunks: readonly string[], gapMs = 50, ms = 30_000): Promise<{ answer: string; closedAfterMs: number }> {
    return new Promise((resolve, reject) => {
      const started = Date.now();
      const socket = net.connect(sluice!.port, '127.0.0.1');
      let answer = '';
      let i = 0;
      let timer: NodeJS.Timeout | undefined;
      const next = (): void => {
        if (i < chunks.length && !socket.destroyed) socket.write(chunks[i++]!);
        if (i < chunks.length) timer = setTimeout(next, gapMs);
      };
      const giveUp = setTimeout(() => {
        socket.destroy();
        reject(new Error(`still open after ${ms} ms; got ${JSON.stringify(answer.slice(0, 80))}`));
      }, ms);
      socket.once('connect', next);
      socket.on('data', (d: Buffer) => (answer += d.toString('latin1')));
      socket.on('error', () => undefined);
      socket.once('close', () => {
        clearTimeout(timer);
        clearTimeout(giveUp);
        resolve({ answer, closedAfterMs: Date.now() - started });
      });
    });
  }

  const headers = (n: number, size: number): string => Array.from({ length: n }, (_, i) => `X-H${i}: ${'v'.repeat(size)}\r\n`).join('');

  test('a head over maxHeaderBytes (2 KiB here) is answered 431, upgrade or plain request', async () => {
    const big = headers(1, 3 * KiB);
    const upgrade = await rawRequest(sluice!.port, upgradeRequest('/x', big));
    const plain = await rawRequest(sluice!.port, `GET /x HTTP/1.1\r\nHost: x\r\n${big}\r\n`);
    assert.equal(upgrade.status, 431);
    assert.equal(plain.status, 431);
    // The same head in two reads: still under uWS's bound for split heads, so still Sluice's 431.
    const head = `GET /x HTTP/1.1\r\nHost: x\r\n${big}\r\n`;
    const split = await send([head.slice(0, 1500), head.slice(1500)], 100);
    assert.match(split.answer, /^HTTP\/1\.1 431 /);
  });

  test('what uWS refuses itself is dropped without an answer: 200 KiB in one read, 5 KiB across reads', async () => {
    const huge = await send([`GET /x HTTP/1.1\r\nHost: x\r\n${headers(1, 200 * KiB)}\r\n`]);
    assert.equal(huge.answer, '');
    assert.ok(huge.closedAfterMs < 2000, `closed after ${huge.closedAfterMs} ms`);
    const head = `GET /x HTTP/1.1\r\nHost: x\r\n${headers(2, 2500)}\r\n`;
    const split = await send([head.slice(0, 4500), head.slice(4500)], 100);
    assert.equal(split.answer, '');
  });

  test('more headers than uWS parses (about 47) get no answer and are dropped by its timeout; others are served meanwhile', { timeout: 40_000 }, async () => {
    const flood = send([`GET /x HTTP/1.1\r\nHost: x\r\n${headers(60, 8)}\r\n`]);
    for (let i = 0; i < 10; i++) assert.equal((await attempt('http', sluice!.port, '/x')).status, 200);
    const { answer, closedAfterMs } = await flood;
    assert.equal(answer, '');
    assert.ok(closedAfterMs >= 8000 && closedAfterMs <= 20_000, `dropped after ${closedAfterMs} ms`);
  });

  test('slowloris: a head dribbled a byte every 500 ms is cut after uWS\'s ~10 s, unanswered, while others are served', { timeout: 40_000 }, async () => {
    const head = `GET /x HTTP/1.1\r\nHost: x\r\n${headers(3, 20)}\r\n`;
    const slow = send(head.split(''), 500);
    for (let i = 0; i < 10; i++) {
      const a = await attempt(i % 2 === 0 ? 'http' : 'upgrade', sluice!.port, '/x');
      release(a);
      assert.equal(a.status, i % 2 === 0 ? 200 : 101);
    }
    const { answer, closedAfterMs } = await slow;
    assert.equal(answer, '');
    assert.ok(closedAfterMs >= 8000 && closedAfterMs <= 16_000, `cut after ${closedAfterMs} ms`);
  });
});

describe('1,000 clients that leave mid-handshake', () => {
  let sluice: SluiceProcess | undefined;
  let backend: TestBackend | undefined;

  before(async () => {
    // The backend takes 200 ms to answer an upgrade, so clients can leave while Sluice waits for it.
    backend = await startBackend(undefined, { verifyClient: (_info, done) => setTimeout(() => done(true), 200) });
    sluice = await startSluice(
      `entryPoints: { web: { address: "127.0.0.1:{PORT}", websocket: { maxConnections: 1000 } } }
http:
  routers: { all: { rule: "PathPrefix(\`/\`)", service: pool, middlewares: [perClient] } }
  middlewares: { perClient: { inFlightReq: { amount: 10 } } }
  services: { pool: { loadBalancer: { servers: [ { url: "${backend.url}" } ] } } }
`,
      { workers: 2, timeoutMs: 20_000 },
    );
  });
  after(async () => {
    closeAllPeers();
    await sluice?.stop();
    await backend?.close();
  });

  const openFds = (): number => readdirSync(`/proc/${sluice!.child.pid}/fd`).length;

  test('leak no socket, no count and no slot', { timeout: 60_000 }, async () => {
    const baseline = openFds();
    const clients = Array.from({ length: 1000 }, (_, i) =>
      new Promise<void>((resolve) => {
        const socket = net.connect({ port: sluice!.port, host: '127.0.0.1', localAddress: localAddress(i) });
        socket.on('error', () => undefined);
        socket.once('close', () => resolve());
        socket.once('connect', () => {
          const request = upgradeRequest(`/leave/${i}`);
          // Half leave in the middle of their head, half while the backend has not answered yet.
          if (i % 2 === 0) {
            socket.write(request.slice(0, 40));
            setTimeout(() => socket.destroy(), 20);
          } else {
            socket.write(request);
            setTimeout(() => socket.destroy(), 50);
          }
        });
      }),
    );
    await Promise.all(clients);
    const samples = async (): Promise<number> => sampleSum(await scrape(sluice!.adminUrl), 'sluice_backend_connections');
    let held = -1;
    for (let i = 0; i < 100 && held !== 0; i++) {
      held = await samples();
      if (held !== 0) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(held, 0, 'no backend connection is still counted');
    await until(() => backend!.sockets.size === 0, 10_000, () => `${backend!.sockets.size} backend WebSockets still open`);
    await until(() => openFds() <= baseline + 5, 10_000, () => `Sluice holds ${openFds()} descriptors (${baseline} before)`);
    // The entry point's count and each client's inFlightReq count are back to zero: a full set gets in.
    const again = await Promise.all(Array.from({ length: 10 }, () => attempt('upgrade', sluice!.port, '/again', { localAddress: localAddress(0) })));
    again.forEach(release);
    assert.deepEqual(again.map((a) => a.status), Array(10).fill(101));
  });
});

describe('respondingTimeouts', () => {
  let sluice: SluiceProcess | undefined;
  let backend: HttpBackend | undefined;

  before(async () => {
    backend = await startHttpBackend('timeouts');
    sluice = await startSluice(
      `entryPoints:
  web:
    address: "127.0.0.1:{PORT}"
    transport: { respondingTimeouts: { readTimeout: 1s, writeTimeout: 2s } }
http:
  routers: { all: { rule: "PathPrefix(\`/\`)", service: pool } }
  services: { pool: { loadBalancer: { servers: [ { url: "${backend.url}" } ] } } }
`,
      { timeoutMs: 20_000 },
    );
  });
  after(async () => {
    closeAllPeers();
    await sluice?.stop();
    await backend?.close();
  });

  test('readTimeout: a body that stops arriving gets 408', async () => {
    const started = Date.now();
    const answer = await rawRequest(sluice!.port, 'POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789', undefined, 10_000);
    assert.equal(answer.status, 408);
    const took = Date.now() - started;
    assert.ok(took >= 900 && took < 5000, `answered after ${took} ms`);
  });

  test('writeTimeout cuts a response still not out, and a WebSocket open all along is untouched', async () => {
    const ws = await connect(`${sluice!.url}/ws`);
    await ws.next(); // the backend's greeting
    const started = Date.now();
    const cut = await rawRequest(sluice!.port, 'GET /slow-head?ms=5000 HTTP/1.1\r\nHost: x\r\n\r\n', undefined, 10_000);
    const took = Date.now() - started;
    assert.equal(cut.status, 0, 'no answer: the connection was cut');
    assert.ok(took >= 1900 && took < 4500, `cut after ${took} ms`);
    await ws.send('still open');
    assert.equal((await ws.next()).data.toString(), 'still open');
  });
});
