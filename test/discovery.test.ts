/**
 * DNS discovery against a tiny DNS server written here (node:dgram on 127.0.0.1, answering A
 * queries from a list the test changes): a name that resolves to 127.0.0.2, .3 and .4 becomes
 * three backends; an address that leaves DNS is drained (1012) and gets no new connections; one
 * that comes back joins again; a resolver that stops answering changes nothing.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { freePort, startSluice, type SluiceProcess } from './helpers/sluice.js';
import { reachBackend, startPoolBackend, tally, type PoolBackend, type Reached } from './helpers/pool.js';
import { waitFor } from './helpers/wait.js';
import { TestDns } from './helpers/dns.js';

const NAME = 'pool.sluice.test';

describe('DNS discovery', () => {
  const dns = new TestDns();
  let backends: PoolBackend[] = [];
  let sluice: SluiceProcess | undefined;
  const clients: Reached[] = [];

  before(async () => {
    await dns.start();
    const port = await freePort('127.0.0.2');
    backends = await Promise.all(['127.0.0.2', '127.0.0.3', '127.0.0.4'].map((host) => startPoolBackend(host, host, port)));
    dns.records.set(NAME, ['127.0.0.2', '127.0.0.3', '127.0.0.4']);
    sluice = await startSluice(`entryPoints:
  web: { address: "127.0.0.1:{PORT}" }
http:
  routers:
    all: { rule: "PathPrefix(\`/\`)", service: pool }
  services:
    pool:
      loadBalancer:
        strategy: roundrobin
        drainWindow: 300ms
        discovery: { type: dns, refreshInterval: 100ms, maxAddresses: 4 }
        servers:
          - url: "ws://${NAME}:${port}"
dns:
  servers: ["127.0.0.1:${dns.port}"]
`, { workers: 2 });
  });

  after(async () => {
    for (const c of clients) c.ws.terminate();
    await sluice?.stop();
    await Promise.all(backends.map((b) => b.kill()));
    dns.close();
  });

  async function connectMany(n: number): Promise<Reached[]> {
    const batch: Reached[] = [];
    for (let i = 0; i < n; i++) batch.push(await reachBackend(sluice!.url));
    clients.push(...batch);
    return batch;
  }

  test('a name resolving to three addresses becomes three backends', async () => {
    // Two workers, each with its own round robin: 12 connections reach all three.
    const batch = await connectMany(12);
    assert.deepEqual(Object.keys(tally(batch.map((c) => c.backend))).sort(), ['127.0.0.2', '127.0.0.3', '127.0.0.4']);
    assert.match(sluice!.stderr(), /discovery: pool\.sluice\.test: 127\.0\.0\.4 joins/);
    // The admin API lists each slot as URL#N with the address it holds.
    const listed = (await (await fetch(`${sluice!.adminUrl}/api/backends`)).json()) as { url: string; state: string; health: { address: string } }[];
    assert.deepEqual(
      listed.map((b) => [b.url.replace(/^.*#/, '#'), b.state, b.health.address]).sort(),
      [['#0', 'up', '127.0.0.2'], ['#1', 'up', '127.0.0.3'], ['#2', 'up', '127.0.0.4'], ['#3', 'down', '']],
    );
  });

  test('an address that leaves DNS is drained with 1012 and gets no new connections', async () => {
    const onFour = clients.filter((c) => c.backend === '127.0.0.4' && c.ws.readyState === c.ws.OPEN);
    assert.ok(onFour.length > 0);
    dns.records.set(NAME, ['127.0.0.2', '127.0.0.3']);
    const closes = await Promise.all(onFour.map((c) => c.closed));
    assert.deepEqual([...new Set(closes.map((c) => c.code))], [1012]);
    const batch = await connectMany(8);
    assert.deepEqual(Object.keys(tally(batch.map((c) => c.backend))).sort(), ['127.0.0.2', '127.0.0.3']);
    for (const c of clients.filter((x) => x.backend !== '127.0.0.4')) assert.equal(c.ws.readyState, c.ws.OPEN);
  });

  test('an address that comes back joins again', async () => {
    dns.records.set(NAME, ['127.0.0.2', '127.0.0.3', '127.0.0.4']);
    await waitFor('127.0.0.4 to rejoin', () => (sluice!.stderr().match(/127\.0\.0\.4 joins/g) ?? []).length >= 2);
    const batch = await connectMany(12);
    assert.ok(batch.some((c) => c.backend === '127.0.0.4'), JSON.stringify(tally(batch.map((c) => c.backend))));
  });

  test('a resolver that stops answering changes nothing', async () => {
    dns.silent = true;
    const before = dns.queries;
    await waitFor('lookups to fail', () => /cannot resolve 'pool\.sluice\.test'/.test(sluice!.stderr()), undefined, { timeoutMs: 15_000 });
    assert.ok(dns.queries > before);
    const batch = await connectMany(12);
    assert.deepEqual(Object.keys(tally(batch.map((c) => c.backend))).sort(), ['127.0.0.2', '127.0.0.3', '127.0.0.4']);
    assert.ok(clients.filter((c) => c.backend !== '127.0.0.4' || batch.includes(c)).every((c) => c.ws.readyState === c.ws.OPEN));
    dns.silent = false;
  });
});
