/**
 * The Prometheus registry of the primary (prom-client): process metrics from collectDefaultMetrics, and
 * every Sluice metric computed at scrape time from the series of the metrics store (metrics-store.ts),
 * which sums every live config generation and the totals carried over from what is gone. Label values are
 * bounded: entry point, router, service and backend names from the config, fixed outcome/reason/direction/
 * side sets, close codes in 19 buckets; never a client address or a path.
 */
import client from 'prom-client';
import { Total } from '../shared/layout.js';
import type { Snapshot } from '../config/snapshot.js';
import { CONNECTION_BUCKETS, HTTP_DURATION_BUCKETS, UPGRADE_BUCKETS } from '../shared/metrics-plan.js';
import type { MetricsStore, MetricsView, Series } from './metrics-store.js';

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

/** What the registry reads besides the store: the config in force and the reload counts. */
export interface RegistrySources {
  snapshot(): Snapshot;
  readonly reloads: { success: number; failure: number };
}

export interface Observability {
  readonly registry: client.Registry;
  /** Sum the shared counters and render the Prometheus text. */
  render(): Promise<string>;
}

const HISTOGRAM_BOUNDS: Readonly<Record<string, readonly number[]>> = {
  websocket_upgrade_duration_seconds: UPGRADE_BUCKETS,
  websocket_connection_duration_seconds: CONNECTION_BUCKETS,
  http_request_duration_seconds: HTTP_DURATION_BUCKETS,
};

