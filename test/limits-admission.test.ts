/**
 * Sluice's own connection limits, with two workers: entryPoints.<name>.websocket.maxConnections (503 with
 * Retry-After, the listener keeps answering), loadBalancer.maxConnections per backend (the next backend, then
 * 503), and upgrade admission per backend: a reconnect wave of 5,000 upgrades at once reaches a backend
 * admitting 500/s at about that rate, the rest told to come back with a Retry-After that spreads them.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startBackend, startSluice, type SluiceProcess, type TestBackend } from './helpers/sluice.js';
import { attempt, release, scrape, type Attempt } from './helpers/limits.js';
import { sampleSum, sampleValue } from './helpers/admin.js';
import { localAddress } from './helpers/fleet.js';
import { startHttpBackend, type HttpBackend } from './helpers/http-backend.js';

function statuses(attempts: readonly Attempt[]): Record<number, number> {
  const out: Record<number, number> = {};
  for (const a of attempts) out[a.status] = (out[a.status] ?? 0) + 1;
  return out;
}

/** Retry (bounded) until `fn` gives `status`: a close reaches Sluice asynchronously. */
async function eventually(fn: () => Promise<Attempt>, status: number): Promise<Attempt> {
  let last: Attempt | undefined;
  for (let i = 0; i < 50; i++) {
    last = await fn();
    if (last.status === status) return last;
    release(last);
    await new Promise((r) => setTimeout(r, 50));
  }
  return last!;
}

