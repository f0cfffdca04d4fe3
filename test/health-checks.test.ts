/**
 * Backends that fail and come back: active checks (rise/fall, onDown keep|drain, 503 with
 * Retry-After when every backend is down, failures logged with their reason and shown by the API), a
 * backend killed under steady connection churn (no failed upgrade once it is detected; back after
 * `rise`, ramping with slow start), dead and frozen backends with no health configuration at all (the
 * cool-down and the default passive check), passive ejection with backoff and probation, retries that
 * never try a backend twice, and one probe's rules (method, path, headers, status, timeout, TLS trust).
 */
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { freePort, startSluice, type SluiceProcess } from './helpers/sluice.js';
import { reach, reachBackend, startPoolBackend, tally, type PoolBackend, type Reached } from './helpers/pool.js';
import { waitFor } from './helpers/wait.js';
import { parsePrometheus, sampleSum } from './helpers/admin.js';
import { spawn } from 'node:child_process';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { checkOnce } from '../src/primary/health-check.js';
import type { BackendSpec, HealthCheckSpec, TransportSpec } from '../src/config/snapshot.js';
import { CertificateFactory } from './helpers/certificates.js';

/** One entry point, one catch-all router, one service over `backends` with `loadBalancer` extra keys. */
function poolConfig(backends: readonly PoolBackend[], lines: string): string {
  return `entryPoints:
  web: { address: "127.0.0.1:{PORT}" }
http:
  routers:
    all: { rule: "PathPrefix(\`/\`)", service: pool }
  services:
    pool:
      loadBalancer:
        servers:
${backends.map((b) => `          - url: "${b.url}"`).join('\n')}
${lines.replace(/^/gm, '        ')}
`;
}

let cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const step of cleanup.reverse()) await step().catch(() => undefined);
  cleanup = [];
});

async function startBackends(names: readonly string[]): Promise<PoolBackend[]> {
  const backends = await Promise.all(names.map((n) => startPoolBackend(n)));
  cleanup.push(() => Promise.all(backends.map((b) => b.kill())));
  return backends;
}

async function start(config: string): Promise<SluiceProcess> {
  const sluice = await startSluice(config);
  cleanup.push(() => sluice.stop());
  return sluice;
}

/** The backend rows of /api/backends. */
interface BackendRow {
  url: string;
  health: {
    passingChecks: boolean;
    lastCheck: { time: string; result: string; reason: string } | null;
    ejections: number;
    lastPassiveFailure: { time: string; reason: string } | null;
    coolingDownUntil: string | null;
  };
}

async function backendRow(sluice: SluiceProcess, url: string): Promise<BackendRow> {
  const rows = (await (await fetch(`${sluice.adminUrl}/api/backends`)).json()) as BackendRow[];
  return rows.find((b) => b.url === url)!;
}

/** A sum of /metrics samples. */
async function metric(sluice: SluiceProcess, name: string, labels: Record<string, string>): Promise<number> {
  return sampleSum(parsePrometheus(await (await fetch(`${sluice.adminUrl}/metrics`)).text()), name, labels);
}

/** Terminate `r` when the test ends. */
function keep(r: Reached): Reached {
  cleanup.push(async () => r.ws.terminate());
  return r;
}

