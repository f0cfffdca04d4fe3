/**
 * The WebSocket upgrade through a real Sluice process: what reaches the backend (path and query byte
 * for byte, end-to-end headers, X-Forwarded-*, no hop-by-hop headers, Host), what reaches the client
 * (the backend's subprotocol, its non-101 answers with their bodies), and Sluice's own answers: 404
 * without a route, retry then 502 on dead backends, 504 on a silent one, 400 on a bad handshake, 426
 * for an unsupported WebSocket version (a plain HTTP request is proxied). Whole file: about 5 s.
 */
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { createServer as createNetServer, type Server as NetServer, type Socket, type AddressInfo } from 'node:net';
import { freePort, startBackend, startSluice, type SluiceProcess, type TestBackend } from './helpers/sluice.js';
import { UpgradeRefused, closeAllPeers, connect, rawRequest, upgradeRequest, until } from './helpers/peer.js';

/** Answers of the refusing backend, by request path. */
const REFUSALS: Record<string, string> = {
  '/deny/403': 'HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 22\r\n\r\nno entry for you, sorr',
  '/deny/401': 'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm="chat"\r\nContent-Type: application/json\r\nContent-Length: 25\r\n\r\n{"error":"token expired"}',
  '/deny/404': 'HTTP/1.1 404 Not Found\r\nContent-Length: 15\r\nX-Backend: refusing\r\n\r\nno such channel',
  '/deny/chunked': 'HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nchunky\r\n8\r\n refusal\r\n0\r\n\r\n',
  '/deny/close': 'HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\nbody ends at close',
  '/deny/bad-accept': 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: bm90IHRoZSByaWdodCBrZXk=\r\n\r\n',
};

/** A plain HTTP server that answers every upgrade with the raw bytes of REFUSALS[path]. */
async function startRefusingBackend(): Promise<{ server: HttpServer; port: number; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const server = createHttpServer((_req, res) => res.writeHead(500).end());
  server.on('upgrade', (req: IncomingMessage, socket: Socket) => {
    const answer = REFUSALS[req.url ?? ''] ?? 'HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n';
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    // Read (and drop) whatever comes, so that Sluice's FIN is seen and the socket closes.
    socket.resume();
    if (req.url === '/deny/close' || req.url === '/deny/bad-accept') socket.end(answer);
    else socket.write(answer);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port, sockets };
}

/** A TCP server that accepts and never says a word. */
async function startSilentBackend(): Promise<{ server: NetServer; port: number; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const server = createNetServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
    socket.resume();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port, sockets };
}

