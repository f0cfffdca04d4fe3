/**
 * /metrics after a known workload over two worker threads: every count exact. Connections are opened
 * until both workers hold some (the kernel spreads accepts by SO_REUSEPORT), so the figures are sums of
 * two slabs. The workload covers upgrades, messages both ways, client closes with two codes, a backend's
 * close, a backend's 403, a dead backend, an empty pool (no_backend) and a backend that dies mid-connection.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { WebSocket } from 'ws';
import { TOTALS, Total } from '../src/shared/layout.js';
import { WORKER_YOUNG_GENERATION_MB } from '../src/primary/supervisor.js';
import { REPO, freePort, simpleConfig, startBackend, type TestBackend } from './helpers/sluice.js';
import { connect, tryUpgrade, closed, terminateAll } from './helpers/clients.js';
import { workerHolds } from './helpers/in-process.js';
import { waitFor } from './helpers/wait.js';
import { get, parsePrometheus, sampleSum, sampleValue, startWithAdmin, type AdminSluice, type Sample } from './helpers/admin.js';

const PAYLOAD = 'abcdefghij'; // 10 bytes
const PER_CONNECTION = 3;

/** Echoes, except 'close-me' (the backend closes with 4002) and 'die' (the backend vanishes). */
function scriptedEcho(ws: WebSocket): void {
  ws.on('message', (data, isBinary) => {
    const text = data.toString();
    if (text === 'close-me') ws.close(4002, 'bye');
    else if (text === 'die') ws.terminate();
    else ws.send(data, { binary: isBinary });
  });
}

