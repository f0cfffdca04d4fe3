/**
 * The Prometheus registry of the primary (prom-client): process metrics from collectDefaultMetrics, and
 * every Sluice metric computed at scrape time from the summed shared counters (metrics-store.ts), labelled
 * from the snapshot's names. Label values are bounded: entry point, router, service and backend names from
 * the config, fixed outcome/reason/direction/side sets, close codes in 19 buckets; never a client address
 * or a path.
 */
import client from 'prom-client';
import type { Snapshot } from '../config/snapshot.js';
import { TRAFFIC, Total, Traffic } from '../shared/layout.js';
import {
  CLOSE_CODES,
  CONN_FIELDS,
  CONN_OUTCOMES,
  CONNECTION_BUCKETS,
  Conn,
  DURATION_STRIDE,
  ERROR_REASONS,
  SIDES,
  UPGRADE_BUCKETS,
  UPGRADE_STRIDE,
} from '../shared/metrics-plan.js';
import type { MetricsStore, Sums } from './metrics-store.js';

type Labels = Record<string, string | number>;
interface Value {
  readonly labels: Labels;
  readonly value: number;
  readonly metricName?: string;
}
type MetricType = 'counter' | 'gauge' | 'histogram';

/** A metric whose values are computed when scraped; prom-client's registry only needs name, help,
 *  type and get() (the same shape its own metrics return). */
class ComputedMetric {
  readonly aggregator = 'sum';
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: MetricType,
    private readonly compute: () => Value[],
  ) {}

  get(): Promise<{ name: string; help: string; type: MetricType; values: Value[]; aggregator: string }> {
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, values: this.compute(), aggregator: this.aggregator });
  }

  reset(): void {}
}

export interface Observability {
  readonly registry: client.Registry;
  /** Counts of config reloads by result (reloads are not implemented yet; always 0). */
  readonly reloads: { success: number; failure: number };
  /** Sum the shared counters and render the Prometheus text. */
  render(): Promise<string>;
}

