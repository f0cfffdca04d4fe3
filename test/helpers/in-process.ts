/**
 * Sluice's primary inside the test process: the config compiled with loadConfigText, the shared
 * counters from createShared, and a Supervisor running real worker threads. Tests use this when they
 * need to read the SharedArrayBuffer or inject a fault; everything else goes through startSluice.
 */
import { tmpdir } from 'node:os';
import { loadConfigText } from '../../src/config/load.js';
import type { Snapshot } from '../../src/config/snapshot.js';
import { createShared, type SharedViews } from '../../src/shared/layout.js';
import { planMetrics } from '../../src/shared/metrics-plan.js';
import { Supervisor } from '../../src/primary/supervisor.js';
import { freePort, type TestBackend } from './sluice.js';

export interface InProcessSluice {
  readonly snapshot: Snapshot;
  readonly shared: SharedViews;
  readonly supervisor: Supervisor;
  readonly port: number;
  readonly url: string;
  /** Drain every worker (idempotent). */
  stop(): Promise<void>;
}

/** Start Sluice in-process with `config` (YAML; `{PORT}` becomes a free port) and `workers` threads. */
export async function startInProcess(config: string, workers: number): Promise<InProcessSluice> {
  const port = await freePort();
  const snapshot = loadConfigText(config.replaceAll('{PORT}', String(port)), 'yaml', 'in-process.yaml', tmpdir(), { workers });
  const shared = createShared(snapshot.backends.length, snapshot.workers, planMetrics(snapshot).slabFloats);
  const supervisor = new Supervisor(snapshot, shared);
  let stopped: Promise<void> | null = null;
  const stop = (): Promise<void> => (stopped ??= supervisor.shutdown(0));
  try {
    await supervisor.start();
  } catch (error) {
    await stop();
    throw error;
  }
  return { snapshot, shared, supervisor, port, url: `ws://127.0.0.1:${port}`, stop };
}

/** The global backend index of each test backend (by port), in the order given. */
export function backendIndexes(snapshot: Snapshot, backends: readonly TestBackend[]): number[] {
  return backends.map((backend) => {
    const spec = snapshot.backends.find((b) => b.port === backend.port);
    if (spec === undefined) throw new Error(`backend on port ${backend.port} is not in the snapshot`);
    return spec.index;
  });
}

/** Live connections worker `worker` holds, over every backend (its workerActive slab). */
export function workerHolds(shared: SharedViews, worker: number): number {
  let sum = 0;
  for (let b = 0; b < shared.backendSlots; b++) sum += Atomics.load(shared.workerActive, worker * shared.backendSlots + b);
  return sum;
}

/** Live connections worker `worker` holds on backend `backend`. */
export function workerHoldsOn(shared: SharedViews, worker: number, backend: number): number {
  return Atomics.load(shared.workerActive, worker * shared.backendSlots + backend);
}

/**
 * The shared counts next to the real ones, for assertion messages:
 * `shared [2,3,2] real [2,3,2] workers [1,2,1|1,1,1]`.
 */
export function describeCounts(shared: SharedViews, indexes: readonly number[], backends: readonly TestBackend[]): string {
  const sharedCounts = indexes.map((b) => Atomics.load(shared.backendActive, b));
  const real = backends.map((b) => b.sockets.size);
  const perWorker = Array.from({ length: shared.workerSlots }, (_, w) => indexes.map((b) => workerHoldsOn(shared, w, b)).join(','));
  return `shared [${sharedCounts.join(',')}] real [${real.join(',')}] workers [${perWorker.join('|')}]`;
}

/** True when every backend's shared count equals its real live connections, and the per-worker
 *  slabs add up to the shared count. */
export function countsAgree(shared: SharedViews, indexes: readonly number[], backends: readonly TestBackend[]): boolean {
  return indexes.every((b, i) => {
    const active = Atomics.load(shared.backendActive, b);
    let perWorker = 0;
    for (let w = 0; w < shared.workerSlots; w++) perWorker += workerHoldsOn(shared, w, b);
    return active === backends[i]!.sockets.size && perWorker === active;
  });
}