describe('active health checks', () => {
  test('fall marks a backend down (no new connections), rise brings it back', async () => {
    const backends = await startBackends(['a', 'b']);
    const sluice = await start(poolConfig(backends, `strategy: roundrobin
healthCheck: { path: /health, interval: 50ms, timeout: 200ms, rise: 2, fall: 3 }`));
    const [a] = backends as [PoolBackend, PoolBackend];
    await waitFor('checks to run', () => a.healthChecks >= 2);
    a.healthStatus = 503;
    const failedFrom = a.healthChecks;
    await waitFor('a to fail 3 checks', () => a.healthChecks >= failedFrom + 4);
    const whileDown = [];
    for (let i = 0; i < 6; i++) whileDown.push((await reachBackend(sluice.url)).backend);
    assert.deepEqual(tally(whileDown), { b: 6 }, 'a down backend must get no new connections');
    a.healthStatus = 200;
    // Back after `rise` good checks: roundrobin then alternates again.
    let back = false;
    const deadline = Date.now() + 3000;
    while (!back && Date.now() < deadline) {
      back = (await reachBackend(sluice.url)).backend === 'a';
      if (!back) await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(back, 'a never came back');
    assert.match(sluice.stderr(), /backend ws:\/\/127\.0\.0\.1:\d+ is down/);
    assert.match(sluice.stderr(), /backend ws:\/\/127\.0\.0\.1:\d+ is up/);
  });

  test('a failing check is logged at warn with its reason once per change, and the API shows the last check', async () => {
    const backends = await startBackends(['a', 'b']);
    const [a] = backends as [PoolBackend, PoolBackend];
    const sluice = await start(poolConfig(backends, 'healthCheck: { path: /health, interval: 50ms, timeout: 200ms, rise: 2, fall: 3 }'));
    await waitFor('a first check', () => a.healthChecks >= 1);
    const passing = (await backendRow(sluice, a.url)).health.lastCheck!;
    assert.equal(passing.result, 'pass');
    assert.equal(passing.reason, '');
    assert.ok(Math.abs(Date.parse(passing.time) - Date.now()) < 5000);
    a.healthStatus = 503;
    await waitFor('a to be marked down', () => /is down/.test(sluice.stderr()));
    const failedFrom = a.healthChecks;
    await waitFor('two more failing checks', () => a.healthChecks >= failedFrom + 2);
    const lines = sluice.stderr().split('\n').filter((l) => l.includes(a.url)).map((l) => JSON.parse(l) as { level: string; msg: string });
    const failing = lines.filter((l) => l.msg.includes('failed its health check'));
    assert.equal(failing.length, 1, `one line when the check starts failing: ${JSON.stringify(lines)}`);
    assert.equal(failing[0]!.level, 'warn');
    assert.match(failing[0]!.msg, /failed its health check: status 503 \(expected 2xx or 3xx\) \(1 of fall 3\)/);
    const down = lines.filter((l) => /is down/.test(l.msg));
    assert.equal(down.length, 1);
    assert.equal(down[0]!.level, 'warn');
    assert.match(down[0]!.msg, /is down: 3 health check\(s\) in a row failed, the last: status 503/);
    const row = await backendRow(sluice, a.url);
    assert.equal(row.health.passingChecks, false);
    assert.deepEqual({ result: row.health.lastCheck!.result, reason: row.health.lastCheck!.reason }, { result: 'fail', reason: 'status 503 (expected 2xx or 3xx)' });
    // Recovery is logged once too, at info.
    a.healthStatus = 200;
    await waitFor('a to be up again', () => /is up: 2 health check\(s\) in a row passed/.test(sluice.stderr()));
    assert.equal(sluice.stderr().split('\n').filter((l) => l.includes('passed its health check again')).length, 1);
  });

  test('every backend down: 503 with Retry-After (the unhealthy interval), no connect attempted', async () => {
    const backends = await startBackends(['a', 'b']);
    for (const b of backends) b.healthStatus = 500;
    const sluice = await start(poolConfig(backends, 'healthCheck: { path: /health, interval: 50ms, unhealthyInterval: 3s, fall: 1 }'));
    await waitFor('both to be checked', () => backends.every((b) => b.healthChecks >= 1));
    await waitFor('the pool to be marked down', () => /is down[\s\S]*is down/.test(sluice.stderr()));
    const attempt = await reach(sluice.url);
    assert.ok('status' in attempt, 'expected a refusal');
    assert.equal(attempt.status, 503);
    assert.equal(attempt.headers['retry-after'], '3');
    assert.match(attempt.body, /no backend available for service 'pool'/);
    assert.deepEqual(backends.map((b) => b.upgrades), [0, 0]);
  });

  test('onDown: keep leaves open WebSockets alone', async () => {
    const backends = await startBackends(['a']);
    const sluice = await start(poolConfig(backends, 'healthCheck: { path: /health, interval: 50ms, fall: 1, onDown: keep }'));
    const clients = [keep(await reachBackend(sluice.url)), keep(await reachBackend(sluice.url))];
    backends[0]!.healthStatus = 503;
    await waitFor('a to be marked down', () => /is down/.test(sluice.stderr()));
    // A drain would close its first client at once; by the time a is up again (checks later), it would have.
    backends[0]!.healthStatus = 200;
    await waitFor('a to be up again', () => /is up/.test(sluice.stderr()));
    for (const c of clients) assert.equal(c.ws.readyState, c.ws.OPEN);
    assert.doesNotMatch(sluice.stderr(), /drain/);
  });

  test('onDown: drain closes the backend\'s clients with 1012, paced over drainWindow', async () => {
    const backends = await startBackends(['a', 'b']);
    const sluice = await start(poolConfig(backends, `strategy: roundrobin
drainWindow: 800ms
healthCheck: { path: /health, interval: 50ms, fall: 1, onDown: drain }`));
    const clients: Reached[] = [];
    for (let i = 0; i < 10; i++) clients.push(keep(await reachBackend(sluice.url)));
    const onA = clients.filter((c) => c.backend === 'a');
    const onB = clients.filter((c) => c.backend === 'b');
    assert.equal(onA.length, 5);
    backends[0]!.healthStatus = 503;
    const closes = await Promise.all(onA.map((c) => c.closed));
    assert.deepEqual(closes.map((c) => c.code), [1012, 1012, 1012, 1012, 1012]);
    const times = closes.map((c) => c.at).sort((x, y) => x - y);
    const spread = times[4]! - times[0]!;
    assert.ok(spread >= 500, `closes spread over ${spread} ms; expected about 800 (paced, never all at once)`);
    for (const c of onB) assert.equal(c.ws.readyState, c.ws.OPEN, 'the healthy backend\'s clients stay');
    // Reconnects go to the healthy backend.
    assert.equal((await reachBackend(sluice.url)).backend, 'b');
  });
});

describe('a drain that the backend outlives', () => {
  test('a backend that passes its checks again keeps the connections the drain has not closed yet', async () => {
    const backends = await startBackends(['a']);
    const sluice = await start(poolConfig(backends, `drainWindow: 3s
healthCheck: { path: /health, interval: 50ms, fall: 1, rise: 1, onDown: drain }`));
    const clients: Reached[] = [];
    for (let i = 0; i < 4; i++) clients.push(keep(await reachBackend(sluice.url)));
    backends[0]!.healthStatus = 503;
    // The first close goes at once; the next would follow 750 ms later.
    const first = await Promise.race(clients.map((c) => c.closed));
    assert.equal(first.code, 1012);
    backends[0]!.healthStatus = 200;
    await waitFor('a to be up again', () => /is up/.test(sluice.stderr()));
    await waitFor('the worker to stop its drain', () => /drain stopped in worker 0, the backend is up again: 1 closed, 3 kept/.test(sluice.stderr()), () => sluice.stderr());
    const stillOpen = clients.filter((c) => c.ws.readyState === c.ws.OPEN).length;
    assert.equal(stillOpen, 3, 'the drain must stop once the backend is up again');
  });
});

describe('a backend killed under steady connection churn', () => {
  test('after detection no upgrade fails; once back it gets connections again after rise, ramping with slow start', async () => {
    const backends = await startBackends(['a', 'b', 'c']);
    const sluice = await start(poolConfig(backends, `retries: 0
slowStart: 10s
healthCheck: { path: /health, interval: 50ms, timeout: 100ms, rise: 2, fall: 2 }`));
    const [, , c] = backends as [PoolBackend, PoolBackend, PoolBackend];
    const outcomes: { at: number; result: string }[] = [];
    let churning = true;
    const held: Reached[] = [];
    cleanup.push(async () => {
      churning = false;
      for (const r of held) r.ws.terminate();
    });
    // Steady churn: one upgrade every 10 ms; each client stays open (leastconn sees the load).
    const churn = (async () => {
      while (churning) {
        const at = Date.now();
        const attempt = await reach(sluice.url).catch((error: Error) => ({ status: -1, headers: {}, body: error.message }));
        if ('status' in attempt) outcomes.push({ at, result: `refused ${attempt.status}` });
        else {
          held.push(attempt);
          outcomes.push({ at, result: attempt.backend });
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    await waitFor('c to take connections', () => outcomes.filter((o) => o.result === 'c').length >= 5);
    await c.kill();
    await waitFor('c to be marked down', () => /:\d+ is down/.test(sluice.stderr()), undefined, { timeoutMs: 3000 });
    const detectedAt = Date.now();
    await waitFor('churn after detection', () => outcomes.filter((o) => o.at > detectedAt).length >= 30, undefined, { timeoutMs: 5000 });
    const after = outcomes.filter((o) => o.at > detectedAt);
    assert.deepEqual(after.filter((o) => !['a', 'b'].includes(o.result)), [], 'no upgrade may fail (or reach c) once c is detected down');

    await c.revive();
    await waitFor('c to be up again', () => /:\d+ is up/.test(sluice.stderr()), undefined, { timeoutMs: 3000 });
    const upAt = Date.now();
    await waitFor('c to receive connections again', () => outcomes.some((o) => o.at > upAt && o.result === 'c'), undefined, { timeoutMs: 4000 });
    await waitFor('more churn after c came back', () => outcomes.filter((o) => o.at > upAt).length >= 20, undefined, { timeoutMs: 5000 });
    churning = false;
    await churn;
    const ramp = tally(outcomes.filter((o) => o.at > upAt).slice(0, 20).map((o) => o.result));
    // Without slow start, leastconn would send c every new connection until it caught up with the
    // others' ~25 each (measured: all 20); with it, c's weight is a few percent in the first seconds
    // and a and b keep taking most of them.
    assert.ok((ramp.a ?? 0) + (ramp.b ?? 0) >= 10, `first 20 after c came back: ${JSON.stringify(ramp)}`);
    assert.equal(ramp.refused, undefined);
    assert.ok(c.healthChecks >= 2);
  });
});

/** A TCP server in a stopped process (SIGSTOP): the kernel accepts connections, nothing answers. */
async function frozenBackend(): Promise<{ url: string }> {
  const child = spawn(process.execPath, ['-e', "const s = require('net').createServer(() => {}).listen(0, '127.0.0.1', () => console.log(s.address().port))"], { stdio: ['ignore', 'pipe', 'inherit'] });
  cleanup.push(async () => {
    child.kill('SIGKILL');
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.once('data', (d: Buffer) => resolve(Number(String(d).trim())));
    child.once('exit', (code) => reject(new Error(`the frozen backend exited with ${code}`)));
  });
  process.kill(child.pid!, 'SIGSTOP');
  return { url: `ws://127.0.0.1:${port}` };
}

describe('dead and frozen backends with no health configuration', () => {
  test('a dead backend of three: at most 3 of 50 new connections try it, and it is ejected after 3 failures', async () => {
    const backends = await startBackends(['a', 'b', 'dead']);
    const dead = backends[2]!;
    await dead.kill();
    const sluice = await startSluice(poolConfig(backends, 'strategy: leastconn'), { workers: 2 });
    cleanup.push(() => sluice.stop());
    const refused = (): Promise<number> => metric(sluice, 'websocket_errors_total', { backend: dead.url, reason: 'connect_refused' });
    // Kept open: the live backends fill up, so least connections would prefer the empty dead one.
    for (let i = 0; i < 50; i++) assert.notEqual(keep(await reachBackend(sluice.url)).backend, 'dead');
    const tried = await refused();
    assert.ok(tried >= 1 && tried <= 3, `the dead backend was tried ${tried} times in 50 upgrades`);
    // Once each cool-down ends it is tried again; the third failure in the window ejects it.
    const deadline = Date.now() + 15_000;
    while (!/ejected for 10000 ms/.test(sluice.stderr()) && Date.now() < deadline) {
      keep(await reachBackend(sluice.url));
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.match(sluice.stderr(), /ejected for 10000 ms: 3 failed attempt\(s\) within 10000 ms, the last: connect_refused/);
    assert.equal(await refused(), 3);
    const row = await backendRow(sluice, dead.url);
    assert.equal(row.health.ejections, 1);
    assert.equal(row.health.lastPassiveFailure!.reason, 'connect_refused');
  });

  test('passiveHealthCheck: { maxFailedAttempts: 0 } turns it off: least connections keeps trying the dead backend', async () => {
    const backends = await startBackends(['a', 'b', 'dead']);
    const dead = backends[2]!;
    await dead.kill();
    const sluice = await start(poolConfig(backends, 'strategy: leastconn\npassiveHealthCheck: { maxFailedAttempts: 0 }'));
    for (let i = 0; i < 30; i++) keep(await reachBackend(sluice.url));
    const tried = await metric(sluice, 'websocket_errors_total', { backend: dead.url, reason: 'connect_refused' });
    assert.ok(tried >= 25, `without passive checks the dead backend was tried only ${tried} times in 30 upgrades`);
    assert.equal((await backendRow(sluice, dead.url)).health.coolingDownUntil, null);
  });

  test('a frozen backend (SIGSTOP) costs one handshakeTimeout, then is avoided', async () => {
    const backends = await startBackends(['a', 'b']);
    const frozen = await frozenBackend();
    const config = poolConfig([...backends, frozen as PoolBackend], 'strategy: leastconn');
    const sluice = await start(`${config}websocket:\n  handshakeTimeout: 1s\n`);
    const waits: number[] = [];
    for (let i = 0; i < 12; i++) {
      const started = Date.now();
      assert.notEqual(keep(await reachBackend(sluice.url)).backend, undefined);
      waits.push(Date.now() - started);
    }
    const slow = waits.filter((ms) => ms >= 1000);
    assert.equal(slow.length, 1, `upgrades that waited for the frozen backend: ${JSON.stringify(waits)}`);
    assert.ok(waits.indexOf(slow[0]!) < 3, 'least connections tries the empty frozen backend among the first');
    assert.equal(await metric(sluice, 'websocket_errors_total', { backend: frozen.url, reason: 'connect_timeout' }), 1);
    const row = await backendRow(sluice, frozen.url);
    assert.equal(row.health.lastPassiveFailure!.reason, 'timeout');
  });

  test('plain HTTP requests avoid a dead backend the same way', async () => {
    const backends = await startBackends(['a', 'b', 'dead']);
    const dead = backends[2]!;
    await dead.kill();
    const sluice = await start(poolConfig(backends, 'strategy: leastconn'));
    const answers: string[] = [];
    for (let i = 0; i < 30; i++) answers.push((await (await fetch(`http://127.0.0.1:${sluice.port}/health`)).text()).trim());
    assert.deepEqual(Object.keys(tally(answers)).sort(), ['a', 'b']);
    const tried = await metric(sluice, 'http_errors_total', { backend: dead.url, reason: 'connect_refused' });
    assert.ok(tried >= 1 && tried <= 3, `the dead backend was tried ${tried} times in 30 requests`);
  });

  test('the last backend up of a service is never ejected by passive checks: clients keep getting 502, not 503', async () => {
    const backends = await startBackends(['only']);
    await backends[0]!.kill();
    const sluice = await start(poolConfig(backends, ''));
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) {
      const attempt = await reach(sluice.url);
      statuses.push('status' in attempt ? attempt.status : 101);
    }
    assert.deepEqual(statuses, [502, 502, 502, 502, 502]);
    await waitFor('the spared ejection to be logged', () => /not ejected although failing \(3 failed attempt\(s\)[^)]*\): it is the last backend of service 'pool' that is up/.test(sluice.stderr()));
    assert.doesNotMatch(sluice.stderr(), /ejected for/);
  });
});

describe('passive health checks and retries', () => {
  test('a 5xx answer to the upgrade is retried on another backend, and ejects the backend that gave it', async () => {
    const backends = await startBackends(['bad', 'good']);
    const [bad] = backends as [PoolBackend, PoolBackend];
    bad.refuseWith = 503;
    const sluice = await start(poolConfig(backends, `strategy: roundrobin
passiveHealthCheck: { maxFailedAttempts: 1, failureWindow: 600ms }`));
    const first = keep(await reachBackend(sluice.url));
    // The ejection is the primary's decision, told to the workers through shared memory: wait for it rather
    // than race the next upgrade against that message on a busy machine.
    await waitFor('the ejection to be logged', () => /ejected for 600 ms/.test(sluice.stderr()));
    const second = keep(await reachBackend(sluice.url));
    assert.deepEqual([first.backend, second.backend], ['good', 'good']);
    assert.equal(bad.upgrades, 1, 'the failed backend must be ejected after its first failure');
    const listed = (await (await fetch(`${sluice.adminUrl}/api/backends`)).json()) as { url: string; health: { ejections: number; passingChecks: boolean } }[];
    assert.deepEqual(listed.find((b) => b.url === bad.url)!.health.ejections, 1, 'the admin API shows the ejection');
    // While ejected, roundrobin never offers it.
    for (let i = 0; i < 4; i++) keep(await reachBackend(sluice.url));
    assert.equal(bad.upgrades, 1);
    // After the ejection: probation. One more failure ejects it again, for twice as long.
    await waitFor('probation', () => /back on probation/.test(sluice.stderr()), undefined, { timeoutMs: 2000 });
    for (let i = 0; i < 3 && bad.upgrades === 1; i++) keep(await reachBackend(sluice.url));
    assert.equal(bad.upgrades, 2, 'on probation it is tried again');
    await waitFor('the doubled ejection', () => /ejected for 1200 ms: failed on probation/.test(sluice.stderr()));
    // Healthy again: on probation it takes connections, and a clean probation forgives it.
    bad.refuseWith = 0;
    await waitFor('second probation', () => (sluice.stderr().match(/back on probation/g) ?? []).length >= 2, undefined, { timeoutMs: 3000 });
    const after: string[] = [];
    for (let i = 0; i < 4; i++) after.push(keep(await reachBackend(sluice.url)).backend);
    assert.deepEqual(tally(after), { bad: 2, good: 2 });
  });

  test('connect failures are retried on another backend, never the same one twice', async () => {
    const backends = await startBackends(['a', 'b', 'c']);
    await backends[0]!.kill();
    await backends[1]!.kill();
    const sluice = await start(poolConfig(backends, 'strategy: roundrobin\nretries: 5'));
    for (let i = 0; i < 3; i++) assert.equal(keep(await reachBackend(sluice.url)).backend, 'c');
  });

  test('every backend answering 5xx: the last answer is relayed, each backend tried once', async () => {
    const backends = await startBackends(['a', 'b', 'c']);
    for (const b of backends) b.refuseWith = 502;
    const sluice = await start(poolConfig(backends, 'retries: 10'));
    const attempt = await reach(sluice.url);
    assert.ok('status' in attempt);
    assert.equal(attempt.status, 502);
    assert.deepEqual(backends.map((b) => b.upgrades), [1, 1, 1]);
  });

  test('a clean WebSocket close is never a failure', async () => {
    const backends = await startBackends(['a', 'b']);
    const sluice = await start(poolConfig(backends, `strategy: roundrobin
passiveHealthCheck: { maxFailedAttempts: 1, failureWindow: 10s }`));
    for (let i = 0; i < 6; i++) {
      const r = await reachBackend(sluice.url);
      r.ws.close(1000);
      await r.closed;
    }
    // Once Sluice has counted the six closes, a failure report would already be on its way: ask the
    // admin API after that (its answer comes after the reports the worker sent before).
    for (let closes = 0; closes < 6; ) {
      const text = await (await fetch(`${sluice.adminUrl}/metrics`)).text();
      closes = sampleSum(parsePrometheus(text), 'websocket_closes_total', { side: 'client' });
    }
    assert.doesNotMatch(sluice.stderr(), /ejected/);
    assert.deepEqual(backends.map((b) => b.upgrades), [3, 3]);
  });
});

describe('one probe (checkOnce)', () => {
  const spec = (port: number, tls = false): BackendSpec => ({
    index: 0, service: 0, url: `ws://127.0.0.1:${port}`, host: '127.0.0.1', port, tls, pathPrefix: '', weight: 1, dnsName: '',
  });
  const check = (extra: Partial<HealthCheckSpec> = {}): HealthCheckSpec => ({
    path: '/health?deep=1', method: 'GET', scheme: '', hostname: '', port: 0, headers: [], status: 0,
    intervalMs: 1000, unhealthyIntervalMs: 1000, timeoutMs: 300, rise: 1, fall: 1, onDown: 'keep', ...extra,
  });
  const transport = (extra: Partial<TransportSpec> = {}): TransportSpec => ({ name: 'default', insecureSkipVerify: false, rootCAs: '', serverName: '', dialTimeoutMs: 1000, responseHeaderTimeoutMs: 0, idleConnTimeoutMs: 90_000, maxIdleConnsPerHost: 200, websocketCompression: false, ...extra });
  const probe = (s: BackendSpec, c: HealthCheckSpec, t: TransportSpec = transport()): Promise<boolean> =>
    new Promise((resolve) => checkOnce(s, c, t, s.host, resolve));

  /** A server on a free port, closed when the test ends. */
  async function server(handler: http.RequestListener, secure?: { cert: string; key: string }): Promise<{ port: number }> {
    const s = secure ? https.createServer(secure, handler) : http.createServer(handler);
    await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', () => resolve()));
    cleanup.push(() => new Promise<void>((resolve) => {
      s.closeAllConnections();
      s.close(() => resolve());
    }));
    return { port: (s.address() as AddressInfo).port };
  }

  test('asks method, path and headers as configured; 2xx and 3xx are healthy unless a status is set', async () => {
    const seen: http.IncomingMessage[] = [];
    let status = 200;
    const { port } = await server((req, res) => {
      seen.push(req);
      res.writeHead(status).end();
    });
    const configured = check({ method: 'HEAD', hostname: 'chat.internal', headers: [['X-Probe', 'sluice']] });
    assert.equal(await probe(spec(port), configured), true);
    assert.equal(seen[0]!.method, 'HEAD');
    assert.equal(seen[0]!.url, '/health?deep=1');
    assert.equal(seen[0]!.headers.host, `chat.internal:${port}`);
    assert.equal(seen[0]!.headers['x-probe'], 'sluice');
    status = 302;
    assert.equal(await probe(spec(port), check()), true);
    status = 404;
    assert.equal(await probe(spec(port), check()), false);
    status = 204;
    assert.equal(await probe(spec(port), check({ status: 204 })), true);
    status = 200;
    assert.equal(await probe(spec(port), check({ status: 204 })), false);
  });

  test('a slow answer past the timeout, a refused connection: unhealthy', async () => {
    const { port } = await server(() => undefined); // never answers
    const started = Date.now();
    assert.equal(await probe(spec(port), check({ timeoutMs: 150 })), false);
    assert.ok(Date.now() - started < 1000);
    const closed = await freePort();
    assert.equal(await probe(spec(closed), check()), false);
  });

  test('wss/https backends are checked over TLS, trusting what the servers transport trusts', async () => {
    const certs = new CertificateFactory();
    cleanup.push(async () => certs.remove());
    const leaf = certs.issue('backend', 'backend.internal', ['DNS:backend.internal']);
    const { port } = await server((_req, res) => res.writeHead(200).end(), leaf);
    const tlsSpec = spec(port, true);
    assert.equal(await probe(tlsSpec, check(), transport({ rootCAs: certs.ca.cert, serverName: 'backend.internal' })), true);
    assert.equal(await probe(tlsSpec, check(), transport()), false, 'an unknown CA must fail the check');
    assert.equal(await probe(tlsSpec, check(), transport({ insecureSkipVerify: true })), true);
    assert.equal(await probe(tlsSpec, check({ scheme: 'http' }), transport({ insecureSkipVerify: true })), false, 'scheme: http against a TLS port');
  });
});
