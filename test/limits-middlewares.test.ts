/**
 * Traefik's inFlightReq, rateLimit and ipAllowList, on plain HTTP requests and on WebSocket upgrades alike, in a
 * Sluice with two workers: what the client gets (429 with Retry-After, 403), that the counts are per source and
 * shared by the workers, that a WebSocket holds its inFlightReq slot until it closes, and the metrics
 * (sluice_limited_total, websocket_connections_total{outcome="limited"}).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startSluice, type SluiceProcess } from './helpers/sluice.js';
import { startHttpBackend, type HttpBackend } from './helpers/http-backend.js';
import { attempt, release, scrape, type Attempt, type Kind } from './helpers/limits.js';
import { sampleSum, sampleValue } from './helpers/admin.js';
import { waitFor } from './helpers/wait.js';

let sluice: SluiceProcess | undefined;
let backend: HttpBackend | undefined;

before(async () => {
  backend = await startHttpBackend('mw');
  const router = (name: string, middlewares: string[]): string => `    ${name}: { rule: "PathPrefix(\`/${name}\`)", service: mw, middlewares: [${middlewares.join(', ')}] }\n`;
  sluice = await startSluice(
    `entryPoints:
  web:
    address: "127.0.0.1:{PORT}"
    forwardedHeaders: { trustedIPs: ["127.0.0.4"] }
http:
  routers:
${router('inflight-http', ['inflightHttp'])}${router('inflight-upgrade', ['inflightUpgrade'])}${router('rate-http', ['rateHttp'])}${router('rate-upgrade', ['rateUpgrade'])}${router('bykey', ['byKey'])}${router('allow', ['allow'])}${router('depth', ['depth'])}
  services:
    mw: { loadBalancer: { servers: [ { url: "${backend.url}" } ] } }
  middlewares:
    inflightHttp: { inFlightReq: { amount: 2 } }
    inflightUpgrade: { inFlightReq: { amount: 3 } }
    rateHttp: { rateLimit: { average: 5, period: 1m, burst: 5 } }
    rateUpgrade: { rateLimit: { average: 5, period: 1m, burst: 5 } }
    byKey: { rateLimit: { average: 1, period: 1m, burst: 1, sourceCriterion: { requestHeaderName: X-Api-Key } } }
    allow: { ipAllowList: { sourceRange: ["127.0.0.2/32", "10.0.0.0/8"] } }
    depth: { ipAllowList: { sourceRange: ["10.0.0.0/8"], ipStrategy: { depth: 1 } } }
`,
    { workers: 2, timeoutMs: 20_000 },
  );
});

after(async () => {
  await sluice?.stop();
  await backend?.close();
});

function statuses(attempts: readonly Attempt[]): Record<number, number> {
  const out: Record<number, number> = {};
  for (const a of attempts) out[a.status] = (out[a.status] ?? 0) + 1;
  return out;
}

const ok = (kind: Kind): number => (kind === 'http' ? 200 : 101);

describe('inFlightReq', () => {
  test('upgrades: a WebSocket holds its slot for its whole life, in every worker; closing one lets the next in', async () => {
    const port = sluice!.port;
    // Eight at once from one address land on both workers; the count is shared, so three get in.
    const first = await Promise.all(Array.from({ length: 8 }, () => attempt('upgrade', port, '/inflight-upgrade', { localAddress: '127.0.0.2' })));
    try {
      assert.deepEqual(statuses(first), { 101: 3, 429: 5 });
      const refused = first.find((a) => a.status === 429)!;
      assert.equal(refused.body, 'Too Many Requests\n');
      // Still open well after their handshakes: still counted.
      const again = await attempt('upgrade', port, '/inflight-upgrade', { localAddress: '127.0.0.2' });
      assert.equal(again.status, 429, 'open WebSockets stay in flight after the upgrade');
      const other = await attempt('upgrade', port, '/inflight-upgrade', { localAddress: '127.0.0.3' });
      assert.equal(other.status, 101, 'another client has its own count');
      release(other);
      release(first.find((a) => a.status === 101)!);
      // The close reaches Sluice asynchronously: try until the freed slot is there (bounded).
      let next: Attempt | undefined;
      for (let i = 0; i < 50 && next?.status !== 101; i++) {
        next = await attempt('upgrade', port, '/inflight-upgrade', { localAddress: '127.0.0.2' });
        if (next.status !== 101) await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(next?.status, 101, 'a closed WebSocket gave its slot back');
      release(next!);
    } finally {
      first.forEach(release);
    }
  });

  test('HTTP: requests in flight count until answered or abandoned', async () => {
    const port = sluice!.port;
    const seen = backend!.requests.length;
    const held = [await attempt('http', port, '/inflight-http/hang', { localAddress: '127.0.0.2', hold: true }), await attempt('http', port, '/inflight-http/hang', { localAddress: '127.0.0.2', hold: true })];
    try {
      await waitFor('both hanging requests at the backend', () => backend!.requests.length >= seen + 2);
      const third = await attempt('http', port, '/inflight-http/x', { localAddress: '127.0.0.2' });
      assert.equal(third.status, 429);
      assert.equal((await attempt('http', port, '/inflight-http/x', { localAddress: '127.0.0.3' })).status, 200);
    } finally {
      held.forEach(release);
    }
    let status = 0;
    for (let i = 0; i < 50 && status !== 200; i++) {
      status = (await attempt('http', port, '/inflight-http/x', { localAddress: '127.0.0.2' })).status;
      if (status !== 200) await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(status, 200, 'abandoned requests gave their slots back');
  });
});

describe('rateLimit', () => {
  for (const kind of ['http', 'upgrade'] as const) {
    test(`${kind}: the burst passes, the rest get 429 with Retry-After, across both workers; other clients are not affected`, async () => {
      const port = sluice!.port;
      const path = kind === 'http' ? '/rate-http/x' : '/rate-upgrade';
      const before = await scrape(sluice!.adminUrl);
      const burst = await Promise.all(Array.from({ length: 12 }, () => attempt(kind, port, path, { localAddress: '127.0.0.5' })));
      burst.forEach(release);
      assert.deepEqual(statuses(burst), { [ok(kind)]: 5, 429: 7 });
      const refused = burst.find((a) => a.status === 429)!;
      // 5 per minute: a token every 12 s.
      const retryAfter = Number(refused.headers['retry-after']);
      assert.ok(retryAfter >= 1 && retryAfter <= 12, `Retry-After ${retryAfter}`);
      assert.match(String(refused.headers['x-retry-in']), /^\d+(\.\d+)?(ms|s)$/);
      const other = await attempt(kind, port, path, { localAddress: '127.0.0.6' });
      release(other);
      assert.equal(other.status, ok(kind));
      const samples = await scrape(sluice!.adminUrl);
      const limited = (s: typeof samples): number => sampleValue(s, 'sluice_limited_total', { router: kind === 'http' ? 'rate-http' : 'rate-upgrade', kind: kind === 'http' ? 'http' : 'websocket', reason: 'rate_limit' });
      assert.equal(limited(samples) - limited(before), 7);
      if (kind === 'upgrade') {
        const outcome = (s: typeof samples): number => sampleSum(s, 'websocket_connections_total', { router: 'rate-upgrade', outcome: 'limited' });
        assert.equal(outcome(samples) - outcome(before), 7);
      }
    });
  }

  test('sourceCriterion.requestHeaderName: one bucket per header value', async () => {
    const port = sluice!.port;
    const a1 = await attempt('http', port, '/bykey/x', { headers: { 'x-api-key': 'alpha' } });
    const a2 = await attempt('http', port, '/bykey/x', { headers: { 'x-api-key': 'alpha' } });
    const b1 = await attempt('upgrade', port, '/bykey', { headers: { 'x-api-key': 'beta' } });
    release(b1);
    assert.deepEqual([a1.status, a2.status, b1.status], [200, 429, 101]);
  });
});

describe('ipAllowList', () => {
  for (const kind of ['http', 'upgrade'] as const) {
    test(`${kind}: an address in sourceRange passes, another gets 403`, async () => {
      const port = sluice!.port;
      const allowed = await attempt(kind, port, kind === 'http' ? '/allow/x' : '/allow', { localAddress: '127.0.0.2' });
      const refused = await attempt(kind, port, kind === 'http' ? '/allow/x' : '/allow', { localAddress: '127.0.0.3' });
      release(allowed);
      assert.equal(allowed.status, ok(kind));
      assert.equal(refused.status, 403);
      assert.equal(refused.body, 'Forbidden\n');
    });

    test(`${kind}: ipStrategy.depth reads X-Forwarded-For only from a trusted peer`, async () => {
      const port = sluice!.port;
      const path = kind === 'http' ? '/depth/x' : '/depth';
      const trusted = await attempt(kind, port, path, { localAddress: '127.0.0.4', headers: { 'x-forwarded-for': '10.1.2.3' } });
      const untrusted = await attempt(kind, port, path, { localAddress: '127.0.0.5', headers: { 'x-forwarded-for': '10.1.2.3' } });
      const outside = await attempt(kind, port, path, { localAddress: '127.0.0.4', headers: { 'x-forwarded-for': '192.0.2.1' } });
      [trusted, untrusted, outside].forEach(release);
      assert.deepEqual([trusted.status, untrusted.status, outside.status], [ok(kind), 403, 403]);
    });
  }
});
