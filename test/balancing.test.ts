/**
 * Balancing through real worker threads: least connections counted globally in the SharedArrayBuffer
 * agrees with what the backends really hold and stays even across two workers; round robin spreads
 * evenly; a dead backend is skipped by retries, and without retries the client gets 502.
 * Sluice runs in-process where a test reads the shared counters, as a real process otherwise.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { WebSocket } from 'ws';
import { connect, roundTrip, terminateAll, tryUpgrade } from './helpers/clients.js';
import { backendIndexes, countsAgree, describeCounts, startInProcess, workerHolds, workerHoldsOn, type InProcessSluice } from './helpers/in-process.js';
import { freePort, simpleConfig, startBackend, startSluice, type SluiceProcess, type TestBackend } from './helpers/sluice.js';
import { seededRandom, waitFor } from './helpers/wait.js';
import { createShared, releaseWorkerSlot } from '../src/shared/layout.js';

/** Client source addresses: the kernel hashes the 4-tuple to pick a SO_REUSEPORT listener, so
 *  varying the source spreads connections over both workers. */
const localAddress = (i: number): string => `127.0.0.${2 + (i % 8)}`;

async function startBackends(count: number): Promise<TestBackend[]> {
  return Promise.all(Array.from({ length: count }, () => startBackend()));
}

describe('least connections across two workers', () => {
  let backends: TestBackend[] = [];
  let sluice: InProcessSluice | undefined;
  let indexes: number[] = [];
  const clients: WebSocket[] = [];

  before(async () => {
    backends = await startBackends(3);
    sluice = await startInProcess(simpleConfig(backends.map((b) => b.url)), 2);
    indexes = backendIndexes(sluice.snapshot, backends);
  });

  after(async () => {
    terminateAll(clients);
    await sluice?.stop();
    await Promise.all(backends.map((b) => b.close()));
  });

  /** Wait until the shared counts equal the live connections the backends see (and the clients hold). */
  async function settled(step: string): Promise<void> {
    const { shared } = sluice!;
    const live = (): number => clients.filter((ws) => ws.readyState === ws.OPEN).length;
    await waitFor(
      `counts to settle after ${step}`,
      () => backends.reduce((sum, b) => sum + b.sockets.size, 0) === live() && countsAgree(shared, indexes, backends),
      () => `${describeCounts(shared, indexes, backends)} clients ${live()}`,
    );
  }

  function assertEven(step: string): void {
    const counts = indexes.map((b) => Atomics.load(sluice!.shared.backendActive, b));
    assert.ok(Math.max(...counts) - Math.min(...counts) <= 1, `after ${step}: ${describeCounts(sluice!.shared, indexes, backends)}`);
  }

  async function openOne(step: string): Promise<void> {
    const ws = await connect(sluice!.url, { localAddress: localAddress(clients.length) });
    clients.push(ws);
    await settled(step);
    assertEven(step);
  }

  async function closeOne(random: () => number, step: string): Promise<void> {
    const open = clients.filter((ws) => ws.readyState === ws.OPEN);
    const victim = open[Math.floor(random() * open.length)]!;
    victim.close(1000);
    await waitFor(`client to close in ${step}`, () => victim.readyState === victim.CLOSED);
    await settled(step);
  }

  test('shared counts equal each backend\'s live connections and stay within one as clients come and go', async () => {
    const { shared } = sluice!;
    for (let i = 0; i < 24; i++) await openOne(`open #${i + 1}`);
    assert.ok(workerHolds(shared, 0) > 0 && workerHolds(shared, 1) > 0, `both workers must serve: ${describeCounts(shared, indexes, backends)}`);

    const random = seededRandom(20261121);
    for (let round = 0; round < 12; round++) {
      await closeOne(random, `close round ${round}`);
      // The next connection goes to the emptiest backend, which brings the pool back within one.
      await openOne(`reopen round ${round}`);
    }
    // Everything still carries traffic through the counted tunnels.
    const open = clients.filter((ws) => ws.readyState === ws.OPEN);
    assert.deepEqual(await Promise.all(open.map((ws, i) => roundTrip(ws, `m${i}`))), open.map((_, i) => `m${i}`));

    while (clients.some((ws) => ws.readyState === ws.OPEN)) await closeOne(random, 'closing all');
    for (const b of indexes) {
      assert.equal(Atomics.load(shared.backendActive, b), 0, `backend ${b} counts a ghost`);
      assert.equal(workerHoldsOn(shared, 0, b) + workerHoldsOn(shared, 1, b), 0);
    }
  });
});