describe('/metrics counts a known workload exactly, summed over two workers', () => {
  let sluice: AdminSluice | undefined;
  const backends: TestBackend[] = [];
  const clients: WebSocket[] = [];
  let echoA: TestBackend, echoB: TestBackend, rejecting: TestBackend, idle: TestBackend, fragile: TestBackend;
  let deadUrl = '';

  before(async () => {
    echoA = await startBackend(scriptedEcho);
    echoB = await startBackend(scriptedEcho);
    rejecting = await startBackend(undefined, {
      verifyClient: (_info: unknown, done: (ok: boolean, code?: number, message?: string) => void) => done(false, 403, 'Forbidden'),
    });
    idle = await startBackend();
    fragile = await startBackend(scriptedEcho);
    backends.push(echoA, echoB, rejecting, idle, fragile);
    deadUrl = `ws://127.0.0.1:${await freePort()}`;
    sluice = await startWithAdmin(
      `entryPoints:
  web: { address: "127.0.0.1:{PORT}" }
http:
  routers:
    echo: { rule: "PathPrefix(\`/echo\`)", service: echo }
    reject: { rule: "PathPrefix(\`/reject\`)", service: reject }
    dead: { rule: "PathPrefix(\`/dead\`)", service: dead }
    down: { rule: "PathPrefix(\`/down\`)", service: down }
    fragile: { rule: "PathPrefix(\`/fragile\`)", service: fragile }
  services:
    echo: { loadBalancer: { servers: [ { url: "${echoA.url}" }, { url: "${echoB.url}" } ] } }
    reject: { loadBalancer: { servers: [ { url: "${rejecting.url}" } ] } }
    dead: { loadBalancer: { servers: [ { url: "${deadUrl}" } ], retries: 0 } }
    down: { loadBalancer: { servers: [ { url: "${idle.url}" } ] } }
    fragile: { loadBalancer: { servers: [ { url: "${fragile.url}" } ] } }
`,
      2,
    );
  });

  after(async () => {
    terminateAll(clients);
    await sluice?.stop();
    await Promise.all(backends.map((b) => b.close()));
  });

  test('upgrades, messages, closes, rejections and failures', async () => {
    const s = sluice!;
    // Echo connections until each worker holds at least two.
    const echo: WebSocket[] = [];
    while (workerHolds(s.shared, 0) < 2 || workerHolds(s.shared, 1) < 2) {
      assert.ok(echo.length < 60, 'the kernel never gave worker 0 and worker 1 two connections each');
      const ws = await connect(`${s.url}/echo`);
      echo.push(ws);
      clients.push(ws);
      await waitFor('the connection to be counted', () => workerHolds(s.shared, 0) + workerHolds(s.shared, 1) === echo.length);
    }
    const n = echo.length;
    for (const ws of echo) {
      const replies = new Promise<void>((resolve) => {
        let got = 0;
        ws.on('message', () => ++got === PER_CONNECTION && resolve());
      });
      for (let i = 0; i < PER_CONNECTION; i++) ws.send(PAYLOAD);
      await replies;
    }
    // One more echo connection that the backend closes (4002).
    const closedByBackend = await connect(`${s.url}/echo`);
    clients.push(closedByBackend);
    closedByBackend.send('close-me');
    assert.equal((await closed(closedByBackend)).code, 4002);
    // Client closes: even ones 1000, odd ones 4001.
    echo.forEach((ws, i) => ws.close(i % 2 === 0 ? 1000 : 4001));
    await Promise.all(echo.map((ws) => closed(ws)));

    // A backend that refuses, a dead backend, an empty pool.
    const refused = await tryUpgrade(`${s.url}/reject`);
    assert.equal(refused.kind === 'refused' && refused.status, 403);
    const failed = await tryUpgrade(`${s.url}/dead`);
    assert.equal(failed.kind === 'refused' && failed.status, 502);
    const downIndex = s.snapshot.backends.find((b) => b.port === idle.port)!.index;
    Atomics.store(s.shared.backendUp, downIndex, 0);
    const none = await tryUpgrade(`${s.url}/down`);
    assert.equal(none.kind === 'refused' && none.status, 503);
    // Requests no router matches, counted by the entry point they came in on.
    assert.equal((await fetch(`http://127.0.0.1:${s.port}/nowhere`)).status, 404);
    const stray = await tryUpgrade(`${s.url}/nowhere`);
    assert.equal(stray.kind === 'refused' && stray.status, 404);
    // A backend that dies under an open connection: the client gets 1011.
    const orphan = await connect(`${s.url}/fragile`);
    clients.push(orphan);
    orphan.send('die');
    assert.equal((await closed(orphan)).code, 1011);

    // Both workers counted part of it.
    for (const w of [0, 1]) assert.ok(s.shared.workerTotals[w * TOTALS + Total.Upgraded]! >= 2, `worker ${w} upgraded fewer than 2`);

    const scrape = async (): Promise<Sample[]> => {
      const answer = await get(`${s.adminUrl}/metrics`);
      assert.equal(answer.status, 200);
      assert.match(answer.type, /^text\/plain/);
      return parsePrometheus(answer.text);
    };
    let samples = await scrape();
    const settled = (): boolean => sampleSum(samples, 'websocket_closes_total') === n + 2 && sampleSum(samples, 'websocket_connections_active') === 0;
    for (let i = 0; i < 100 && !settled(); i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      samples = await scrape();
    }
    const v = (name: string, labels: Record<string, string> = {}): number => sampleValue(samples, name, labels);
    const sum = (name: string, labels: Record<string, string> = {}): number => sampleSum(samples, name, labels);

    // Connections by outcome.
    assert.equal(sum('websocket_connections_total', { router: 'echo', outcome: 'upgraded' }), n + 1);
    assert.equal(sum('websocket_connections_total', { router: 'echo', backend: echoA.url, outcome: 'upgraded' }), echoA.requests.length);
    assert.equal(sum('websocket_connections_total', { router: 'echo', backend: echoB.url, outcome: 'upgraded' }), echoB.requests.length);
    assert.equal(v('websocket_connections_total', { entrypoint: 'web', router: 'reject', service: 'reject', backend: rejecting.url, outcome: 'rejected_by_backend' }), 1);
    assert.equal(v('websocket_connections_total', { router: 'dead', service: 'dead', backend: deadUrl, outcome: 'connect_failed' }), 1);
    assert.equal(v('websocket_connections_total', { router: 'down', service: 'down', backend: '', outcome: 'no_backend' }), 1);
    assert.equal(v('websocket_connections_total', { router: 'fragile', backend: fragile.url, outcome: 'upgraded' }), 1);
    assert.equal(sum('websocket_connections_total', { outcome: 'upgraded' }), n + 2);
    assert.equal(sum('websocket_connections_total'), n + 2 + 3);
    assert.equal(sum('websocket_connections_active'), 0);

    // Messages and bytes, each way.
    assert.equal(sum('websocket_messages_total', { service: 'echo', direction: 'client_to_backend' }), n * PER_CONNECTION + 1);
    assert.equal(sum('websocket_messages_total', { service: 'echo', direction: 'backend_to_client' }), n * PER_CONNECTION);
    assert.equal(sum('websocket_bytes_total', { service: 'echo', direction: 'client_to_backend' }), n * PER_CONNECTION * 10 + 'close-me'.length);
    assert.equal(sum('websocket_bytes_total', { service: 'echo', direction: 'backend_to_client' }), n * PER_CONNECTION * 10);
    assert.equal(v('websocket_messages_total', { service: 'fragile', direction: 'client_to_backend' }), 1);
    assert.equal(v('websocket_bytes_total', { service: 'fragile', direction: 'client_to_backend' }), 3);

    // Closes: who started them, with which code (4001 and 4002 fall in the 4xxx bucket).
    assert.equal(v('websocket_closes_total', { service: 'echo', side: 'client', code: '1000' }), Math.ceil(n / 2));
    assert.equal(v('websocket_closes_total', { service: 'echo', side: 'client', code: '4xxx' }), Math.floor(n / 2));
    assert.equal(v('websocket_closes_total', { service: 'echo', side: 'backend', code: '4xxx' }), 1);
    assert.equal(v('websocket_closes_total', { service: 'fragile', side: 'backend', code: '1006' }), 1);
    assert.equal(sum('websocket_closes_total'), n + 2);

    // Errors, per attempt and reason.
    assert.equal(v('websocket_errors_total', { service: 'dead', backend: deadUrl, reason: 'connect_refused' }), 1);
    assert.equal(v('websocket_errors_total', { service: 'fragile', backend: fragile.url, reason: 'backend_lost' }), 1);
    assert.equal(sum('websocket_errors_total'), 2);

    // Histograms: one upgrade and one lifetime per upgraded connection.
    assert.equal(v('websocket_upgrade_duration_seconds_count', { service: 'echo' }), n + 1);
    assert.equal(v('websocket_upgrade_duration_seconds_bucket', { service: 'echo', le: '+Inf' }), n + 1);
    assert.equal(v('websocket_connection_duration_seconds_count', { service: 'echo' }), n + 1);
    assert.equal(v('websocket_connection_duration_seconds_count', { service: 'fragile' }), 1);
    assert.equal(v('websocket_upgrade_duration_seconds_count', { service: 'reject' }), 0);
    assert.ok(v('websocket_upgrade_duration_seconds_sum', { service: 'echo' }) > 0);

    // Backend health, reloads, workers, process metrics.
    assert.equal(v('sluice_backend_up', { service: 'down', backend: idle.url }), 0);
    assert.equal(v('sluice_backend_up', { service: 'echo', backend: echoA.url }), 1);
    assert.equal(v('sluice_config_reloads_total', { result: 'success' }), 0);
    assert.equal(v('sluice_unrouted_requests_total', { entrypoint: 'web' }), 2);
    assert.equal(sum('sluice_unrouted_requests_total'), 2);
    assert.equal(samples.filter((x) => x.name === 'sluice_worker_event_loop_lag_seconds').length, 2);
    assert.ok(v('process_cpu_user_seconds_total') > 0);
  });

  test('the JSON API reports the same counts, each backend with its state', async () => {
    const s = sluice!;
    const json = async (path: string): Promise<unknown> => {
      const answer = await get(`${s.adminUrl}${path}`);
      assert.equal(answer.status, 200, `${path}: ${answer.text}`);
      assert.match(answer.type, /^application\/json/);
      return JSON.parse(answer.text) as unknown;
    };
    type Counted = { active: number; connections: Record<string, number>; messages: Record<string, number>; errors: Record<string, number> };
    const backends = (await json('/api/backends')) as (Counted & { service: string; url: string; state: string; healthy: boolean })[];
    const of = (url: string): Counted & { state: string } => backends.find((b) => b.url === url)!;
    assert.equal(of(echoA.url).connections.upgraded + of(echoB.url).connections.upgraded, echoA.requests.length + echoB.requests.length);
    assert.equal(of(idle.url).state, 'down');
    assert.equal(of(echoA.url).state, 'up');
    assert.equal(of(deadUrl).errors.connect_refused, 1);
    assert.equal(of(fragile.url).errors.backend_lost, 1);
    assert.equal(of(rejecting.url).connections.rejected_by_backend, 1);
    for (const b of backends) assert.equal(b.active, 0);
    const services = (await json('/api/services')) as (Counted & { name: string; backends: { url: string; state: string }[] })[];
    const down = services.find((x) => x.name === 'down')!;
    assert.equal(down.connections.no_backend, 1);
    assert.deepEqual(down.backends, [{ url: idle.url, state: 'down' }]);
    const echo = services.find((x) => x.name === 'echo')!;
    assert.equal(echo.messages.clientToBackend, echo.messages.backendToClient + 1);
    const routers = (await json('/api/routers')) as (Counted & { name: string; service: string; entryPoints: string[] })[];
    assert.deepEqual(
      routers.map((r) => [r.name, r.service, r.entryPoints]).sort(),
      [['dead', 'dead', ['web']], ['down', 'down', ['web']], ['echo', 'echo', ['web']], ['fragile', 'fragile', ['web']], ['reject', 'reject', ['web']]],
    );
    const overview = (await json('/api/overview')) as Counted & { ready: boolean; workers: { running: boolean; youngGenerationMb: number | null }[] };
    assert.equal(overview.ready, true);
    assert.deepEqual(overview.workers.map((w) => w.running), [true, true]);
    // Sluice sizes each worker's young generation (supervisor.ts) unless NODE_OPTIONS does.
    assert.deepEqual(overview.workers.map((w) => w.youngGenerationMb), [WORKER_YOUNG_GENERATION_MB, WORKER_YOUNG_GENERATION_MB]);
    assert.equal(overview.connections.upgraded, echoA.requests.length + echoB.requests.length + 1);
    const missing = await get(`${s.adminUrl}/api/nothing`);
    assert.equal(missing.status, 404);
    assert.match(missing.text, /no such page '\/api\/nothing'/);
    const post = await fetch(`${s.adminUrl}/metrics`, { method: 'POST' });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get('allow'), 'GET, HEAD');
  });

  test('every metric the Grafana dashboard queries is exported', async () => {
    const text = (await get(`${sluice!.adminUrl}/metrics`)).text;
    const exported = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!));
    const dashboard = JSON.parse(readFileSync(path.join(REPO, 'config/grafana/sluice-dashboard.json'), 'utf8')) as {
      panels: { title: string; targets: { expr: string }[] }[];
    };
    const queried = new Set<string>();
    for (const panel of dashboard.panels) {
      assert.ok(panel.targets.length > 0, `panel '${panel.title}' has a query`);
      for (const target of panel.targets) {
        for (const [name] of target.expr.matchAll(/\b(?:websocket|sluice|process|http)_[a-z_]+/g)) queried.add(name.replace(/_(bucket|sum|count)$/, ''));
      }
    }
    for (const name of queried) assert.ok(exported.has(name), `the dashboard queries ${name}, which /metrics does not export`);
    for (const name of ['websocket_connections_active', 'websocket_connections_total', 'websocket_messages_total', 'websocket_errors_total', 'http_requests_total', 'http_request_duration_seconds']) {
      assert.ok(queried.has(name), `the dashboard shows ${name}`);
    }
  });
});

