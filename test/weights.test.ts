/**
 * Weights and slow start: smooth weighted round robin hits its ratios exactly and interleaves;
 * leastconn and hash honour weights; a backend in slow start ramps from a trickle to its full
 * share; and through a real Sluice, roundrobin with weights 3:1 splits connections 3:1.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { WeightedRoundRobin } from '../src/balancer/weighted.js';
import { LeastConnections } from '../src/balancer/leastconn.js';
import { createBalancer } from '../src/balancer/balancer.js';
import { createShared } from '../src/shared/layout.js';
import { loadConfigText } from '../src/config/load.js';
import { pickFresh } from './helpers/balancer-cases.js';
import { startSluice, type SluiceProcess } from './helpers/sluice.js';
import { reachBackend, startPoolBackend, tally, type PoolBackend, type Reached } from './helpers/pool.js';

function pool(size: number): ReturnType<typeof createShared> {
  return createShared(size, 1);
}

describe('smooth weighted round robin', () => {
  test('every window of sum(weights) picks holds each backend exactly weight times', () => {
    const shared = pool(3);
    const wrr = new WeightedRoundRobin([0, 1, 2], shared, { weights: [5, 3, 1] });
    for (let window = 0; window < 10; window++) {
      const picks = Array.from({ length: 9 }, () => pickFresh(wrr));
      assert.deepEqual(tally(picks.map(String)), { '0': 5, '1': 3, '2': 1 }, `window ${window}: ${picks.join(',')}`);
    }
  });

  test('interleaves instead of bursting (5,1,1 gives a a b a c a a)', () => {
    const wrr = new WeightedRoundRobin([0, 1, 2], pool(3), { weights: [5, 1, 1] });
    assert.deepEqual(Array.from({ length: 7 }, () => pickFresh(wrr)), [0, 0, 1, 0, 2, 0, 0]);
  });

  test('weight 0 gets nothing; a down backend\'s share goes to the others in ratio', () => {
    const shared = pool(3);
    const wrr = new WeightedRoundRobin([0, 1, 2], shared, { weights: [2, 0, 1] });
    assert.deepEqual(tally(Array.from({ length: 30 }, () => String(pickFresh(wrr)))), { '0': 20, '2': 10 });
    Atomics.store(shared.backendUp, 0, 0);
    assert.deepEqual(tally(Array.from({ length: 5 }, () => String(pickFresh(wrr)))), { '2': 5 });
  });

  test('createBalancer uses it for roundrobin with weights', () => {
    const snapshot = loadConfigText(
      `entryPoints: { web: { address: ":1" } }
http:
  services:
    s:
      loadBalancer:
        strategy: roundrobin
        servers: [{ url: "ws://a:1", weight: 3 }, { url: "ws://b:1" }]
`, 'yaml', 'w.yaml', '/');
    const balancer = createBalancer(snapshot.services[0]!, pool(2), snapshot.backends);
    assert.ok(balancer instanceof WeightedRoundRobin);
    assert.deepEqual(tally(Array.from({ length: 40 }, () => String(pickFresh(balancer)))), { '0': 30, '1': 10 });
  });
});

describe('weighted least connections', () => {
  test('fills backends in proportion to their weights', () => {
    const shared = pool(2);
    const lc = new LeastConnections([0, 1], shared, { weights: [3, 1] });
    for (let i = 0; i < 40; i++) Atomics.add(shared.backendActive, pickFresh(lc), 1);
    assert.deepEqual([...shared.backendActive.slice(0, 2)], [30, 10]);
  });
});

describe('slow start', () => {
  test('a backend that just came up takes a share that grows with time, not every new connection', () => {
    const shared = pool(3);
    const lc = new LeastConnections([0, 1, 2], shared, { slowStartMs: 10_000 });
    shared.backendActive.set([100, 100, 0]);
    // Came up 1 s ago: a tenth of its weight. Without slow start it would take the next 100.
    shared.backendUpSince[2] = Date.now() - 1000;
    const placed = [0, 0, 0];
    for (let i = 0; i < 60; i++) {
      const b = pickFresh(lc);
      placed[b]!++;
      Atomics.add(shared.backendActive, b, 1);
    }
    const ramped = shared.backendActive[2]!;
    assert.ok(ramped >= 5 && ramped <= 20, `newcomer holds ${ramped} (placed ${placed.join(',')}): expected about a tenth of the others' ~130`);
    assert.ok(placed[0]! + placed[1]! >= 40, `the others must keep taking connections: ${placed.join(',')}`);
    // Once the window has passed it is an equal again and catches up.
    shared.backendUpSince[2] = Date.now() - 10_001;
    for (let i = 0; i < 3; i++) assert.equal(pickFresh(lc), 2);
  });

  test('weighted round robin ramps the newcomer\'s share from 1% to its weight', () => {
    const shared = pool(2);
    const wrr = new WeightedRoundRobin([0, 1], shared, { slowStartMs: 10_000 });
    shared.backendUpSince[1] = Date.now() - 5000; // half way: weight 0.5 against 1
    const picks = tally(Array.from({ length: 300 }, () => String(pickFresh(wrr))));
    assert.ok(Math.abs(picks['1']! - 100) <= 3, `half-weight newcomer got ${picks['1']} of 300`);
    shared.backendUpSince[1] = Date.now();
    const early = tally(Array.from({ length: 200 }, () => String(pickFresh(wrr))));
    assert.ok((early['1'] ?? 0) <= 4, `just up: ${early['1']} of 200`);
  });
});

describe('weights through Sluice', () => {
  let backends: PoolBackend[] = [];
  let sluice: SluiceProcess | undefined;
  const open: Reached[] = [];

  before(async () => {
    backends = await Promise.all(['heavy', 'light'].map((n) => startPoolBackend(n)));
    sluice = await startSluice(`entryPoints:
  web: { address: "127.0.0.1:{PORT}" }
http:
  routers:
    all: { rule: "PathPrefix(\`/\`)", service: pool }
  services:
    pool:
      loadBalancer:
        strategy: roundrobin
        servers:
          - { url: "${backends[0]!.url}", weight: 3 }
          - { url: "${backends[1]!.url}", weight: 1 }
`);
  });

  after(async () => {
    for (const r of open) r.ws.terminate();
    await sluice?.stop();
    await Promise.all(backends.map((b) => b.kill()));
  });

  test('roundrobin with weights 3 and 1 sends 30 of 40 connections to the heavy backend', async () => {
    for (let i = 0; i < 40; i++) open.push(await reachBackend(sluice!.url));
    assert.deepEqual(tally(open.map((r) => r.backend)), { heavy: 30, light: 10 });
  });
});
