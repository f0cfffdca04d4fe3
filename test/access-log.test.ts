/**
 * The access log: one JSON line per closed WebSocket connection in accessLog.filePath, written by the
 * primary from batches the workers send (two workers here), with the client, route, backend, duration,
 * messages and bytes each way, the close code and which side closed; and one line per refused upgrade
 * or unrouted request, with its status, reason and router.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import type { WebSocket } from 'ws';
import { freePort, simpleConfig, startBackend, startSluice, type SluiceProcess, type TestBackend } from './helpers/sluice.js';
import { reach, startPoolBackend, type PoolBackend } from './helpers/pool.js';
import { connect, closed, terminateAll } from './helpers/clients.js';
import { waitFor } from './helpers/wait.js';

interface AccessLine {
  readonly time: string;
  readonly kind: string;
  readonly ClientHost: string;
  readonly EntryPointName: string;
  readonly RouterName: string;
  readonly ServiceName: string;
  readonly ServiceURL: string;
  readonly Duration: number;
  readonly DurationMs: number;
  readonly ClientToBackendMessages: number;
  readonly ClientToBackendBytes: number;
  readonly BackendToClientMessages: number;
  readonly BackendToClientBytes: number;
  readonly CloseCode: number;
  readonly ClosedBy: string;
  readonly worker: number;
}

describe('access log', () => {
  let sluice: SluiceProcess | undefined;
  let backend: TestBackend | undefined;
  const clients: WebSocket[] = [];
  after(async () => {
    terminateAll(clients);
    await sluice?.stop();
    await backend?.close();
  });

  test('one JSON line per closed connection, with who closed and the traffic each way', async () => {
    backend = await startBackend((ws) =>
      ws.on('message', (data) => (data.toString() === 'close-me' ? ws.close(4002, 'bye') : ws.send(data))),
    );
    sluice = await startSluice(simpleConfig([backend.url], 'accessLog:\n  filePath: "{DIR}/access.log"\n  format: json\n'), { workers: 2 });
    const file = path.join(path.dirname(sluice.configFile), 'access.log');

    // Client closes with 1000 after two echoed messages of 5 bytes.
    const first = await connect(`${sluice.url}/a?x=1`);
    clients.push(first);
    const echoed = new Promise<void>((resolve) => {
      let n = 0;
      first.on('message', () => ++n === 2 && resolve());
    });
    first.send('hello');
    first.send('world');
    await echoed;
    first.close(1000);
    await closed(first);
    // The backend closes with 4002 after one message of 8 bytes.
    const second = await connect(`${sluice.url}/b`);
    clients.push(second);
    second.send('close-me');
    assert.equal((await closed(second)).code, 4002);

    const lines = (): AccessLine[] =>
      existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as AccessLine) : [];
    await waitFor('two access-log lines', () => lines().length === 2, () => JSON.stringify(lines()), { timeoutMs: 5000, intervalMs: 50 });
    const byClose = lines().sort((a, b) => a.CloseCode - b.CloseCode);
    const common = {
      kind: 'websocket',
      ClientHost: '127.0.0.1',
      EntryPointName: 'web',
      RouterName: 'all',
      ServiceName: 'pool',
      ServiceURL: backend.url,
    };
    const [byClient, byBackend] = byClose as [AccessLine, AccessLine];
    assert.deepEqual(pick(byClient), {
      ...common,
      ClientToBackendMessages: 2,
      ClientToBackendBytes: 10,
      BackendToClientMessages: 2,
      BackendToClientBytes: 10,
      CloseCode: 1000,
      ClosedBy: 'client',
    });
    assert.deepEqual(pick(byBackend), {
      ...common,
      ClientToBackendMessages: 1,
      ClientToBackendBytes: 8,
      BackendToClientMessages: 0,
      BackendToClientBytes: 0,
      CloseCode: 4002,
      ClosedBy: 'backend',
    });
    for (const line of byClose) {
      assert.ok(line.DurationMs >= 0 && line.DurationMs < 5000, `duration ${line.DurationMs} ms`);
      assert.equal(line.Duration, line.DurationMs * 1e6);
      assert.ok(Math.abs(Date.parse(line.time) - Date.now()) < 10_000, `time ${line.time}`);
      assert.ok(line.worker === 0 || line.worker === 1);
    }
  });
});

interface RejectedLine {
  readonly kind: string;
  readonly ClientHost: string;
  readonly EntryPointName: string;
  readonly RouterName: string;
  readonly ServiceName: string;
  readonly ServiceURL: string;
  readonly RequestMethod: string;
  readonly RequestHost: string;
  readonly RequestPath: string;
  readonly DownstreamStatus: number;
  readonly RejectReason: string;
  readonly DurationMs: number;
}

/** An upgrade request with the given WebSocket headers; resolves with the status of the answer. */
function rawUpgrade(port: number, pathAndQuery: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const request = http.get({ host: '127.0.0.1', port, path: pathAndQuery, headers: { connection: 'Upgrade', upgrade: 'websocket', ...headers } });
    request.on('response', (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    request.on('upgrade', (_res, socket) => {
      socket.destroy();
      resolve(101);
    });
    request.on('error', reject);
  });
}

