/**
 * Every balancing policy against the shared case suite (test/helpers/balancer-cases.ts), plus what is
 * particular to each: least connections picks the minimum and rotates ties; round robin cycles.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LeastConnections } from '../src/balancer/leastconn.js';
import { RoundRobin } from '../src/balancer/roundrobin.js';
import { WeightedRoundRobin } from '../src/balancer/weighted.js';
import { HashRing, mix32 } from '../src/balancer/hash.js';
import { StickyBalancer } from '../src/balancer/sticky.js';
import { createBalancer } from '../src/balancer/balancer.js';
import type { ServiceSpec } from '../src/config/snapshot.js';
import { createShared } from '../src/shared/layout.js';
import { makePool, pickFresh, runBalancerCases, type NewBalancer } from './helpers/balancer-cases.js';

runBalancerCases('leastconn', (backends, state) => new LeastConnections(backends, state));
runBalancerCases('roundrobin', (backends, state) => new RoundRobin(backends, state));
runBalancerCases('weighted roundrobin', (backends, state) => new WeightedRoundRobin(backends, state));
runBalancerCases('weighted roundrobin in slow start', (backends, state) => new WeightedRoundRobin(backends, state, { slowStartMs: 1000 }));
runBalancerCases('leastconn in slow start', (backends, state) => new LeastConnections(backends, state, { slowStartMs: 1000 }));
// Every pick with a key from a fixed sequence (the suite passes no request); factor 1 so that the
// bound alone keeps the pool within one.
runBalancerCases('hash (bounded load)', (backends, state) => {
  const ring = new HashRing(backends, state, {}, backends.map((b) => `ws://10.0.0.${b}:9000`), 1);
  let next = 0;
  return { pick: (tried, triedCount) => ring.pick(tried, triedCount, { hashKey: mix32(next++), stickyBackend: -1 }) };
});
runBalancerCases('hash (requests without a key)', (backends, state) =>
  new HashRing(backends, state, {}, backends.map((b) => `ws://10.0.0.${b}:9000`), 1.25));
runBalancerCases('sticky over leastconn (no cookie)', (backends, state) => new StickyBalancer(new LeastConnections(backends, state), backends, state));

describe('leastconn', () => {
  const newLeastConn: NewBalancer = (backends, state) => new LeastConnections(backends, state);

  test('picks the backend with the fewest live connections', () => {
    const { balancer, shared } = makePool(newLeastConn, 4);
    shared.backendActive.set([7, 3, 9, 4]);
    for (let i = 0; i < 8; i++) assert.equal(pickFresh(balancer), 1, `pick ${i}`);
    Atomics.sub(shared.backendActive, 3, 2); // another worker's connections on backend 3 closed
    assert.equal(pickFresh(balancer), 3);
  });

  test('the minimum among the backends not yet tried', () => {
    const { balancer, shared } = makePool(newLeastConn, 4);
    shared.backendActive.set([1, 0, 5, 2]);
    assert.equal(balancer.pick(Int32Array.of(1), 1), 0);
    assert.equal(balancer.pick(Int32Array.of(1, 0), 2), 3);
    assert.equal(balancer.pick(Int32Array.of(1, 0, 3), 3), 2);
  });

  test('ties rotate instead of piling onto the first backend', () => {
    const { balancer } = makePool(newLeastConn, 3);
    // Nothing opened between picks (concurrent upgrades): every backend is tied at 0.
    const picks = Array.from({ length: 9 }, () => pickFresh(balancer));
    for (const b of [0, 1, 2]) assert.equal(picks.filter((p) => p === b).length, 3, `picks: ${picks.join(',')}`);
  });

  test('ties rotate only among the tied minimum', () => {
    const { balancer, shared } = makePool(newLeastConn, 4);
    shared.backendActive.set([2, 1, 2, 1]);
    const picks = new Set(Array.from({ length: 6 }, () => pickFresh(balancer)));
    assert.deepEqual([...picks].sort(), [1, 3]);
  });
});

describe('roundrobin', () => {
  test('cycles through the pool in order, evenly', () => {
    const { balancer } = makePool((b, s) => new RoundRobin(b, s), 3, 2, 6);
    const picks = Array.from({ length: 12 }, () => pickFresh(balancer));
    assert.deepEqual(picks, [2, 3, 4, 2, 3, 4, 2, 3, 4, 2, 3, 4]);
  });

  test('ignores live connection counts', () => {
    const { balancer, shared } = makePool((b, s) => new RoundRobin(b, s), 3);
    shared.backendActive.set([100, 0, 0]);
    assert.deepEqual(Array.from({ length: 6 }, () => pickFresh(balancer)), [0, 1, 2, 0, 1, 2]);
  });

  test('a down backend is skipped and the rest stay even', () => {
    const { balancer, shared } = makePool((b, s) => new RoundRobin(b, s), 3);
    Atomics.store(shared.backendUp, 1, 0);
    const picks = Array.from({ length: 10 }, () => pickFresh(balancer));
    assert.equal(picks.filter((p) => p === 0).length, 5, picks.join(','));
    assert.equal(picks.filter((p) => p === 2).length, 5, picks.join(','));
  });
});

describe('sticky', () => {
  test('the cookie\'s backend wins while it is up, untried and not cooling down; otherwise the wrapped policy picks', () => {
    const { balancer, shared } = makePool((b, s) => new StickyBalancer(new LeastConnections(b, s), b, s), 3);
    shared.backendActive.set([0, 0, 9]);
    const toTwo = { hashKey: -1, stickyBackend: 2 };
    for (let i = 0; i < 4; i++) assert.equal(balancer.pick(new Int32Array(0), 0, toTwo), 2);
    assert.notEqual(balancer.pick(Int32Array.of(2), 1, toTwo), 2, 'tried: not again');
    shared.backendCoolUntil[2] = Date.now() + 60_000;
    assert.notEqual(balancer.pick(new Int32Array(0), 0, toTwo), 2, 'cooling down after a failed connect: not picked');
    shared.backendCoolUntil[2] = 0;
    Atomics.store(shared.backendUp, 2, 0);
    assert.notEqual(balancer.pick(new Int32Array(0), 0, toTwo), 2, 'down: not picked');
    assert.notEqual(balancer.pick(new Int32Array(0), 0, { hashKey: -1, stickyBackend: 7 }), 7, 'not in the pool');
  });
});

describe('createBalancer', () => {
  const service = (strategy: ServiceSpec['strategy']): ServiceSpec => ({
    name: 'pool',
    strategy,
    retries: 2,
    passHostHeader: true,
    transport: 0,
    backends: [1, 2],
    hash: null,
    sticky: null,
    healthCheck: null,
    passiveHealthCheck: null,
    slowStartMs: 0,
    drainWindowMs: 10_000,
    onRemove: 'drain',
    discovery: null,
    retryAfterSeconds: 1,
    limits: { maxConnections: 0, admission: null },
  });

  test('builds the policy the service names, over the service\'s backends', () => {
    const shared = createShared(3, 1);
    assert.ok(createBalancer(service('leastconn'), shared) instanceof LeastConnections);
    const rr = createBalancer(service('roundrobin'), shared);
    assert.ok(rr instanceof RoundRobin);
    assert.deepEqual([pickFresh(rr), pickFresh(rr), pickFresh(rr)], [1, 2, 1]);
  });
});