describe('counters survive a worker crash', () => {
  let sluice: AdminSluice | undefined;
  let backend: TestBackend | undefined;
  const clients: WebSocket[] = [];
  after(async () => {
    terminateAll(clients);
    await sluice?.stop();
    await backend?.close();
  });

  test('a restarted worker\'s counts are kept, its live connections are not', async () => {
    backend = await startBackend();
    sluice = await startWithAdmin(simpleConfig([backend.url]), 2);
    const s = sluice;
    const echo: WebSocket[] = [];
    while (workerHolds(s.shared, 0) < 1 || workerHolds(s.shared, 1) < 1) {
      assert.ok(echo.length < 60, 'the kernel never gave both workers a connection');
      const ws = await connect(`${s.url}/`);
      echo.push(ws);
      clients.push(ws);
      await waitFor('the connection to be counted', () => workerHolds(s.shared, 0) + workerHolds(s.shared, 1) === echo.length);
    }
    for (const ws of echo) {
      const reply = new Promise((resolve) => ws.once('message', resolve));
      ws.send(PAYLOAD);
      await reply;
    }
    const scrape = async (): Promise<Sample[]> => parsePrometheus((await get(`${s.adminUrl}/metrics`)).text);
    const before = await scrape();
    assert.equal(sampleSum(before, 'websocket_connections_active'), echo.length);
    assert.equal(sampleSum(before, 'websocket_messages_total', { direction: 'client_to_backend' }), echo.length);
    const held = workerHolds(s.shared, 0);

    s.supervisor.injectFault(0, 'throw');
    await waitFor('worker 0 to be replaced and listen again', () => {
      const w = s.supervisor.workers()[0]!;
      return w.listening && workerHolds(s.shared, 0) === 0;
    }, undefined, { timeoutMs: 10_000 });
    // Worker 1's clients are still open; worker 0's were closed by its drain (1006 for the client, counted).
    let after = await scrape();
    for (let i = 0; i < 100 && sampleSum(after, 'websocket_connections_active') !== echo.length - held; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      after = await scrape();
    }
    assert.equal(sampleSum(after, 'websocket_connections_active'), echo.length - held);
    assert.equal(sampleSum(after, 'websocket_connections_total', { outcome: 'upgraded' }), echo.length, 'upgrades are not forgotten');
    assert.equal(sampleSum(after, 'websocket_messages_total', { direction: 'client_to_backend' }), echo.length, 'messages are not forgotten');
    assert.equal(sampleSum(after, 'websocket_bytes_total', { direction: 'backend_to_client' }), echo.length * PAYLOAD.length);
  });
});