export function createRegistry(store: MetricsStore, sources: RegistrySources): Observability {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry });
  let view: MetricsView = store.read();
  /** The series of each metric name, gathered once per scrape. */
  let byMetric = new Map<string, [number, Series][]>();

  const add = (name: string, help: string, type: MetricType, compute: () => Value[]): void => {
    registry.registerMetric(new ComputedMetric(name, help, type, compute) as unknown as client.Metric);
  };

  /** Counters and gauges straight from their series: shown once non-zero, or always when flagged. */
  const plain = (name: string): Value[] => {
    const values: Value[] = [];
    for (const [id, series] of byMetric.get(name) ?? []) {
      const value = view.values[id]!;
      if (value !== 0 || series.alwaysShow) values.push({ labels: series.labels, value });
    }
    return values;
  };

  /** A histogram from its parts (per-bucket counts, +Inf, sum, count), cumulated per label set. */
  const histogram = (name: string): Value[] => {
    const bounds = HISTOGRAM_BOUNDS[name]!;
    const groups = new Map<string, { labels: Labels; parts: number[] }>();
    for (const [id, series] of byMetric.get(name) ?? []) {
      const key = JSON.stringify(series.labels);
      let group = groups.get(key);
      if (group === undefined) groups.set(key, (group = { labels: series.labels, parts: new Array<number>(bounds.length + 3).fill(0) }));
      group.parts[series.part] = view.values[id]!;
    }
    const values: Value[] = [];
    for (const { labels, parts } of groups.values()) {
      let cumulative = 0;
      bounds.forEach((le, i) => {
        cumulative += parts[i]!;
        values.push({ metricName: `${name}_bucket`, labels: { ...labels, le }, value: cumulative });
      });
      cumulative += parts[bounds.length]!;
      values.push({ metricName: `${name}_bucket`, labels: { ...labels, le: '+Inf' }, value: cumulative });
      values.push({ metricName: `${name}_sum`, labels, value: parts[bounds.length + 1]! });
      values.push({ metricName: `${name}_count`, labels, value: parts[bounds.length + 2]! });
    }
    return values;
  };

  add('websocket_connections_active', 'Upgraded WebSocket connections open now.', 'gauge', () => plain('websocket_connections_active'));
  add('websocket_connections_total', 'WebSocket upgrade attempts by outcome (upgraded, rejected_by_backend, no_backend, connect_failed, limited).', 'counter', () => plain('websocket_connections_total'));
  add('websocket_messages_total', 'WebSocket messages forwarded, by direction (a fragmented message counts once).', 'counter', () => plain('websocket_messages_total'));
  add('websocket_bytes_total', 'WebSocket payload bytes forwarded, by direction (frame headers not included).', 'counter', () => plain('websocket_bytes_total'));
  add('websocket_wire_bytes_total', 'WebSocket payload bytes toward clients as they go on the wire of each leg (after permessage-deflate; see websocket_bytes_total for before).', 'counter', () => plain('websocket_wire_bytes_total'));
  add('websocket_errors_total', 'Backend failures by reason, one per attempt (a retried connect counts each try).', 'counter', () => plain('websocket_errors_total'));
  add('websocket_closes_total', 'Closed WebSocket connections by the side that started the close and its code (1000-1015, 3xxx, 4xxx, other).', 'counter', () => plain('websocket_closes_total'));
  add('websocket_upgrade_duration_seconds', "Time from the client's upgrade request to the relayed 101, for upgraded connections.", 'histogram', () => histogram('websocket_upgrade_duration_seconds'));
  add('websocket_connection_duration_seconds', 'Lifetime of closed WebSocket connections, from the 101 to the close.', 'histogram', () => histogram('websocket_connection_duration_seconds'));
  add('http_requests_total', 'Plain HTTP requests answered, by method and status class (1xx-5xx; a client gone before the answer counts as 4xx). backend="" when no backend was reached (no backend up, or a middleware answered).', 'counter', () => plain('http_requests_total'));
  add('http_request_duration_seconds', 'Time from a plain HTTP request to the end of its response.', 'histogram', () => histogram('http_request_duration_seconds'));
  add('http_request_bytes_total', 'Request body bytes sent to backends.', 'counter', () => plain('http_request_bytes_total'));
  add('http_response_bytes_total', 'Response body bytes relayed from backends to clients.', 'counter', () => plain('http_response_bytes_total'));
  add('http_errors_total', 'Plain HTTP failures by reason, one per attempt: connect_refused, connect_timeout, response_timeout, backend_reset, backend_lost (cut mid-body), invalid_response, client_aborted.', 'counter', () => plain('http_errors_total'));

  const perBackend = (value: (slot: number) => number): Value[] => {
    const snapshot = sources.snapshot();
    return snapshot.backends.map((spec) => ({ labels: { service: snapshot.services[spec.service]!.name, backend: spec.url }, value: value(spec.index) }));
  };
  add('sluice_backend_up', '1 when the backend may receive new connections, 0 when it is marked down.', 'gauge', () =>
    perBackend((slot) => (Atomics.load(store.shared.backendUp, slot) > 0 ? 1 : 0)),
  );
  add('sluice_backend_connections', 'Backend connections held now, handshakes in progress included (what least-connections balances on).', 'gauge', () =>
    perBackend((slot) => Atomics.load(store.shared.backendActive, slot)),
  );
  add('sluice_backend_http_requests_in_flight', 'Plain HTTP requests in flight to the backend now, all workers (what HTTP least-connections balances on).', 'gauge', () =>
    perBackend((slot) => Atomics.load(store.shared.backendHttpActive, slot)),
  );
  add('sluice_config_reloads_total', 'Configuration reloads by result.', 'counter', () => [
    { labels: { result: 'success' }, value: sources.reloads.success },
    { labels: { result: 'failure' }, value: sources.reloads.failure },
  ]);
  add('sluice_worker_event_loop_lag_seconds', "Event-loop delay of each worker: the 99th percentile over the last second, or how late a stuck worker's heartbeat is.", 'gauge', () => {
    const now = Date.now();
    return Array.from({ length: store.shared.workerSlots }, (_, w) => ({ labels: { worker: String(w) }, value: store.workerLag(w, now) }));
  });
  add('sluice_limited_total', 'Upgrades (kind="websocket") and plain HTTP requests (kind="http") refused by a limit, by reason: in_flight (inFlightReq, 429), rate_limit (rateLimit, 429), ip_not_allowed (ipAllowList), origin_not_allowed (websocket.allowedOrigins, 403), entrypoint_max_connections, backend_max_connections, backend_admission (503). Refused upgrades also count in websocket_connections_total{outcome="limited"}.', 'counter', () => plain('sluice_limited_total'));
  add('sluice_limits_untracked_total', 'Requests a per-client limit let through uncounted because the shared limits table had no room for their key (a flood of distinct clients or header values), or a worker held its slot past 50 ms.', 'counter', () => [{ labels: {}, value: view.totals[Total.LimitsUntracked]! }]);
  add('sluice_unrouted_requests_total', 'Requests no router matched (answered 404), by the entry point they came in on.', 'counter', () => plain('sluice_unrouted_requests_total'));

  return {
    registry,
    async render() {
      view = store.read();
      byMetric = new Map();
      for (const entry of store.series()) {
        const list = byMetric.get(entry[1].metric);
        if (list === undefined) byMetric.set(entry[1].metric, [entry]);
        else list.push(entry);
      }
      return registry.metrics();
    },
  };
}
