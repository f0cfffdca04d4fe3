/**
 * Limits on one WebSocket's life, each with its close code and metric: websocket.messageRate (1008, or drop
 * and count), websocket.controlFrameRate (a ping flood gets 1008; one ping still gets its pong),
 * websocket.allowedOrigins (403), websocket.maxLifetime (1012 after the lifetime less its jitter), and the
 * client leg's dead-peer detection (websocket.idleTimeout with uWS's automatic pings): a client that stops
 * answering without a FIN (a `ws` client with autoPong off, a client process stopped with SIGSTOP) is closed and
 * its backend connection with it.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { after, before, describe, test } from 'node:test';
import { WebSocket } from 'ws';
import { simpleConfig, startBackend, startSluice, type SluiceProcess, type TestBackend } from './helpers/sluice.js';
import { closeAllPeers, connect, until, UpgradeRefused, type Peer } from './helpers/peer.js';
import { scrape } from './helpers/limits.js';
import { sampleSum } from './helpers/admin.js';
import { LIFETIME_JITTER, deadlineSecond } from '../src/worker/limits-lifetime.js';

/** A Sluice with `websocket` settings in front of one echo backend (also recording closes it sees). */
function withSluice(websocket: string): { sluice: () => SluiceProcess; backend: () => TestBackend; backendCloses: number[]; received: string[] } {
  let sluice: SluiceProcess | undefined;
  let backend: TestBackend | undefined;
  const backendCloses: number[] = [];
  const received: string[] = [];
  before(async () => {
    backend = await startBackend((ws) => {
      ws.on('message', (data, isBinary) => {
        received.push(String(data));
        ws.send(data, { binary: isBinary });
      });
      ws.on('close', (code) => backendCloses.push(code));
    });
    sluice = await startSluice(simpleConfig([backend.url], `websocket:\n${websocket}`), { timeoutMs: 20_000 });
  });
  after(async () => {
    closeAllPeers();
    await sluice?.stop();
    await backend?.close();
  });
  return { sluice: () => sluice!, backend: () => backend!, backendCloses, received };
}

async function errors(sluice: SluiceProcess, reason: string): Promise<number> {
  return sampleSum(await scrape(sluice.adminUrl), 'websocket_errors_total', { reason });
}

describe('websocket.messageRate: close', () => {
  const s = withSluice('  messageRate: { average: 10, burst: 5 }\n  controlFrameRate: { average: 10, burst: 10 }\n  allowedOrigins: ["https://app.example.com", "https://*.example.com"]\n');

  test('a client over the rate is closed with 1008, and so is its backend connection', async () => {
    const client = await connect(s.sluice().url);
    for (let i = 0; i < 20; i++) client.ws.send(`m${i}`);
    const closed = await client.waitClose(5000);
    assert.deepEqual(closed, { code: 1008, reason: 'message rate limit exceeded' });
    await until(() => s.backendCloses.includes(1008), 5000, 'the backend connection closed with 1008');
    assert.deepEqual(s.received, ['m0', 'm1', 'm2', 'm3', 'm4'], 'the burst was forwarded, nothing after it');
    assert.equal(await errors(s.sluice(), 'message_rate'), 1);
  });

  test('a client within the rate is never closed', async () => {
    const client = await connect(s.sluice().url);
    for (let i = 0; i < 8; i++) {
      await client.send(`ok${i}`);
      assert.equal((await client.next()).data.toString(), `ok${i}`);
      await new Promise((r) => setTimeout(r, 120)); // 10/s: one token every 100 ms
    }
    assert.equal(client.closeInfo, null);
  });

  test('controlFrameRate: one ping gets its pong; a flood of pings is closed with 1008', async () => {
    const calm = await connect(s.sluice().url);
    calm.ws.ping('hello');
    await until(() => calm.pongs.length === 1, 5000, 'the pong');
    assert.equal(calm.pongs[0]!.toString(), 'hello');
    const flood = await connect(s.sluice().url);
    for (let i = 0; i < 200; i++) flood.ws.ping();
    assert.deepEqual(await flood.waitClose(5000), { code: 1008, reason: 'control frame rate limit exceeded' });
    assert.equal(await errors(s.sluice(), 'control_frame_rate'), 1);
    assert.equal(calm.closeInfo, null, 'the calm client stays');
  });

  test('allowedOrigins: a browser from another origin gets 403; listed origins, wildcard subdomains and non-browsers pass', async () => {
    const url = s.sluice().url;
    await assert.rejects(connect(url, { headers: { origin: 'https://evil.test' } }), (e: unknown) => e instanceof UpgradeRefused && e.status === 403 && /not allowed/.test(e.body));
    await assert.rejects(connect(url, { headers: { origin: 'https://example.com.evil.test' } }), (e: unknown) => e instanceof UpgradeRefused && e.status === 403);
    const passed: Peer[] = [
      await connect(url, { headers: { origin: 'https://app.example.com' } }),
      await connect(url, { headers: { origin: 'HTTPS://Deep.Sub.Example.com' } }),
      await connect(url),
    ];
    passed.forEach((p) => p.ws.terminate());
    const samples = await scrape(s.sluice().adminUrl);
    assert.equal(sampleSum(samples, 'sluice_limited_total', { reason: 'origin_not_allowed', kind: 'websocket' }), 2);
    assert.equal(sampleSum(samples, 'websocket_connections_total', { outcome: 'limited' }), 2);
  });
});

