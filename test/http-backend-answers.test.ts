/**
 * What a backend may answer a plain HTTP request with, byte by byte, and what the client then gets: a scripted
 * TCP backend writes each answer in pieces (so the proxy reads a head or a chunk size in several reads), with
 * chunked bodies (extensions, trailers), bodies that end at close, HTTP/1.0, 1xx before the answer, UTF-8 in a
 * header value, and answers that break HTTP/1.1 (502 before the head went out, a cut connection after). The
 * same cases run on both upstream legs (npm test runs every file with SLUICE_NATIVE=1 and 0): the native
 * HTTP client (http-native-client.ts) and undici must answer alike.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startSluice, type SluiceProcess } from './helpers/sluice.js';
import { fetchRaw } from './helpers/http-backend.js';
import { rawRequest } from './helpers/peer.js';

/** How an answer is written: pieces with a pause between them (each then arrives in its own read). */
interface Script {
  readonly pieces: readonly (string | Buffer)[];
  /** Close the connection after the last piece. */
  readonly close?: boolean;
}

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Cut `text` into pieces of `size` bytes. */
function cut(text: string | Buffer, size: number): Buffer[] {
  const bytes = Buffer.isBuffer(text) ? text : Buffer.from(text, 'latin1');
  const out: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += size) out.push(bytes.subarray(i, i + size));
  return out;
}

const BIG_BODY = Buffer.alloc(200_000, 'b');

