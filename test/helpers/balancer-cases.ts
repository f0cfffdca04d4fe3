/**
 * The case suite every balancing policy must pass, in Hono's `runTest({ newRouter })` style: a policy's
 * own test file calls `runBalancerCases` with a factory and adds only what is particular to it.
 * State lives in a real SharedArrayBuffer from `createShared`, as in the workers.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Balancer, BackendState } from '../../src/balancer/balancer.js';
import { createShared, type SharedViews } from '../../src/shared/layout.js';

export type NewBalancer = (backends: readonly number[], state: BackendState) => Balancer;

/** A pool of `size` backends at global indexes `first..first+size-1`, inside a layout of `slots`. */
export function makePool(newBalancer: NewBalancer, size: number, first = 0, slots = first + size + 2): {
  balancer: Balancer;
  shared: SharedViews;
  backends: number[];
} {
  const shared = createShared(slots, 2);
  const backends = Array.from({ length: size }, (_, i) => first + i);
  return { balancer: newBalancer(backends, shared), shared, backends };
}

const NONE = new Int32Array(0);

/** Pick with nothing tried yet. */
export function pickFresh(balancer: Balancer): number {
  return balancer.pick(NONE, 0);
}

/** Pick repeatedly as the upgrade loop does, marking each choice tried, until the policy says -1. */
export function pickUntilExhausted(balancer: Balancer, maxAttempts: number): number[] {
  const tried = new Int32Array(maxAttempts);
  const picked: number[] = [];
  for (let i = 0; i < maxAttempts; i++) {
    const backend = balancer.pick(tried, i);
    if (backend < 0) break;
    tried[i] = backend;
    picked.push(backend);
  }
  return picked;
}

export function runBalancerCases(name: string, newBalancer: NewBalancer): void {
  describe(`${name}: common balancer cases`, () => {
    test('an empty pool picks -1', () => {
      const { balancer } = makePool(newBalancer, 0);
      assert.equal(pickFresh(balancer), -1);
    });

    test('picks only backends of its own pool, by global index', () => {
      // Pool at global indexes 3..5 in a layout of 8: other services' slots must never come back.
      const { balancer, backends } = makePool(newBalancer, 3, 3, 8);
      for (let i = 0; i < 30; i++) assert.ok(backends.includes(pickFresh(balancer)), `pick ${i} left the pool`);
    });

    test('never picks a backend that is down', () => {
      const { balancer, shared } = makePool(newBalancer, 4);
      Atomics.store(shared.backendUp, 2, 0);
      // Even with the fewest connections, a down backend must lose.
      Atomics.store(shared.backendActive, 0, 5);
      Atomics.store(shared.backendActive, 1, 5);
      Atomics.store(shared.backendActive, 3, 5);
      for (let i = 0; i < 40; i++) assert.notEqual(pickFresh(balancer), 2, `pick ${i}`);
    });

    test('picks -1 when every backend is down', () => {
      const { balancer, shared, backends } = makePool(newBalancer, 3);
      for (const b of backends) Atomics.store(shared.backendUp, b, 0);
      for (let i = 0; i < 5; i++) assert.equal(pickFresh(balancer), -1);
    });

    test('a backend that comes back up is picked again', () => {
      const { balancer, shared } = makePool(newBalancer, 2);
      Atomics.store(shared.backendUp, 0, 0);
      assert.deepEqual([pickFresh(balancer), pickFresh(balancer)], [1, 1]);
      Atomics.store(shared.backendUp, 0, 1);
      const seen = new Set([pickFresh(balancer), pickFresh(balancer)]);
      assert.ok(seen.has(0), 'backend 0 never picked after it came back up');
    });

    test('passes over a backend cooling down, even the emptiest, and picks it again once the cool-down ends', () => {
      const { balancer, shared } = makePool(newBalancer, 3);
      Atomics.store(shared.backendActive, 0, 5);
      Atomics.store(shared.backendActive, 1, 5);
      shared.backendCoolUntil[2] = Date.now() + 60_000;
      for (let i = 0; i < 30; i++) assert.notEqual(pickFresh(balancer), 2, `pick ${i}`);
      shared.backendCoolUntil[2] = Date.now() - 1;
      const seen = new Set(Array.from({ length: 6 }, () => pickFresh(balancer)));
      assert.ok(seen.has(2), 'backend 2 never picked after its cool-down ended');
    });

    test('when every backend left is cooling down, one is picked anyway (never -1 for that)', () => {
      const { balancer, shared, backends } = makePool(newBalancer, 3);
      for (const b of backends) shared.backendCoolUntil[b] = Date.now() + 60_000;
      assert.deepEqual(pickUntilExhausted(balancer, 5).sort(), backends);
      // A down backend stays out: cooling never overrides health.
      Atomics.store(shared.backendUp, 0, 0);
      assert.ok(!pickUntilExhausted(balancer, 5).includes(0));
    });

    test('never picks a backend already tried for this request, then -1', () => {
      const { balancer, backends } = makePool(newBalancer, 4);
      const picked = pickUntilExhausted(balancer, 10);
      assert.deepEqual([...picked].sort(), backends, 'each backend once, then none left');
    });

    test('retries skip down and tried backends together', () => {
      const { balancer, shared } = makePool(newBalancer, 4);
      Atomics.store(shared.backendUp, 1, 0);
      const tried = Int32Array.of(3, 0, 0);
      for (let i = 0; i < 8; i++) {
        const b = balancer.pick(tried, 1);
        assert.ok(b === 0 || b === 2, `pick ${i}: ${b}`);
      }
      assert.equal(balancer.pick(Int32Array.of(3, 0, 2), 3), -1, 'only the down backend is left');
    });

    test('only the first triedCount entries of tried count (the caller reuses the array)', () => {
      const { balancer } = makePool(newBalancer, 2);
      const stale = Int32Array.of(0, 1);
      const seen = new Set<number>();
      for (let i = 0; i < 4; i++) seen.add(balancer.pick(stale, 0));
      assert.deepEqual([...seen].sort(), [0, 1], 'stale entries past triedCount were treated as tried');
    });

    test('connections opened one by one stay within one of each other', () => {
      // Each pick opens a connection (as countOn does); both policies must fill the pool evenly.
      const { balancer, shared, backends } = makePool(newBalancer, 3);
      for (let i = 0; i < 30; i++) {
        const b = pickFresh(balancer);
        assert.ok(b >= 0);
        Atomics.add(shared.backendActive, b, 1);
        const counts = backends.map((x) => shared.backendActive[x]!);
        assert.ok(Math.max(...counts) - Math.min(...counts) <= 1, `after ${i + 1} picks: ${counts.join(', ')}`);
      }
    });
  });
}
