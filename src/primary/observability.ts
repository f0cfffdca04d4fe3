/**
 * Wires the primary's observability around a running Supervisor: the metrics store over the shared
 * counters (folding a dead worker's counts), the Prometheus registry, the access-log writer and the admin
 * listener, and the dashboard's history sampler. `sluice run` uses it, and so do in-process tests, so both serve the very same endpoints.
 */
import type http from 'node:http';
import type { Snapshot } from '../config/snapshot.js';
import type { SharedViews } from '../shared/layout.js';
import { openAccessLog } from './access-log.js';
import { startAdmin } from './admin.js';
import { dashboardTotals, type AdminContext } from './admin-api.js';
import { HISTORY_CAPACITY, HistoryRing, historyIntervalMs, startHistory } from './history.js';
import { MetricsStore } from './metrics-store.js';
import { createRegistry, type Observability as Registry } from './metrics.js';
import type { Supervisor } from './supervisor.js';

export interface Observability {
  readonly store: MetricsStore;
  readonly metrics: Registry;
  /** null when admin.address could not be opened (logged). */
  readonly admin: http.Server | null;
  /** `host:port` of the admin listener, as configured (`*` for every interface). */
  readonly adminAddress: string;
  /** Every worker listens: /ready may say ready from now on. */
  markStarted(): void;
  /** SIGTERM: /ready answers 503 from now on. */
  markDraining(): void;
  /** Close the admin listener and flush the access log (after the workers exited). */
  close(): void;
}

export function formatHostPort(host: string, port: number): string {
  return `${host === '' ? '*' : host.includes(':') ? `[${host}]` : host}:${port}`;
}

export async function startObservability(
  snapshot: Snapshot,
  shared: SharedViews,
  supervisor: Supervisor,
  backendHealth?: AdminContext['backendHealth'],
): Promise<Observability> {
  const store = new MetricsStore(snapshot, shared);
  supervisor.onWorkerExit = (index) => store.foldWorker(index);
  const accessLog = openAccessLog(snapshot);
  if (accessLog !== null) supervisor.onAccessLog = (index, records) => accessLog.write(index, records);
  let started = false;
  let draining = false;
  const adminAddress = formatHostPort(snapshot.admin.host, snapshot.admin.port);
  const ring = new HistoryRing(HISTORY_CAPACITY, historyIntervalMs());
  const context: AdminContext = {
    snapshot,
    store,
    workers: () => supervisor.workers(),
    started: () => started,
    draining: () => draining,
    startedAt: Date.now(),
    adminAddress,
    history: ring,
    ...(backendHealth === undefined ? {} : { backendHealth }),
  };
  const metrics = createRegistry(snapshot, store);
  // The dashboard's charts: sampled from the admin API's totals, once per second, in this thread.
  const history = startHistory(ring, () => dashboardTotals(context));
  const admin = await startAdmin(context, metrics, snapshot.admin.host, snapshot.admin.port);
  return {
    store,
    metrics,
    admin,
    adminAddress,
    markStarted: () => (started = true),
    markDraining: () => (draining = true),
    close() {
      history.stop();
      admin?.close();
      admin?.closeAllConnections();
      accessLog?.flush();
    },
  };
}