const SCRIPTS: Record<string, Script> = {
  '/chunked-split': {
    pieces: cut('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: text/plain\r\n\r\n5;ext=1\r\nhello\r\n7\r\n, world\r\nA\r\n and more!\r\n0\r\nx-trailer: yes\r\n\r\n', 3),
  },
  '/head-split': { pieces: ['HTTP/1.', '1 200 OK\r\nx-a: ', 'one\r\ncontent-len', 'gth: 4\r\n\r', '\nbody'] },
  '/until-close': { pieces: ['HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nfirst part, ', 'second part'], close: true },
  '/no-reason': { pieces: ['HTTP/1.1 201\r\ncontent-length: 2\r\n\r\nok'] },
  '/http10': { pieces: ['HTTP/1.0 200 OK\r\ncontent-length: 6\r\n\r\nold ok'] },
  '/http10-keepalive': { pieces: ['HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 6\r\n\r\nkept10'] },
  '/early-hints': { pieces: ['HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n', 'HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nafter'] },
  '/utf8-header': { pieces: [Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\nx-name: '), Buffer.from('café ✓', 'utf8'), Buffer.from('\r\ncontent-length: 2\r\n\r\nok')])] },
  '/empty': { pieces: ['HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n'] },
  '/extra-bytes': { pieces: ['HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nfourEXTRA'] },
  '/large': { pieces: [`HTTP/1.1 200 OK\r\ncontent-length: ${BIG_BODY.length}\r\n\r\n`, ...cut(BIG_BODY, 70_000)] },
  '/bad-status': { pieces: ['HTTP/1.1 2x0 OK\r\ncontent-length: 2\r\n\r\nno'] },
  '/garbage': { pieces: ['hello there\r\n\r\n'] },
  '/huge-head': { pieces: [`HTTP/1.1 200 OK\r\n${'x-filler: '.padEnd(1000, 'f')}\r\n`.repeat(1), ...Array.from({ length: 80 }, () => `x-more: ${'m'.repeat(1000)}\r\n`), '\r\n'] },
  '/bad-chunk': { pieces: ['HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n', 'zz\r\nnot a size\r\n0\r\n\r\n'] },
};

/** A backend that answers each request by its path from SCRIPTS, and remembers which connection served it. */
async function scriptedBackend(): Promise<{ port: number; served: { path: string; connection: number }[]; close(): Promise<void> }> {
  const served: { path: string; connection: number }[] = [];
  const sockets = new Set<net.Socket>();
  let connections = 0;
  const server = net.createServer((socket) => {
    const connection = ++connections;
    sockets.add(socket);
    socket.setNoDelay(true);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let buffered = '';
    let busy = Promise.resolve();
    socket.on('data', (data) => {
      buffered += data.toString('latin1');
      for (let end = buffered.indexOf('\r\n\r\n'); end >= 0; end = buffered.indexOf('\r\n\r\n')) {
        const head = buffered.slice(0, end);
        buffered = buffered.slice(end + 4);
        const path = head.split(' ')[1]!;
        served.push({ path, connection });
        const script = SCRIPTS[path];
        busy = busy.then(async () => {
          if (script === undefined) {
            socket.write('HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n');
            return;
          }
          for (const piece of script.pieces) {
            if (socket.destroyed) return;
            socket.write(piece);
            if (script.pieces.length > 1) await pause(4);
          }
          if (script.close === true) socket.end();
        });
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    port: (server.address() as net.AddressInfo).port,
    served,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Sluice with one router sending everything to the backend at `url`. */
function sluiceInFront(url: string): Promise<SluiceProcess> {
  return startSluice(`entryPoints:
  web: { address: "127.0.0.1:{PORT}" }
http:
  routers:
    app: { rule: "PathPrefix(\`/\`)", service: app }
  services:
    app:
      loadBalancer:
        servers: [ { url: "${url}" } ]
`);
}

describe('what a backend answers, and what the client gets', () => {
  let sluice: SluiceProcess | undefined;
  let backend: Awaited<ReturnType<typeof scriptedBackend>> | undefined;
  let base = '';
  before(async () => {
    backend = await scriptedBackend();
    sluice = await sluiceInFront(`http://127.0.0.1:${backend.port}`);
    base = `http://127.0.0.1:${sluice.port}`;
  });
  after(async () => {
    await sluice?.stop();
    await backend?.close();
  });

  /** The connection (as the backend counted them) that served the last request for `path`. */
  function connectionOf(path: string): number {
    return backend!.served.filter((s) => s.path === path).at(-1)!.connection;
  }

  test('a chunked body cut anywhere (sizes, extensions, CRLFs, trailers) arrives whole', async () => {
    const a = await fetchRaw(`${base}/chunked-split`);
    assert.equal(a.status, 200);
    assert.equal(a.text(), 'hello, world and more!');
    assert.equal(a.headers['content-type'], 'text/plain');
  });

  test('a response head in several reads is put together', async () => {
    const a = await fetchRaw(`${base}/head-split`);
    assert.equal(a.status, 200);
    assert.equal(a.headers['x-a'], 'one');
    assert.equal(a.text(), 'body');
  });

  test('a body without length or coding ends when the backend closes, and that connection is not reused', async () => {
    const a = await fetchRaw(`${base}/until-close`);
    assert.equal(a.status, 200);
    assert.equal(a.text(), 'first part, second part');
    const first = connectionOf('/until-close');
    assert.equal((await fetchRaw(`${base}/empty`)).status, 200);
    assert.notEqual(connectionOf('/empty'), first);
  });

  test('HTTP/1.0: without keep-alive the connection closes after the answer; with it, it is reused', async () => {
    assert.equal((await fetchRaw(`${base}/http10`)).text(), 'old ok');
    const old = connectionOf('/http10');
    assert.equal((await fetchRaw(`${base}/http10-keepalive`)).text(), 'kept10');
    assert.notEqual(connectionOf('/http10-keepalive'), old);
    const kept = connectionOf('/http10-keepalive');
    assert.equal((await fetchRaw(`${base}/empty`)).status, 200);
    assert.equal(connectionOf('/empty'), kept);
  });

  test('a status line without a reason phrase (nor the space before it) is taken', async () => {
    const a = await fetchRaw(`${base}/no-reason`);
    assert.equal(a.status, 201);
    assert.equal(a.text(), 'ok');
  });

  test('a 103 before the answer is passed over; the answer arrives', async () => {
    const a = await fetchRaw(`${base}/early-hints`);
    assert.equal(a.status, 200);
    assert.equal(a.text(), 'after');
  });

  test('header values keep their bytes (UTF-8 in a value is not re-encoded)', async () => {
    const r = await rawRequest(sluice!.port, 'GET /utf8-header HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
    const raw = Buffer.from(r.raw, 'latin1');
    assert.ok(raw.includes(Buffer.concat([Buffer.from('x-name: '), Buffer.from('café ✓', 'utf8'), Buffer.from('\r\n')])), r.raw);
  });

  test('a 200 of length 0 ends at once and keeps the connection', async () => {
    assert.equal((await fetchRaw(`${base}/empty`)).body.length, 0);
    const first = connectionOf('/empty');
    assert.equal((await fetchRaw(`${base}/empty`)).body.length, 0);
    assert.equal(connectionOf('/empty'), first);
  });

  test('bytes past the declared length are not passed on, and that connection is not used again', async () => {
    const a = await fetchRaw(`${base}/extra-bytes`);
    assert.equal(a.text(), 'four');
    const tainted = connectionOf('/extra-bytes');
    assert.equal((await fetchRaw(`${base}/empty`)).status, 200);
    assert.notEqual(connectionOf('/empty'), tainted);
  });

  test('a body over several reads arrives byte for byte', async () => {
    const a = await fetchRaw(`${base}/large`);
    assert.equal(a.status, 200);
    assert.ok(a.body.equals(BIG_BODY));
  });

  for (const path of ['/bad-status', '/garbage', '/huge-head']) {
    test(`an invalid answer (${path.slice(1)}) is a 502 naming the service`, async () => {
      const a = await fetchRaw(`${base}${path}`);
      assert.equal(a.status, 502);
      assert.match(a.text(), /service 'app' sent an invalid response/);
    });
  }

  test('a broken chunk after the head went out cuts the client connection (never a whole-looking answer)', async () => {
    await assert.rejects(fetchRaw(`${base}/bad-chunk`));
  });
});

describe('a plain HTTP backend named by a host name', () => {
  let sluice: SluiceProcess | undefined;
  let backend: Awaited<ReturnType<typeof scriptedBackend>> | undefined;
  before(async () => {
    backend = await scriptedBackend();
    sluice = await sluiceInFront(`http://localhost:${backend.port}`);
  });
  after(async () => {
    await sluice?.stop();
    await backend?.close();
  });

  test('is answered before and after its address is known (undici first, then the native client on that leg)', async () => {
    const base = `http://127.0.0.1:${sluice!.port}`;
    for (let round = 0; round < 3; round++) {
      const answers = await Promise.all(Array.from({ length: 5 }, () => fetchRaw(`${base}/chunked-split`)));
      for (const a of answers) assert.equal(a.text(), 'hello, world and more!');
      assert.equal((await fetchRaw(`${base}/head-split`)).text(), 'body');
    }
    assert.equal(backend!.served.length, 18);
  });
});
