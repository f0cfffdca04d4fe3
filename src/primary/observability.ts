/**
 * Wires the primary's observability around a running Supervisor: the Prometheus registry over the metrics
 * store, the access-log writer, the admin listener (with the reload endpoint) and the dashboard's history
 * sampler. `sluice run` and the in-process tests get it from primary.ts, so both serve the very same
 * endpoints.
 */
import type http from 'node:http';
import type { Snapshot } from '../config/snapshot.js';
import { formatHostPort } from '../shared/address.js';
import { openAccessLog } from './access-log.js';
import { startAdmin } from './admin.js';
import { dashboardTotals, type AdminContext } from './admin-api.js';
import { HISTORY_CAPACITY, HistoryRing, historyIntervalMs, startHistory } from './history.js';
import type { ReloadOutcome } from './live-config.js';
import type { MetricsStore } from './metrics-store.js';
import { createRegistry, type Observability as Registry } from './metrics.js';
import type { Supervisor } from './supervisor.js';

export interface Observability {
  readonly metrics: Registry;
  /** null when admin.address could not be opened (logged), or before openAdmin() when deferred. */
  readonly admin: http.Server | null;
  /** `host:port` of the admin listener, as configured (`*` for every interface). */
  readonly adminAddress: string;
  /** Open the admin listener now (deferred at start: a takeover waits for the old process to let its
   *  port go), retrying for up to `retryMs` while the address is in use. */
  openAdmin(retryMs?: number): Promise<http.Server | null>;
  /** Close the admin listener only (a Sluice being taken over lets its successor have the port). */
  closeAdmin(): void;
  /** Every worker listens: /ready may say ready from now on. */
  markStarted(): void;
  /** SIGTERM: /ready answers 503 from now on. */
  markDraining(): void;
  /** Close the admin listener and flush the access log (after the workers exited). */
  close(): void;
}

export interface ObservabilityOptions {
  snapshot(): Snapshot;
  /** The config Sluice started with: the admin address and the access log are fixed by it. */
  readonly first: Snapshot;
  readonly store: MetricsStore;
  readonly supervisor: Supervisor;
  backendHealth?: AdminContext['backendHealth'];
  reloadStatus?: AdminContext['reloadStatus'];
  reload?: (trigger: string) => Promise<ReloadOutcome>;
  readonly reloads: { success: number; failure: number };
  readonly deferAdmin: boolean;
  /** Fan-out's admin documents (absent when fan-out is off). */
  readonly fanout?: AdminContext['fanout'];
}

export async function startObservability(options: ObservabilityOptions): Promise<Observability> {
  const { first, store, supervisor } = options;
  const accessLog = openAccessLog(first);
  if (accessLog !== null) supervisor.onAccessLog = (index, records) => accessLog.write(index, records);
  let started = false;
  let draining = false;
  const adminAddress = formatHostPort(first.admin.host, first.admin.port);
  const ring = new HistoryRing(HISTORY_CAPACITY, historyIntervalMs());
  const context: AdminContext = {
    snapshot: options.snapshot,
    store,
    workers: () => supervisor.workers(),
    started: () => started,
    draining: () => draining,
    startedAt: Date.now(),
    adminAddress,
    history: ring,
    ...(options.backendHealth === undefined ? {} : { backendHealth: options.backendHealth }),
    ...(options.reloadStatus === undefined ? {} : { reloadStatus: options.reloadStatus }),
    ...(options.fanout === undefined ? {} : { fanout: options.fanout }),
  };
  const metrics = createRegistry(store, { snapshot: options.snapshot, reloads: options.reloads });
  // The dashboard's charts: sampled from the admin API's totals, once per second, in this thread.
  const history = startHistory(ring, () => dashboardTotals(context));
  let admin: http.Server | null = null;
  const open = async (retryMs: number): Promise<http.Server | null> => {
    const deadline = Date.now() + retryMs;
    for (;;) {
      const result = await startAdmin(context, metrics, first.admin, options.reload, Date.now() < deadline);
      if (result !== 'in-use') return (admin = result);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };
  if (!options.deferAdmin) await open(0);
  return {
    metrics,
    get admin() {
      return admin;
    },
    adminAddress,
    openAdmin: (retryMs = 0) => open(retryMs),
    closeAdmin() {
      admin?.close();
      admin?.closeAllConnections();
      admin = null;
    },
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
