/**
 * Every balancing policy against the shared case suite (test/helpers/balancer-cases.ts), plus what is
 * particular to each: least connections picks the minimum and rotates ties; round robin cycles.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LeastConnections } from '../src/balancer/leastconn.js';
import { RoundRobin } from '../src/balancer/roundrobin.js';
import { createBalancer } from '../src/balancer/balancer.js';
import type { ServiceSpec } from '../src/config/snapshot.js';
import { createShared } from '../src/shared/layout.js';
import { makePool, pickFresh, runBalancerCases, type NewBalancer } from './helpers/balancer-cases.js';

runBalancerCases('leastconn', (backends, state) => new LeastConnections(backends, state));
runBalancerCases('roundrobin', (backends, state) => new RoundRobin(backends, state));

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

describe('createBalancer', () => {
  const service = (strategy: ServiceSpec['strategy']): ServiceSpec => ({
    name: 'pool',
    strategy,
    retries: 2,
    passHostHeader: true,
    transport: 0,
    backends: [1, 2],
  });

  test('builds the policy the service names, over the service\'s backends', () => {
    const shared = createShared(3, 1);
    assert.ok(createBalancer(service('leastconn'), shared) instanceof LeastConnections);
    const rr = createBalancer(service('roundrobin'), shared);
    assert.ok(rr instanceof RoundRobin);
    assert.deepEqual([pickFresh(rr), pickFresh(rr), pickFresh(rr)], [1, 2, 1]);
  });
});
