/**
 * Sluice's primary inside the test process, exactly as `sluice run` builds it (src/primary/primary.ts):
 * the config written to a temporary file, the shared counters, real worker threads, live configuration
 * and the admin listener on a free port. Tests use this when they need to read the SharedArrayBuffer,
 * inject a fault or reload; everything else goes through startSluice.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Snapshot } from '../../src/config/snapshot.js';
import type { SharedViews } from '../../src/shared/layout.js';
import type { Supervisor } from '../../src/primary/supervisor.js';
import { createPrimary, type Primary } from '../../src/primary/primary.js';
import { freePort, type TestBackend } from './sluice.js';

export interface InProcessSluice {
  /** The config Sluice started with. */
  readonly snapshot: Snapshot;
  readonly shared: SharedViews;
  readonly supervisor: Supervisor;
  readonly primary: Primary;
  readonly port: number;
  readonly url: string;
  readonly adminPort: number;
  readonly adminUrl: string;
  /** The config file (rewrite it and call primary.reload, or let the watcher see it). */
  readonly configFile: string;
  /** Close every connection at once and stop the workers (idempotent). */
  stop(): Promise<void>;
}

/** Start Sluice in-process with `config` (YAML; `{PORT}` and `{ADMIN_PORT}` become free ports, an
 *  admin.address on loopback is added when absent) and `workers` threads. */
export async function startInProcess(config: string, workers: number, options: { watch?: boolean } = {}): Promise<InProcessSluice> {
  const port = await freePort();
  let adminPort = await freePort();
  while (adminPort === port) adminPort = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), 'sluice-inproc-'));
  const configFile = path.join(dir, 'sluice.yaml');
  const text = (/^admin:/m.test(config) ? config : `${config}\nadmin:\n  address: "127.0.0.1:{ADMIN_PORT}"\n`)
    .replaceAll('{PORT}', String(port))
    .replaceAll('{ADMIN_PORT}', String(adminPort))
    .replaceAll('{DIR}', dir);
  writeFileSync(configFile, text);
  const primary = await createPrimary(configFile, { workers, watch: options.watch ?? false });
  let stopped: Promise<void> | null = null;
  const stop = (): Promise<void> => (stopped ??= primary.stop(true).then(() => rmSync(dir, { recursive: true, force: true })));
  try {
    await primary.start();
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    snapshot: primary.snapshot(),
    shared: primary.shared,
    supervisor: primary.supervisor,
    primary,
    port,
    url: `ws://127.0.0.1:${port}`,
    adminPort,
    adminUrl: `http://127.0.0.1:${adminPort}`,
    configFile,
    stop,
  };
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