describe('unrouted requests by entry point', () => {
  test('sluice_unrouted_requests_total counts each entry point apart, and shows 0 for one with none', async () => {
    const backend = await startBackend();
    const [webPort, altPort, quietPort] = [await freePort(), await freePort(), await freePort()];
    const s = await startWithAdmin(
      `entryPoints:
  web: { address: "127.0.0.1:${webPort}" }
  alt: { address: "127.0.0.1:${altPort}" }
  quiet: { address: "127.0.0.1:${quietPort}" }
http:
  routers:
    chat: { rule: "PathPrefix(\`/chat\`)", service: chat, entryPoints: [ web ] }
  services:
    chat: { loadBalancer: { servers: [ { url: "${backend.url}" } ] } }
`,
      1,
    );
    try {
      for (const [port, path] of [[webPort, '/nowhere'], [altPort, '/chat'], [altPort, '/x']] as const) {
        assert.equal((await fetch(`http://127.0.0.1:${port}${path}`)).status, 404);
      }
      const stray = await tryUpgrade(`ws://127.0.0.1:${altPort}/chat`);
      assert.equal(stray.kind === 'refused' && stray.status, 404);
      const samples = parsePrometheus((await get(`${s.adminUrl}/metrics`)).text);
      const unrouted = samples.filter((x) => x.name === 'sluice_unrouted_requests_total').map((x) => [x.labels.entrypoint, x.value]);
      assert.deepEqual(unrouted.sort(), [['alt', 3], ['quiet', 0], ['web', 1]]);
    } finally {
      await s.stop();
      await backend.close();
    }
  });
});