export function createRegistry(snapshot: Snapshot, store: MetricsStore): Observability {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry });
  const reloads = { success: 0, failure: 0 };
  const { plan } = store;
  const backendLabel = (b: number): string => snapshot.backends[b]!.url;
  const serviceOf = (b: number): string => snapshot.services[snapshot.backends[b]!.service]!.name;
  let sums: Sums = store.sums();

  const add = (name: string, help: string, type: MetricType, compute: () => Value[]): void => {
    registry.registerMetric(new ComputedMetric(name, help, type, compute) as unknown as client.Metric);
  };

  /** Every (route, backend-or-none) cell with its labels. */
  const cells = (): { cell: number; labels: Labels; real: boolean }[] => {
    const out: { cell: number; labels: Labels; real: boolean }[] = [];
    for (const route of plan.routes) {
      const service = snapshot.services[route.service]!;
      const base = { entrypoint: snapshot.entryPoints[route.entryPoint]!.name, router: snapshot.routers[route.router]!.name, service: service.name };
      service.backends.forEach((b, position) => out.push({ cell: route.base + position * CONN_FIELDS, labels: { ...base, backend: backendLabel(b) }, real: true }));
      out.push({ cell: route.base + service.backends.length * CONN_FIELDS, labels: { ...base, backend: '' }, real: false });
    }
    return out;
  };
  const cellList = cells();

  add('websocket_connections_active', 'Upgraded WebSocket connections open now.', 'gauge', () =>
    cellList.filter((c) => c.real).map((c) => ({ labels: c.labels, value: sums.slab[c.cell + Conn.Active]! })),
  );
  add('websocket_connections_total', 'WebSocket upgrade attempts by outcome (upgraded, rejected_by_backend, no_backend, connect_failed, limited).', 'counter', () => {
    const values: Value[] = [];
    for (const c of cellList) {
      CONN_OUTCOMES.forEach((outcome, o) => {
        const value = sums.slab[c.cell + o]!;
        // Always show the upgraded series of every backend (rates work from 0); others once they happen.
        if (value > 0 || (c.real && o === Conn.Upgraded)) values.push({ labels: { ...c.labels, outcome }, value });
      });
    }
    return values;
  });
  const traffic = (kind: 'messages' | 'bytes'): Value[] => {
    const values: Value[] = [];
    snapshot.backends.forEach((_, b) => {
      const toBackend = kind === 'messages' ? Traffic.MessagesToBackend : Traffic.BytesToBackend;
      const toClient = kind === 'messages' ? Traffic.MessagesToClient : Traffic.BytesToClient;
      const labels = { service: serviceOf(b), backend: backendLabel(b) };
      values.push({ labels: { ...labels, direction: 'client_to_backend' }, value: sums.traffic[b * TRAFFIC + toBackend]! });
      values.push({ labels: { ...labels, direction: 'backend_to_client' }, value: sums.traffic[b * TRAFFIC + toClient]! });
    });
    return values;
  };
  add('websocket_messages_total', 'WebSocket messages forwarded, by direction (a fragmented message counts once).', 'counter', () => traffic('messages'));
  add('websocket_bytes_total', 'WebSocket payload bytes forwarded, by direction (frame headers not included).', 'counter', () => traffic('bytes'));
  add('websocket_errors_total', 'Backend failures by reason, one per attempt (a retried connect counts each try).', 'counter', () => {
    const values: Value[] = [];
    snapshot.backends.forEach((_, b) => {
      ERROR_REASONS.forEach((reason, r) => {
        const value = sums.slab[plan.errorsBase + b * ERROR_REASONS.length + r]!;
        if (value > 0) values.push({ labels: { service: serviceOf(b), backend: backendLabel(b), reason }, value });
      });
    });
    return values;
  });
  add('websocket_closes_total', 'Closed WebSocket connections by the side that started the close and its code (1000-1015, 3xxx, 4xxx, other).', 'counter', () => {
    const values: Value[] = [];
    snapshot.services.forEach((service, s) => {
      SIDES.forEach((side, d) => {
        CLOSE_CODES.forEach((code, c) => {
          const value = sums.slab[plan.closesBase + (s * SIDES.length + d) * CLOSE_CODES.length + c]!;
          if (value > 0) values.push({ labels: { service: service.name, side, code }, value });
        });
      });
    });
    return values;
  });
  const histogram = (base: number, stride: number, bounds: readonly number[]): Value[] => {
    const values: Value[] = [];
    snapshot.services.forEach((service, s) => {
      const at = base + s * stride;
      let cumulative = 0;
      bounds.forEach((le, i) => {
        cumulative += sums.slab[at + i]!;
        values.push({ metricName: '', labels: { service: service.name, le }, value: cumulative });
      });
      cumulative += sums.slab[at + bounds.length]!;
      values.push({ metricName: '', labels: { service: service.name, le: '+Inf' }, value: cumulative });
      values.push({ metricName: 'sum', labels: { service: service.name }, value: sums.slab[at + bounds.length + 1]! });
      values.push({ metricName: 'count', labels: { service: service.name }, value: sums.slab[at + bounds.length + 2]! });
    });
    return values;
  };
  const named = (name: string, values: Value[]): Value[] =>
    values.map((v) => ({ ...v, metricName: v.metricName === '' ? `${name}_bucket` : `${name}_${v.metricName}` }));
  add('websocket_upgrade_duration_seconds', 'Time from the client\'s upgrade request to the relayed 101, for upgraded connections.', 'histogram', () =>
    named('websocket_upgrade_duration_seconds', histogram(plan.upgradeBase, UPGRADE_STRIDE, UPGRADE_BUCKETS)),
  );
  add('websocket_connection_duration_seconds', 'Lifetime of closed WebSocket connections, from the 101 to the close.', 'histogram', () =>
    named('websocket_connection_duration_seconds', histogram(plan.durationBase, DURATION_STRIDE, CONNECTION_BUCKETS)),
  );
  add('sluice_backend_up', '1 when the backend may receive new connections, 0 when it is marked down.', 'gauge', () =>
    snapshot.backends.map((_, b) => ({ labels: { service: serviceOf(b), backend: backendLabel(b) }, value: Atomics.load(store.shared.backendUp, b) > 0 ? 1 : 0 })),
  );
  add('sluice_backend_connections', 'Backend connections held now, handshakes in progress included (what least-connections balances on).', 'gauge', () =>
    snapshot.backends.map((_, b) => ({ labels: { service: serviceOf(b), backend: backendLabel(b) }, value: Atomics.load(store.shared.backendActive, b) })),
  );
  add('sluice_config_reloads_total', 'Configuration reloads by result.', 'counter', () => [
    { labels: { result: 'success' }, value: reloads.success },
    { labels: { result: 'failure' }, value: reloads.failure },
  ]);
  add('sluice_worker_event_loop_lag_seconds', "Event-loop delay of each worker: the 99th percentile over the last second, or how late a stuck worker's heartbeat is.", 'gauge', () => {
    const now = Date.now();
    return Array.from({ length: store.shared.workerSlots }, (_, w) => ({ labels: { worker: String(w) }, value: store.workerLag(w, now) }));
  });
  add('sluice_unrouted_requests_total', 'Requests no router matched (answered 404), all entry points.', 'counter', () => [{ labels: {}, value: sums.totals[Total.NoRoute]! }]);

  return {
    registry,
    reloads,
    async render() {
      sums = store.sums();
      return registry.metrics();
    },
  };
}