describe('access log of refused requests', () => {
  let sluice: SluiceProcess | undefined;
  let refusing: PoolBackend | undefined;
  after(async () => {
    await sluice?.stop();
    await refusing?.kill();
  });

  test('each refused upgrade and unrouted request has a line with its status, reason and router', async () => {
    refusing = await startPoolBackend('refusing');
    refusing.refuseWith = 403;
    const closed = await freePort();
    sluice = await startSluice(`entryPoints:
  web: { address: "127.0.0.1:{PORT}" }
http:
  routers:
    chat: { rule: "PathPrefix(\`/chat\`)", service: chat }
    dead: { rule: "PathPrefix(\`/dead\`)", service: dead }
    down: { rule: "PathPrefix(\`/down\`)", service: down }
    private: { rule: "PathPrefix(\`/private\`)", service: chat, middlewares: [ auth ] }
  middlewares:
    auth: { basicAuth: { users: [ "sha:{SHA}${createHash('sha1').update('secret').digest('base64')}" ] } }
  services:
    chat: { loadBalancer: { servers: [ { url: "${refusing.url}" } ] } }
    dead: { loadBalancer: { servers: [ { url: "ws://127.0.0.1:${closed}" } ] } }
    down:
      loadBalancer:
        servers: [ { url: "ws://127.0.0.1:${closed}" } ]
        healthCheck: { path: /health, interval: 50ms, fall: 1 }
accessLog:
  filePath: "{DIR}/access.log"
`, { workers: 2 });
    await waitFor('service down to be marked down', () => /is down/.test(sluice!.stderr()));
    const port = sluice.port;
    const key = 'dGhlIHNhbXBsZSBub25jZQ==';
    const expected: [string, number, string, string, string][] = [];
    const expect = async (status: Promise<number>, line: [string, number, string, string, string]): Promise<void> => {
      assert.equal(await status, line[1], `${line[0]} ${line[2]}`);
      expected.push(line);
    };
    // [RequestPath, DownstreamStatus, RouterName, RejectReason, kind]
    await expect(rawUpgrade(port, '/nowhere', { 'sec-websocket-version': '13', 'sec-websocket-key': key }), ['/nowhere', 404, '', 'no router matched', 'websocket_rejected']);
    await expect(fetch(`http://127.0.0.1:${port}/nowhere?q=1`).then((r) => r.status), ['/nowhere?q=1', 404, '', 'no router matched', 'http']);
    await expect(rawUpgrade(port, '/chat/old', { 'sec-websocket-version': '8', 'sec-websocket-key': key }), ['/chat/old', 426, 'chat', 'unsupported WebSocket version (expected Sec-WebSocket-Version: 13)', 'websocket_rejected']);
    await expect(rawUpgrade(port, '/chat/badkey', { 'sec-websocket-version': '13', 'sec-websocket-key': '!'.repeat(22) + '==' }), ['/chat/badkey', 400, 'chat', 'invalid WebSocket handshake: Sec-WebSocket-Key must be 16 bytes in base64', 'websocket_rejected']);
    await expect(reach(`${sluice.url}/dead`).then((a) => ('status' in a ? a.status : 101)), ['/dead', 502, 'dead', "no backend of service 'dead' accepted the connection", 'websocket_rejected']);
    await expect(reach(`${sluice.url}/down`).then((a) => ('status' in a ? a.status : 101)), ['/down', 503, 'down', "no backend available for service 'down'", 'websocket_rejected']);
    await expect(reach(`${sluice.url}/private`).then((a) => ('status' in a ? a.status : 101)), ['/private', 401, 'private', "a middleware of router 'private' answered", 'websocket_rejected']);
    await expect(reach(`${sluice.url}/chat/in`).then((a) => ('status' in a ? a.status : 101)), ['/chat/in', 403, 'chat', 'the backend answered the upgrade with 403', 'websocket_rejected']);

    const file = path.join(sluice.dir, 'access.log');
    const lines = (): RejectedLine[] =>
      existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as RejectedLine) : [];
    await waitFor('a line per refusal', () => lines().length === expected.length, () => JSON.stringify(lines()), { timeoutMs: 5000, intervalMs: 50 });
    const seen = lines().map((l) => [l.RequestPath, l.DownstreamStatus, l.RouterName, l.RejectReason, l.kind]);
    assert.deepEqual(seen.sort(), [...expected].sort());
    for (const line of lines()) {
      assert.equal(line.ClientHost, '127.0.0.1');
      assert.equal(line.EntryPointName, 'web');
      assert.equal(line.RequestMethod, 'GET');
      assert.equal(line.RequestHost, '127.0.0.1');
      assert.equal(line.ServiceName, line.RouterName === 'private' ? 'chat' : line.RouterName, 'the service of the router, when one matched');
      assert.equal(line.ServiceURL, line.RequestPath === '/chat/in' ? refusing.url : line.RequestPath === '/dead' ? `ws://127.0.0.1:${closed}` : '');
      assert.ok(line.DurationMs >= 0 && line.DurationMs < 5000);
    }
  });
});

function pick(line: AccessLine): Omit<AccessLine, 'time' | 'Duration' | 'DurationMs' | 'worker'> {
  const { time: _time, Duration: _duration, DurationMs: _ms, worker: _worker, ...rest } = line;
  return rest;
}