describe('round robin across two workers', () => {
  let backends: TestBackend[] = [];
  let sluice: InProcessSluice | undefined;
  const clients: WebSocket[] = [];

  before(async () => {
    backends = await startBackends(3);
    sluice = await startInProcess(simpleConfig(backends.map((b) => b.url), 'loadBalancer:\n  strategy: roundrobin\n'), 2);
  });

  after(async () => {
    terminateAll(clients);
    await sluice?.stop();
    await Promise.all(backends.map((b) => b.close()));
  });

  test('each worker cycles the pool, so the pool fills evenly', async () => {
    const { shared, snapshot } = sluice!;
    const indexes = backendIndexes(snapshot, backends);
    for (let i = 0; i < 18; i++) clients.push(await connect(sluice!.url, { localAddress: localAddress(i) }));
    await waitFor(
      'backends to see every connection',
      () => backends.reduce((sum, b) => sum + b.sockets.size, 0) === clients.length && countsAgree(shared, indexes, backends),
      () => describeCounts(shared, indexes, backends),
    );
    for (let w = 0; w < 2; w++) {
      const held = indexes.map((b) => workerHoldsOn(shared, w, b));
      assert.ok(held.reduce((a, b) => a + b) > 0, `worker ${w} got no connection: ${describeCounts(shared, indexes, backends)}`);
      assert.ok(Math.max(...held) - Math.min(...held) <= 1, `worker ${w} is uneven: ${describeCounts(shared, indexes, backends)}`);
    }
    const real = backends.map((b) => b.sockets.size);
    // Each worker's cursor starts at the first backend, so the pool as a whole is within one per worker.
    assert.ok(Math.max(...real) - Math.min(...real) <= 2, `pool is uneven: ${real.join(',')}`);
  });
});

describe('a dead backend in the pool', () => {
  let backends: TestBackend[] = [];
  let sluice: SluiceProcess | undefined;
  const clients: WebSocket[] = [];

  after(async () => {
    terminateAll(clients);
    await sluice?.stop();
    await Promise.all(backends.map((b) => b.close()));
  });

  test('is skipped by retries: every client reaches a live backend', async () => {
    backends = await startBackends(2);
    const dead = `ws://127.0.0.1:${await freePort()}`;
    // Least connections finds the dead backend emptiest: whenever it is not cooling down, an upgrade tries it first.
    sluice = await startSluice(simpleConfig([dead, ...backends.map((b) => b.url)]), { workers: 1 });
    for (let i = 0; i < 8; i++) {
      const ws = await connect(sluice.url);
      clients.push(ws);
      assert.equal(await roundTrip(ws, `hello ${i}`), `hello ${i}`);
    }
    await waitFor('backends to see every connection', () => backends[0]!.sockets.size + backends[1]!.sockets.size === 8);
    assert.deepEqual(backends.map((b) => b.sockets.size), [4, 4]);
  });
});

describe('retries: 0 with the picked backend dead', () => {
  let backend: TestBackend | undefined;
  let sluice: SluiceProcess | undefined;
  const clients: WebSocket[] = [];

  after(async () => {
    terminateAll(clients);
    await sluice?.stop();
    await backend?.close();
  });

  test('answers 502 naming the service instead of trying another backend', async () => {
    backend = await startBackend();
    const dead = `ws://127.0.0.1:${await freePort()}`;
    // One worker and round robin: the dead backend is picked first; its refusal cools it down for 2 s,
    // so the next picks skip it.
    sluice = await startSluice(simpleConfig([dead, backend.url], 'loadBalancer:\n  strategy: roundrobin\n  retries: 0\n'), { workers: 1 });
    const outcomes: string[] = [];
    for (let i = 0; i < 4; i++) {
      const outcome = await tryUpgrade(sluice.url);
      if (outcome.kind === 'open') {
        clients.push(outcome.ws);
        outcomes.push('open');
      } else {
        outcomes.push(String(outcome.status));
        assert.match(outcome.body, /service 'pool'/);
      }
    }
    assert.deepEqual(outcomes, ['502', 'open', 'open', 'open']);
  });
});

describe('releaseWorkerSlot', () => {
  test('gives back exactly a dead worker\'s share of every backend and empties its slab', () => {
    const shared = createShared(3, 2);
    // Worker 0 holds 2, 0, 1 and worker 1 holds 1, 4, 0 connections on backends 0, 1, 2.
    const held = [
      [2, 0, 1],
      [1, 4, 0],
    ];
    held.forEach((perBackend, worker) =>
      perBackend.forEach((count, backend) => {
        Atomics.add(shared.workerActive, worker * 3 + backend, count);
        Atomics.add(shared.backendActive, backend, count);
      }),
    );
    releaseWorkerSlot(shared, 0);
    assert.deepEqual([...shared.backendActive], [1, 4, 0]);
    assert.deepEqual([...shared.workerActive], [0, 0, 0, 1, 4, 0]);
    releaseWorkerSlot(shared, 0); // a second release (or one after a clean drain) changes nothing
    assert.deepEqual([...shared.backendActive], [1, 4, 0]);
  });
});