describe('upgrade', () => {
  let echo: TestBackend | undefined;
  let refusing: { server: HttpServer; port: number; sockets: Set<Socket> } | undefined;
  let silent: { server: NetServer; port: number; sockets: Set<Socket> } | undefined;
  let sluice: SluiceProcess | undefined;
  let dead: number[] = [];

  before(async () => {
    echo = await startBackend(undefined, {
      handleProtocols: (offered: Set<string>) => (offered.has('chat.v2') ? 'chat.v2' : offered.values().next().value ?? false),
    });
    refusing = await startRefusingBackend();
    silent = await startSilentBackend();
    // Ports that were free a moment ago and that nothing listens on: connecting is refused.
    dead = [await freePort(), await freePort(), await freePort(), await freePort()];
    sluice = await startSluice(`entryPoints:
  web:
    address: "127.0.0.1:{PORT}"
websocket:
  handshakeTimeout: 1s
http:
  routers:
    app:
      rule: "PathPrefix(\`/app\`)"
      service: app
    nohost:
      rule: "PathPrefix(\`/nohost\`)"
      service: nohost
    deny:
      rule: "PathPrefix(\`/deny\`)"
      service: deny
    retry:
      rule: "PathPrefix(\`/retry\`)"
      service: retry
    alldead:
      rule: "PathPrefix(\`/alldead\`)"
      service: gone
    silent:
      rule: "PathPrefix(\`/silent\`)"
      service: silent
  services:
    app:
      loadBalancer:
        servers:
          - url: "${echo.url}"
    nohost:
      loadBalancer:
        passHostHeader: false
        servers:
          - url: "${echo.url}"
    deny:
      loadBalancer:
        servers:
          - url: "http://127.0.0.1:${refusing.port}"
    retry:
      loadBalancer:
        servers:
          - url: "ws://127.0.0.1:${dead[0]}"
          - url: "ws://127.0.0.1:${dead[1]}"
          - url: "${echo.url}"
    gone:
      loadBalancer:
        servers:
          - url: "ws://127.0.0.1:${dead[2]}"
          - url: "ws://127.0.0.1:${dead[3]}"
    silent:
      loadBalancer:
        servers:
          - url: "ws://127.0.0.1:${silent.port}"
`,
      { timeoutMs: 20_000 },
    );
  });
  afterEach(closeAllPeers);
  after(async () => {
    closeAllPeers();
    await sluice?.stop();
    await echo?.close();
    for (const socket of refusing?.sockets ?? []) socket.destroy();
    await new Promise((resolve) => (refusing ? refusing.server.close(resolve) : resolve(undefined)));
    for (const socket of silent?.sockets ?? []) socket.destroy();
    await new Promise((resolve) => (silent ? silent.server.close(resolve) : resolve(undefined)));
  });

  /** The request with this exact url that reached the echo backend. */
  async function requestAtBackend(url: string): Promise<IncomingMessage> {
    await until(() => echo!.requests.some((r) => r.url === url), 2000, () => `no request for ${url} at the backend; got ${echo!.requests.map((r) => r.url).join(' ')}`);
    return echo!.requests.findLast((r) => r.url === url)!;
  }

  /** Expect the upgrade to be refused; returns what the client got. */
  async function refused(path: string, options: Parameters<typeof connect>[1] = {}): Promise<UpgradeRefused> {
    try {
      await connect(sluice!.url + path, options);
    } catch (error) {
      if (error instanceof UpgradeRefused) return error;
      throw error;
    }
    assert.fail(`the upgrade of ${path} succeeded`);
  }

  describe('what reaches the backend', () => {
    test('the subprotocol the backend chose reaches the client', async () => {
      const client = await connect(`${sluice!.url}/app/proto`, { protocols: ['chat.v1', 'chat.v2'] });
      assert.equal(client.ws.protocol, 'chat.v2');
      const req = await requestAtBackend('/app/proto');
      assert.equal(req.headers['sec-websocket-protocol'], 'chat.v1,chat.v2', 'the offer reached the backend as sent');
      await client.send('hi');
      assert.equal((await client.next()).data.toString(), 'hi');
    });

    const paths = [
      '/app/plain',
      '/app/a%20b/%2F/%E2%82%AC/x',
      '/app//double//slashes/',
      '/app/q?a=1+2&a=%2F&a=&b=%26%3D',
      '/app/q?',
      '/app/dots/../../x/./y',
      "/app/sub-delims;p=1,2!$'()*@:~",
      '/app/case%2f%2F?UPPER=lower&Empty',
    ];
    for (const path of paths) {
      test(`path and query reach the backend byte for byte: ${path}`, async () => {
        const answer = await rawRequest(sluice!.port, upgradeRequest(path));
        assert.equal(answer.status, 101, answer.raw);
        assert.equal((await requestAtBackend(path)).url, path);
      });
    }

    test('end-to-end request headers reach the backend as sent', async () => {
      const client = await connect(`${sluice!.url}/app/headers`, {
        origin: 'https://chat.example',
        headers: {
          Cookie: 'session=abc123; theme=dark',
          Authorization: 'Bearer eyJhbGciOi.x.y',
          'X-Custom': 'value, with; punctuation "quoted"',
          'User-Agent': 'sluice-test/1.0',
        },
      });
      const req = await requestAtBackend('/app/headers');
      assert.equal(req.headers.origin, 'https://chat.example');
      assert.equal(req.headers.cookie, 'session=abc123; theme=dark');
      assert.equal(req.headers.authorization, 'Bearer eyJhbGciOi.x.y');
      assert.equal(req.headers['x-custom'], 'value, with; punctuation "quoted"');
      assert.equal(req.headers['user-agent'], 'sluice-test/1.0');
      await client.send('x');
      await client.next();
    });

    test('a header sent twice reaches the backend twice', async () => {
      const answer = await rawRequest(sluice!.port, upgradeRequest('/app/twice', 'X-Multi: one\r\nX-Multi: two\r\n'));
      assert.equal(answer.status, 101, answer.raw);
      const req = await requestAtBackend('/app/twice');
      const values = req.rawHeaders.filter((_, i) => i % 2 === 1 && req.rawHeaders[i - 1]!.toLowerCase() === 'x-multi');
      assert.deepEqual(values, ['one', 'two']);
    });

    test('X-Forwarded-For/-Proto/-Host/-Port are set, and forged ones replaced', async () => {
      const client = await connect(`${sluice!.url}/app/forwarded`, {
        localAddress: '127.0.0.3',
        headers: {
          'X-Forwarded-For': '6.6.6.6',
          'X-Forwarded-Proto': 'https',
          'X-Forwarded-Host': 'evil.example',
          'X-Forwarded-Port': '1',
          'X-Real-Ip': '6.6.6.6',
        },
      });
      const req = await requestAtBackend('/app/forwarded');
      assert.equal(req.headers['x-forwarded-for'], '127.0.0.3');
      assert.equal(req.headers['x-forwarded-proto'], 'ws');
      assert.equal(req.headers['x-forwarded-host'], `127.0.0.1:${sluice!.port}`);
      assert.equal(req.headers['x-forwarded-port'], String(sluice!.port));
      assert.equal(req.headers['x-real-ip'], '127.0.0.3');
      const forwardedFor = req.rawHeaders.filter((_, i) => i % 2 === 0).filter((name) => name.toLowerCase() === 'x-forwarded-for');
      assert.equal(forwardedFor.length, 1, 'one X-Forwarded-For, not the forged one as well');
      client.ws.close();
    });

    test('hop-by-hop headers, and headers named in Connection, are not forwarded', async () => {
      const extra =
        'Keep-Alive: timeout=5\r\nProxy-Authorization: Basic c2VjcmV0\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n' +
        'X-Hop: drop me\r\nX-Keep: keep me\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n';
      const request = upgradeRequest('/app/hop', extra).replace('Connection: Upgrade\r\n', 'Connection: Upgrade, X-Hop\r\n');
      const answer = await rawRequest(sluice!.port, request);
      assert.equal(answer.status, 101, answer.raw);
      const req = await requestAtBackend('/app/hop');
      for (const name of ['keep-alive', 'proxy-authorization', 'proxy-connection', 'te', 'x-hop', 'sec-websocket-extensions']) {
        assert.equal(req.headers[name], undefined, `${name} was forwarded`);
      }
      assert.equal(req.headers['x-keep'], 'keep me');
      assert.equal(req.headers.connection?.toLowerCase(), 'upgrade');
      assert.equal(req.headers.upgrade?.toLowerCase(), 'websocket');
    });

    test('passHostHeader (default true) forwards the Host the client sent', async () => {
      const answer = await rawRequest(sluice!.port, upgradeRequest('/app/host', '', 'chat.example:8443'));
      assert.equal(answer.status, 101, answer.raw);
      assert.equal((await requestAtBackend('/app/host')).headers.host, 'chat.example:8443');
    });

    test("passHostHeader: false gives the backend its own host and port", async () => {
      const answer = await rawRequest(sluice!.port, upgradeRequest('/nohost/x', '', 'chat.example:8443'));
      assert.equal(answer.status, 101, answer.raw);
      const req = await requestAtBackend('/nohost/x');
      assert.equal(req.headers.host, `127.0.0.1:${echo!.port}`);
      assert.equal(req.headers['x-forwarded-host'], 'chat.example:8443');
    });
  });

  describe('a backend that refuses the upgrade', () => {
    test('403 reaches the client with its body', async () => {
      const answer = await refused('/deny/403');
      assert.equal(answer.status, 403);
      assert.equal(answer.body, 'no entry for you, sorr');
      assert.equal(answer.headers['content-type'], 'text/plain');
    });

    test('401 reaches the client with its body and WWW-Authenticate', async () => {
      const answer = await refused('/deny/401');
      assert.equal(answer.status, 401);
      assert.equal(answer.body, '{"error":"token expired"}');
      assert.equal(answer.headers['www-authenticate'], 'Bearer realm="chat"');
    });

    test('404 reaches the client with its body and headers', async () => {
      const answer = await refused('/deny/404');
      assert.equal(answer.status, 404);
      assert.equal(answer.body, 'no such channel');
      assert.equal(answer.headers['x-backend'], 'refusing');
    });

    test('a chunked body is relayed whole', async () => {
      const answer = await refused('/deny/chunked');
      assert.equal(answer.status, 403);
      assert.equal(answer.body, 'chunky refusal');
    });

    test('a body that ends with the connection is relayed whole', async () => {
      const answer = await refused('/deny/close');
      assert.equal(answer.status, 403);
      assert.equal(answer.body, 'body ends at close');
    });

    test('a 101 with a wrong Sec-WebSocket-Accept is answered 502', async () => {
      const answer = await refused('/deny/bad-accept');
      assert.equal(answer.status, 502);
      assert.match(answer.body, /'deny'/);
    });
  });

  describe("Sluice's own answers", () => {
    test('no matching router: 404', async () => {
      const answer = await refused('/nowhere');
      assert.equal(answer.status, 404);
    });

    test('a dead backend is skipped: every client reaches the live one of the pool', async () => {
      for (let i = 0; i < 6; i++) {
        const client = await connect(`${sluice!.url}/retry/${i}`);
        await client.send(`retry ${i}`);
        assert.equal((await client.next()).data.toString(), `retry ${i}`);
        client.ws.close();
        await client.waitClose();
      }
    });

    test('every backend dead: 502 with a body naming the service', async () => {
      const answer = await refused('/alldead');
      assert.equal(answer.status, 502);
      assert.match(answer.body, /service 'gone'/);
    });

    test('a backend that accepts and never answers: 504 after the handshake timeout, naming the service', async () => {
      const started = Date.now();
      const answer = await refused('/silent', { handshakeTimeout: 10_000 });
      const elapsed = Date.now() - started;
      assert.equal(answer.status, 504);
      assert.match(answer.body, /service 'silent'/);
      assert.ok(elapsed >= 900 && elapsed < 2500, `answered after ${elapsed} ms (handshakeTimeout is 1 s)`);
      await until(() => silent!.sockets.size === 0, 2000, 'Sluice left its connection to the silent backend open');
    });

    test('a missing Sec-WebSocket-Key: 400', async () => {
      const answer = await rawRequest(sluice!.port, upgradeRequest('/app/nokey').replace(/Sec-WebSocket-Key: .*\r\n/, ''));
      assert.equal(answer.status, 400, answer.raw);
    });

    test('an invalid Sec-WebSocket-Key: 400', async () => {
      const answer = await rawRequest(sluice!.port, upgradeRequest('/app/badkey').replace(/Sec-WebSocket-Key: .*\r\n/, 'Sec-WebSocket-Key: c2hvcnQ=\r\n'));
      assert.equal(answer.status, 400, answer.raw);
    });

    test('a Sec-WebSocket-Key of the right length that is not base64: 400', async () => {
      const answer = await rawRequest(sluice!.port, upgradeRequest('/app/badkey24').replace(/Sec-WebSocket-Key: .*\r\n/, 'Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!==\r\n'));
      assert.equal(answer.status, 400, answer.raw);
    });

    test('an unsupported Sec-WebSocket-Version: 426 naming version 13', async () => {
      const answer = await rawRequest(sluice!.port, upgradeRequest('/app/v8').replace('Sec-WebSocket-Version: 13', 'Sec-WebSocket-Version: 8'));
      assert.equal(answer.status, 426, answer.raw);
      assert.equal(answer.headers.get('sec-websocket-version'), '13');
    });

    test('a plain HTTP GET on a route is proxied to the backend (a ws server, which answers 426 itself)', async () => {
      const answer = await rawRequest(sluice!.port, 'GET /app/page HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
      assert.equal(answer.status, 426, answer.raw);
      assert.doesNotMatch(answer.body, /Sluice|not implemented/);
    });

    test('none of the refused requests reached the echo backend', () => {
      for (const url of ['/app/nokey', '/app/badkey', '/app/badkey24', '/app/v8', '/app/page']) {
        assert.ok(!echo!.requests.some((r) => r.url === url), `${url} reached the backend`);
      }
    });
  });
});