describe('maxConnections', () => {
  let sluice: SluiceProcess | undefined;
  const backends: TestBackend[] = [];
  let http: HttpBackend | undefined;

  before(async () => {
    backends.push(await startBackend());
    http = await startHttpBackend('plain');
    sluice = await startSluice(
      `entryPoints:
  web:
    address: "127.0.0.1:{PORT}"
    websocket: { maxConnections: 3 }
http:
  routers:
    web: { rule: "PathPrefix(\`/ws\`)", service: open }
    plain: { rule: "PathPrefix(\`/plain\`)", service: plain }
  services:
    open: { loadBalancer: { servers: [ { url: "${backends[0]!.url}" } ] } }
    plain: { loadBalancer: { servers: [ { url: "${http.url}" } ] } }
`,
      { workers: 2, timeoutMs: 20_000, env: { ...process.env, SLUICE_HISTORY_INTERVAL_MS: '100' } },
    );
  });

  after(async () => {
    await sluice?.stop();
    for (const b of backends) await b.close();
    await http?.close();
  });

  test('an entry point at its maxConnections answers upgrades 503 with Retry-After and still serves HTTP', async () => {
    const port = sluice!.port;
    const before = await scrape(sluice!.adminUrl);
    const open = await Promise.all(Array.from({ length: 5 }, (_, i) => attempt('upgrade', port, '/ws', { localAddress: localAddress(i) })));
    try {
      assert.deepEqual(statuses(open), { 101: 3, 503: 2 });
      const refused = open.find((a) => a.status === 503)!;
      assert.ok(Number(refused.headers['retry-after']) >= 1, `Retry-After ${refused.headers['retry-after']}`);
      assert.match(refused.body, /maxConnections/);
      assert.equal((await attempt('http', port, '/plain/x')).status, 200, 'the listener keeps answering');
      const samples = await scrape(sluice!.adminUrl);
      const limited = (s: typeof samples): number => sampleValue(s, 'sluice_limited_total', { entrypoint: 'web', router: 'web', kind: 'websocket', reason: 'entrypoint_max_connections' });
      assert.equal(limited(samples) - limited(before), 2);
      const outcome = (s: typeof samples): number => sampleSum(s, 'websocket_connections_total', { router: 'web', outcome: 'limited' });
      assert.equal(outcome(samples) - outcome(before), 2);
      // The dashboard charts the refusals.
      let charted = false;
      for (let i = 0; i < 60 && !charted; i++) {
        const history = (await (await fetch(`${sluice!.adminUrl}/api/history`)).json()) as { series: { key: string; values: (number | null)[] }[] };
        charted = history.series.some((s) => s.key === 'limited/websocket entrypoint_max_connections' && s.values.some((v) => v !== null && v > 0));
        if (!charted) await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(charted, 'a series on the dashboard\'s "limited" chart');
      release(open.find((a) => a.status === 101)!);
      const next = await eventually(() => attempt('upgrade', port, '/ws'), 101);
      assert.equal(next.status, 101, 'a close frees a place');
      release(next);
    } finally {
      open.forEach(release);
    }
  });
});

describe('maxConnections per backend', () => {
  let sluice: SluiceProcess | undefined;
  const backends: TestBackend[] = [];

  before(async () => {
    backends.push(await startBackend(), await startBackend());
    sluice = await startSluice(
      `entryPoints: { web: { address: "127.0.0.1:{PORT}" } }
http:
  routers:
    room: { rule: "PathPrefix(\`/\`)", service: room }
  services:
    room:
      loadBalancer:
        strategy: hash
        hash: { key: "header:x-room", balanceFactor: 100 }
        maxConnections: 2
        servers: [ { url: "${backends[0]!.url}" }, { url: "${backends[1]!.url}" } ]
`,
      { workers: 2, timeoutMs: 20_000 },
    );
  });

  after(async () => {
    await sluice?.stop();
    for (const b of backends) await b.close();
  });

  test('a full backend is skipped for the next one; when all are full the client gets 503 with Retry-After', async () => {
    const port = sluice!.port;
    const before = await scrape(sluice!.adminUrl);
    // One room: the hash sends every client to the same backend first.
    const held: Attempt[] = [];
    try {
      for (let i = 0; i < 4; i++) {
        const a = await attempt('upgrade', port, '/', { headers: { 'x-room': 'lobby' } });
        held.push(a);
        assert.equal(a.status, 101, `connection ${i}`);
      }
      assert.deepEqual(backends.map((b) => b.sockets.size).sort(), [2, 2], 'two on each backend: the full one was skipped');
      const refused = await attempt('upgrade', port, '/', { headers: { 'x-room': 'lobby' } });
      assert.equal(refused.status, 503);
      assert.ok(Number(refused.headers['retry-after']) >= 1);
      assert.match(refused.body, /maxConnections/);
      const samples = await scrape(sluice!.adminUrl);
      const limited = (s: typeof samples): number => sampleValue(s, 'sluice_limited_total', { router: 'room', kind: 'websocket', reason: 'backend_max_connections' });
      assert.equal(limited(samples) - limited(before), 1);
    } finally {
      held.forEach(release);
    }
  });
});

describe('upgrade admission', () => {
  const RATE = 500;
  /** The default: a tenth of the rate. */
  const BURST = RATE / 10;
  const CLIENTS = 5000;
  let sluice: SluiceProcess | undefined;
  let backend: TestBackend | undefined;
  /** performance.now() of every upgrade the backend accepted. */
  const arrivals: number[] = [];

  before(async () => {
    backend = await startBackend((ws) => {
      arrivals.push(performance.now());
      ws.on('error', () => undefined);
    });
    sluice = await startSluice(
      `entryPoints: { web: { address: "127.0.0.1:{PORT}" } }
http:
  routers:
    all: { rule: "PathPrefix(\`/\`)", service: pool }
  services:
    pool:
      loadBalancer:
        servers: [ { url: "${backend.url}" } ]
        admission: { average: ${RATE} }
`,
      { workers: 2, timeoutMs: 20_000 },
    );
  });

  after(async () => {
    await sluice?.stop();
    await backend?.close();
  });

  test(`a reconnect wave of ${CLIENTS} upgrades at once reaches the backend at about ${RATE}/s; the rest come back when told`, { timeout: 90_000 }, async () => {
    const port = sluice!.port;
    const key = 'dGhlIHNhbXBsZSBub25jZQ==';
    const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    const retryAfters: number[] = [];
    let refusals = 0;
    let badAccepts = 0;
    /** One client: upgrade; on 503 wait Retry-After and try again (at most 30 tries); resolves with its tries. */
    const client = async (i: number): Promise<number> => {
      for (let tries = 1; tries <= 30; tries++) {
        const status = await new Promise<{ code: number; retryAfter: number }>((resolve) => {
          const socket = net.connect({ port, host: '127.0.0.1', localAddress: localAddress(i) });
          let head = '';
          const done = (code: number, retryAfter = 0): void => {
            socket.destroy();
            resolve({ code, retryAfter });
          };
          socket.setTimeout(20_000, () => done(-1));
          socket.on('error', () => done(-1));
          socket.on('data', (d: Buffer) => {
            head += d.toString('latin1');
            if (!head.includes('\r\n\r\n')) return;
            const code = Number(head.slice(9, 12));
            if (code === 101 && !head.includes(accept)) badAccepts++;
            done(code, Number(/\r\nretry-after: *(\d+)/i.exec(head)?.[1] ?? '1'));
          });
          socket.write(`GET /wave/${i} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${key}\r\n\r\n`);
        });
        if (status.code === 101) return tries;
        if (status.code === 503) {
          refusals++;
          retryAfters.push(status.retryAfter);
          await new Promise((r) => setTimeout(r, status.retryAfter * 1000));
        } else await new Promise((r) => setTimeout(r, 1000)); // a refused connect (listen backlog): try again
      }
      return -1;
    };
    const started = performance.now();
    const tries = await Promise.all(Array.from({ length: CLIENTS }, (_, i) => client(i)));
    const seconds = (performance.now() - started) / 1000;
    assert.equal(tries.filter((t) => t < 0).length, 0, 'every client got in within 30 tries');
    assert.equal(badAccepts, 0, 'every 101 carried the right Sec-WebSocket-Accept');
    assert.equal(arrivals.length, CLIENTS);
    // Upgrades per second at the backend, from the first: the first second has the bucket's burst on top.
    const sorted = arrivals.slice().sort((a, b) => a - b);
    const perSecond: number[] = [];
    for (const at of sorted) perSecond[Math.floor((at - sorted[0]!) / 1000)] = (perSecond[Math.floor((at - sorted[0]!) / 1000)] ?? 0) + 1;
    const rate = CLIENTS / ((sorted[sorted.length - 1]! - sorted[0]!) / 1000);
    process.stderr.write(
      `admission wave: ${CLIENTS} clients in ${seconds.toFixed(1)} s, ${refusals} refusals, ${rate.toFixed(0)}/s at the backend overall, per second [${perSecond.join(', ')}], Retry-After 1..${Math.max(...retryAfters)} s (${new Set(retryAfters).size} values), mean tries ${(tries.reduce((a, b) => a + b, 0) / CLIENTS).toFixed(2)}\n`,
    );
    // The first second also has the 5,000 connects landing at once on two workers and on this process (timers
    // that fire late bunch up); after it, each second holds the rate and at most the bucket on top.
    assert.ok((perSecond[0] ?? 0) <= 2 * RATE, `first second ${perSecond[0]} (burst ${BURST} + ${RATE}/s)`);
    for (let s = 1; s < perSecond.length; s++) assert.ok((perSecond[s] ?? 0) <= (RATE + BURST) * 1.1, `second ${s}: ${perSecond[s]} upgrades (admission ${RATE}/s)`);
    assert.ok(rate >= RATE * 0.6 && rate <= RATE * 1.2, `overall ${rate.toFixed(0)}/s`);
    assert.ok(Math.max(...retryAfters) >= (CLIENTS / RATE) * 0.6, 'Retry-After spreads the wave over the time the backend needs');
    const samples = await scrape(sluice!.adminUrl);
    assert.equal(sampleValue(samples, 'sluice_limited_total', { router: 'all', kind: 'websocket', reason: 'backend_admission' }), refusals);
  });
});