describe('websocket.messageRate: drop', () => {
  const s = withSluice('  messageRate: { average: 10, burst: 5, onLimit: drop }\n');

  test('messages over the rate are dropped and counted; the connection stays and later messages pass', async () => {
    const client = await connect(s.sluice().url);
    for (let i = 0; i < 20; i++) client.ws.send(`m${i}`);
    const echoed = await client.take(5);
    assert.deepEqual(echoed.map((m) => m.data.toString()), ['m0', 'm1', 'm2', 'm3', 'm4']);
    assert.equal(await errors(s.sluice(), 'message_rate'), 15);
    await new Promise((r) => setTimeout(r, 150)); // a token comes back every 100 ms
    await client.send('later');
    assert.equal((await client.next()).data.toString(), 'later');
    assert.equal(client.closeInfo, null);
  });
});

describe('websocket.maxLifetime', () => {
  const s = withSluice('  maxLifetime: 2s\n');

  test('a connection is closed with 1012 after its lifetime (less up to 10%), and its client can come back', async () => {
    const opened = Date.now();
    const client = await connect(s.sluice().url);
    const closed = await client.waitClose(5000);
    const lived = Date.now() - opened;
    assert.equal(closed.code, 1012);
    // Deadlines are rounded up to the next whole second and swept as it begins: 1.8 s at the soonest, 3 s at the latest.
    assert.ok(lived >= 1700 && lived <= 3500, `lived ${lived} ms`);
    await until(() => s.backendCloses.includes(1012), 5000, 'the backend connection closed with 1012');
    const again = await connect(s.sluice().url);
    await again.send('back');
    assert.equal((await again.next()).data.toString(), 'back');
    const samples = await scrape(s.sluice().adminUrl);
    assert.equal(sampleSum(samples, 'websocket_closes_total', { side: 'proxy', code: '1012' }), 1);
  });
});

describe('websocket.maxLifetime schedule', () => {
  test('a connection is never due before its deadline, whatever the time within the second it opened at', () => {
    // The sweep closes a bucket once the wall clock has reached its second: the bucket must be the second
    // at or after the deadline, never the one it falls in (that closed connections up to 1 s early).
    for (const opened of [10_000, 10_001, 10_500, 10_999]) {
      for (const r of [0, 0.5, 0.999]) {
        const deadline = opened + 2000 * (1 - LIFETIME_JITTER * r);
        const due = deadlineSecond(opened, 2000, r) * 1000;
        assert.ok(due >= deadline && due < deadline + 1000, `opened at ${opened}, deadline ${deadline}: due at ${due}`);
      }
    }
  });
});

describe('dead clients (websocket.idleTimeout: 8s, uWS pings)', { concurrency: true }, () => {
  const s = withSluice('  idleTimeout: 8s\n');

  test('a client that stops answering pings (autoPong off) is closed, and its backend connection too', { timeout: 40_000 }, async () => {
    const ws = new WebSocket(s.sluice().url, { autoPong: false, perMessageDeflate: false });
    ws.on('error', () => undefined);
    await new Promise((resolve) => ws.once('open', resolve));
    const before = s.backendCloses.length;
    const start = Date.now();
    // uWS pings after idleTimeout of silence and closes after another without an answer.
    await until(() => s.backendCloses.length > before, 30_000, 'the backend connection closed');
    const took = Date.now() - start;
    assert.ok(took >= 7000, `closed after ${took} ms: not before the idle timeout`);
    ws.terminate();
  });

  test('a client process stopped with SIGSTOP is found the same way', { timeout: 40_000 }, async () => {
    const script = `const { WebSocket } = require(${JSON.stringify(createRequire(import.meta.url).resolve('ws'))}); const ws = new WebSocket(process.argv[1]); ws.on('open', () => process.stdout.write('open\\n')); setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['-e', script, s.sluice().url], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
      const before = s.backendCloses.length;
      child.kill('SIGSTOP');
      const start = Date.now();
      await until(() => s.backendCloses.length > before, 30_000, 'the backend connection closed');
      assert.ok(Date.now() - start >= 7000);
    } finally {
      child.kill('SIGKILL');
    }
  });

  test('a quiet client that answers pings is never closed', { timeout: 40_000 }, async () => {
    const client = await connect(s.sluice().url);
    // Each ping is an idle timeout that passed and found the client answering.
    await until(() => client.pings.length >= 2 || client.closeInfo !== null, 30_000, 'two pings');
    assert.equal(client.closeInfo, null, 'still open after two idle timeouts');
    await client.send('still here');
    assert.equal((await client.next()).data.toString(), 'still here');
  });
});
