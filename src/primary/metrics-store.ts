/**
 * The primary's view of the counters. Workers count into shared memory at offsets (layout.ts for the
 * per-backend traffic and per-worker totals, one metrics buffer per config generation planned by
 * metrics-plan.ts); here every offset is mapped to a *series*, a metric name with its label set, and a
 * read sums, per series, what every live generation's slabs and the traffic counters hold plus the totals
 * carried over from what is gone. So:
 *  - a backend, router or service that stays across a reload keeps one series and counts on from its old
 *    total under the new generation's offsets (`websocket_connections_active` never drops at a reload);
 *  - a worker that exits has its counts folded into the carried totals (not its live gauges: those
 *    connections are gone), so counters never go down when a worker is restarted;
 *  - a generation released (its last connection closed in every worker) is folded the same way, and a
 *    series no live generation names any more is dropped, so label sets do not pile up over reloads.
 *
 * Cost of a read: (workers × slab size) additions per live generation, plus the traffic counters; it runs
 * per scrape or per API call, never per event. Writes happen only when the primary folds something whose
 * writers are gone (an exited worker, a released generation, a freed slot).
 */
import type { Snapshot } from '../config/snapshot.js';
import { TOTALS, TRAFFIC, Total, Traffic, resetWorkerCounters, type SharedViews } from '../shared/layout.js';
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
  HTTP_BACKEND_FIELDS,
  HTTP_CELL,
  HTTP_CODES,
  HTTP_DURATION_BUCKETS,
  HTTP_DURATION_STRIDE,
  HTTP_ERROR_REASONS,
  HTTP_METHODS,
  HttpField,
  planMetrics,
  type MetricsPlan,
  LIMIT_KINDS,
  LIMIT_REASONS,
} from '../shared/metrics-plan.js';

/** A worker whose heartbeat is older than this is stuck: /health fails and its lag shows it. */
export const HEARTBEAT_STALE_MS = 3000;
const HEARTBEAT_PERIOD_MS = 1000;

export type Labels = Readonly<Record<string, string>>;

/** One counter or gauge with its labels; histogram parts carry the part index (bucket, +Inf, sum, count). */
export interface Series {
  readonly metric: string;
  readonly labels: Labels;
  /** A live gauge: not carried when its writer is gone. */
  readonly gauge: boolean;
  /** Shown even at 0 (the upgraded series of a backend, so rates work from the first scrape). */
  readonly alwaysShow: boolean;
  /** Histograms: index of the part within its group (buckets, then +Inf, sum, count); -1 otherwise. */
  readonly part: number;
  /** Live generations and slots that name it; dropped at 0. */
  refs: number;
}

const NO_SERIES = -1;
const DIRECTIONS = ['client_to_backend', 'backend_to_client'] as const;

/** One config generation as the metrics see it. */
export interface GenerationMetrics {
  readonly id: number;
  readonly snapshot: Snapshot;
  readonly plan: MetricsPlan;
  readonly buffer: SharedArrayBuffer;
  /** workerSlots × plan.slabFloats */
  readonly slabs: Float64Array;
  /** Series id of each slab offset. */
  readonly series: Int32Array;
}

/** One read: every series' value now. */
export interface MetricsView {
  /** By series id (carried + live). */
  readonly values: Float64Array;
  /** [TOTALS], counters only (Heartbeat and EventLoopLag are per worker: see workerLag). */
  readonly totals: Float64Array;
  /** The newest generation, whose offsets the admin API reads through `slab`. */
  readonly current: GenerationMetrics;
  /** Value of the series at `offset` of the current generation's plan. */
  slab(offset: number): number;
  /** A traffic counter of backend slot `slot`. */
  traffic(slot: number, field: number): number;
}

export class MetricsStore {
  private readonly seriesById: (Series | null)[] = [];
  private readonly idByKey = new Map<string, number>();
  private readonly freeIds: number[] = [];
  private carried = new Float64Array(256);
  private readonly carriedTotals = new Float64Array(TOTALS);
  /** Series id of each (slot, traffic field). */
  private readonly trafficSeries: Int32Array;
  private readonly generations = new Map<number, GenerationMetrics>();
  private currentId = 0;

  constructor(readonly shared: SharedViews) {
    this.trafficSeries = new Int32Array(shared.backendSlots * TRAFFIC).fill(NO_SERIES);
  }

  /** The newest generation. */
  get current(): GenerationMetrics {
    return this.generations.get(this.currentId)!;
  }

  /** Make the metrics buffer of a new generation and name its series. Returns it (its buffer goes to the workers). */
  addGeneration(id: number, snapshot: Snapshot): GenerationMetrics {
    const plan = planMetrics(snapshot, this.shared.backendSlots);
    const buffer = new SharedArrayBuffer(Math.max(8, this.shared.workerSlots * plan.slabFloats * 8));
    const series = new Int32Array(plan.slabFloats).fill(NO_SERIES);
    this.nameSlab(snapshot, plan, series);
    for (const spec of snapshot.backends) this.nameTraffic(spec.index, snapshot.services[spec.service]!.name, spec.url);
    const generation: GenerationMetrics = { id, snapshot, plan, buffer, slabs: new Float64Array(buffer, 0, this.shared.workerSlots * plan.slabFloats), series };
    this.generations.set(id, generation);
    this.currentId = id;
    return generation;
  }

  /** Every worker let go of generation `id` (no connection of it is left): fold it and drop its series. */
  releaseGeneration(id: number): void {
    const generation = this.generations.get(id);
    if (generation === undefined || id === this.currentId) return;
    const { slabs, series, plan } = generation;
    for (let w = 0; w < this.shared.workerSlots; w++) this.foldSlab(slabs, w * plan.slabFloats, series);
    this.generations.delete(id);
    for (let i = 0; i < series.length; i++) this.unref(series[i]!);
  }

  /** Backend slot `slot` leaves its identity: its traffic series are dropped and its counters zeroed
   *  (no worker counts on it: no live generation names it). */
  releaseSlot(slot: number): void {
    for (let f = 0; f < TRAFFIC; f++) {
      const at = slot * TRAFFIC + f;
      this.unref(this.trafficSeries[at]!);
      this.trafficSeries[at] = NO_SERIES;
    }
    const stride = this.shared.backendSlots * TRAFFIC;
    for (let w = 0; w < this.shared.workerSlots; w++) this.shared.workerTraffic.fill(0, w * stride + slot * TRAFFIC, w * stride + (slot + 1) * TRAFFIC);
  }

  /** Worker `w` exited: keep its counts (not its live gauges: those connections are gone), zero its slabs. */
  foldWorker(w: number): void {
    for (const { slabs, series, plan } of this.generations.values()) {
      this.foldSlab(slabs, w * plan.slabFloats, series);
      slabs.fill(0, w * plan.slabFloats, (w + 1) * plan.slabFloats);
    }
    const stride = this.shared.backendSlots * TRAFFIC;
    for (let i = 0; i < stride; i++) {
      const id = this.trafficSeries[i]!;
      if (id !== NO_SERIES) this.carried[id]! += this.shared.workerTraffic[w * stride + i]!;
    }
    for (let t = 0; t < TOTALS; t++) this.carriedTotals[t]! += this.shared.workerTotals[w * TOTALS + t]!;
    this.carriedTotals[Total.Heartbeat] = 0;
    this.carriedTotals[Total.EventLoopLag] = 0;
    resetWorkerCounters(this.shared, w);
  }

  /** Carried totals plus every live generation's slabs and the traffic counters. */
  read(): MetricsView {
    const values = Float64Array.from(this.carried.subarray(0, this.seriesById.length));
    for (const { slabs, series, plan } of this.generations.values()) {
      for (let w = 0; w < this.shared.workerSlots; w++) {
        const base = w * plan.slabFloats;
        for (let i = 0; i < plan.slabFloats; i++) {
          const id = series[i]!;
          if (id !== NO_SERIES) values[id]! += slabs[base + i]!;
        }
      }
    }
    const stride = this.shared.backendSlots * TRAFFIC;
    for (let w = 0; w < this.shared.workerSlots; w++) {
      for (let i = 0; i < stride; i++) {
        const id = this.trafficSeries[i]!;
        if (id !== NO_SERIES) values[id]! += this.shared.workerTraffic[w * stride + i]!;
      }
    }
    const totals = Float64Array.from(this.carriedTotals);
    for (let w = 0; w < this.shared.workerSlots; w++) {
      for (let t = 0; t < TOTALS; t++) totals[t]! += this.shared.workerTotals[w * TOTALS + t]!;
    }
    totals[Total.Heartbeat] = 0;
    totals[Total.EventLoopLag] = 0;
    const current = this.current;
    const trafficSeries = this.trafficSeries;
    return {
      values,
      totals,
      current,
      slab: (offset) => {
        const id = current.series[offset]!;
        return id === NO_SERIES ? 0 : values[id]!;
      },
      traffic: (slot, field) => {
        const id = trafficSeries[slot * TRAFFIC + field]!;
        return id === NO_SERIES ? 0 : values[id]!;
      },
    };
  }

  /** Every live series with its id, for rendering. */
  *series(): Generator<[number, Series]> {
    for (let id = 0; id < this.seriesById.length; id++) {
      const s = this.seriesById[id];
      if (s !== null && s !== undefined) yield [id, s];
    }
  }

  /** Milliseconds since worker `w` last ticked (Infinity before its first tick). */
  heartbeatAge(w: number, now = Date.now()): number {
    const at = this.shared.workerTotals[w * TOTALS + Total.Heartbeat]!;
    return at === 0 ? Infinity : now - at;
  }

  /** Event-loop lag of worker `w` in seconds: the delay it measured over the last second (99th
   *  percentile), or, when its loop is stuck and cannot measure, how late its heartbeat is. */
  workerLag(w: number, now = Date.now()): number {
    const measured = this.shared.workerTotals[w * TOTALS + Total.EventLoopLag]!;
    const age = this.heartbeatAge(w, now);
    const late = Number.isFinite(age) ? Math.max(0, (age - HEARTBEAT_PERIOD_MS) / 1000) : 0;
    return Math.max(measured, late);
  }

  // ---- naming ---------------------------------------------------------------------------------

  private nameSlab(snapshot: Snapshot, plan: MetricsPlan, out: Int32Array): void {
    const backendUrl = (slot: number): string => snapshot.backends[plan.backendLocal[slot]!]!.url;
    for (const route of plan.routes) {
      const service = snapshot.services[route.service]!;
      const base = { entrypoint: snapshot.entryPoints[route.entryPoint]!.name, router: snapshot.routers[route.router]!.name, service: service.name };
      const cells = service.backends.length + 1;
      for (let position = 0; position < cells; position++) {
        const real = position < service.backends.length;
        const labels = { ...base, backend: real ? backendUrl(service.backends[position]!) : '' };
        const cell = route.base + position * CONN_FIELDS;
        CONN_OUTCOMES.forEach((outcome, o) => {
          out[cell + o] = this.ref('websocket_connections_total', { ...labels, outcome }, false, real && o === Conn.Upgraded);
        });
        if (real) out[cell + Conn.Active] = this.ref('websocket_connections_active', labels, true, true);
      }
    }
    snapshot.backends.forEach((spec, local) => {
      const labels = { service: snapshot.services[spec.service]!.name, backend: spec.url };
      ERROR_REASONS.forEach((reason, r) => {
        out[plan.errorsBase + local * ERROR_REASONS.length + r] = this.ref('websocket_errors_total', { ...labels, reason }, false, false);
      });
    });
    snapshot.services.forEach((service, s) => {
      SIDES.forEach((side, d) => {
        CLOSE_CODES.forEach((code, c) => {
          out[plan.closesBase + (s * SIDES.length + d) * CLOSE_CODES.length + c] = this.ref('websocket_closes_total', { service: service.name, side, code }, false, false);
        });
      });
      for (let k = 0; k < UPGRADE_STRIDE; k++) {
        out[plan.upgradeBase + s * UPGRADE_STRIDE + k] = this.ref('websocket_upgrade_duration_seconds', { service: service.name }, false, true, k);
      }
      for (let k = 0; k < DURATION_STRIDE; k++) {
        out[plan.durationBase + s * DURATION_STRIDE + k] = this.ref('websocket_connection_duration_seconds', { service: service.name }, false, true, k);
      }
      for (let k = 0; k < HTTP_DURATION_STRIDE; k++) {
        out[plan.httpDurationBase + s * HTTP_DURATION_STRIDE + k] = this.ref('http_request_duration_seconds', { service: service.name }, false, false, k);
      }
    });
    this.nameHttp(snapshot, plan, out);
    snapshot.entryPoints.forEach((entryPoint, e) => {
      out[plan.unroutedBase + e] = this.ref('sluice_unrouted_requests_total', { entrypoint: entryPoint.name }, false, true);
    });
    plan.routes.forEach((route, r) => {
      const labels = { entrypoint: snapshot.entryPoints[route.entryPoint]!.name, router: snapshot.routers[route.router]!.name, service: snapshot.services[route.service]!.name };
      LIMIT_KINDS.forEach((kind, k) => {
        LIMIT_REASONS.forEach((reason, n) => {
          out[plan.limitedBase + (r * LIMIT_KINDS.length + k) * LIMIT_REASONS.length + n] = this.ref('sluice_limited_total', { ...labels, kind, reason }, false, false);
        });
      });
    });
  }

  /** The plain-HTTP regions (metrics-plan.ts httpRequests, httpBackend). */
  private nameHttp(snapshot: Snapshot, plan: MetricsPlan, out: Int32Array): void {
    for (const route of plan.routes) {
      const service = snapshot.services[route.service]!;
      const base = { entrypoint: snapshot.entryPoints[route.entryPoint]!.name, router: snapshot.routers[route.router]!.name, service: service.name };
      for (let position = 0; position <= service.backends.length; position++) {
        const backend = position < service.backends.length ? snapshot.backends[plan.backendLocal[service.backends[position]!]!]!.url : '';
        HTTP_METHODS.forEach((method, m) => {
          HTTP_CODES.forEach((code, c) => {
            out[route.httpBase + position * HTTP_CELL + m * HTTP_CODES.length + c] = this.ref('http_requests_total', { ...base, backend, method, code }, false, false);
          });
        });
      }
    }
    snapshot.backends.forEach((spec, local) => {
      const labels = { service: snapshot.services[spec.service]!.name, backend: spec.url };
      const row = plan.httpBackendBase + local * HTTP_BACKEND_FIELDS;
      out[row + HttpField.RequestBytes] = this.ref('http_request_bytes_total', labels, false, false);
      out[row + HttpField.ResponseBytes] = this.ref('http_response_bytes_total', labels, false, false);
      HTTP_ERROR_REASONS.forEach((reason, r) => {
        out[row + HttpField.Errors + r] = this.ref('http_errors_total', { ...labels, reason }, false, false);
      });
    });
  }

  private nameTraffic(slot: number, service: string, url: string): void {
    if (this.trafficSeries[slot * TRAFFIC] !== NO_SERIES) return; // named by an earlier generation
    const labels = { service, backend: url };
    const names = ['websocket_messages_total', 'websocket_messages_total', 'websocket_bytes_total', 'websocket_bytes_total'];
    // Traffic fields: MessagesToBackend, MessagesToClient, BytesToBackend, BytesToClient, then the wire bytes.
    for (let f = 0; f < 4; f++) {
      this.trafficSeries[slot * TRAFFIC + f] = this.ref(names[f]!, { ...labels, direction: DIRECTIONS[f % 2]! }, false, true);
    }
    const toClient = { ...labels, direction: DIRECTIONS[1] };
    this.trafficSeries[slot * TRAFFIC + Traffic.WireBytesToClient] = this.ref('websocket_wire_bytes_total', { ...toClient, leg: 'client' }, false, true);
    this.trafficSeries[slot * TRAFFIC + Traffic.WireBytesFromBackend] = this.ref('websocket_wire_bytes_total', { ...toClient, leg: 'backend' }, false, true);
  }

  /** The id of the series (made when new), with one more reference. */
  private ref(metric: string, labels: Labels, gauge: boolean, alwaysShow: boolean, part = -1): number {
    const key = `${metric}\u0000${part}\u0000${Object.entries(labels).map(([k, v]) => `${k}=${v}`).join('\u0001')}`;
    let id = this.idByKey.get(key);
    if (id === undefined) {
      id = this.freeIds.pop() ?? this.seriesById.length;
      if (id >= this.carried.length) {
        const grown = new Float64Array(this.carried.length * 2);
        grown.set(this.carried);
        this.carried = grown;
      }
      this.carried[id] = 0;
      this.seriesById[id] = { metric, labels, gauge, alwaysShow, part, refs: 0 };
      this.idByKey.set(key, id);
    }
    this.seriesById[id]!.refs++;
    return id;
  }

  private unref(id: number): void {
    if (id === NO_SERIES) return;
    const series = this.seriesById[id];
    if (series === null || series === undefined || --series.refs > 0) return;
    const key = `${series.metric}\u0000${series.part}\u0000${Object.entries(series.labels).map(([k, v]) => `${k}=${v}`).join('\u0001')}`;
    this.idByKey.delete(key);
    this.seriesById[id] = null;
    this.carried[id] = 0;
    this.freeIds.push(id);
  }

  private foldSlab(slabs: Float64Array, base: number, series: Int32Array): void {
    for (let i = 0; i < series.length; i++) {
      const id = series[i]!;
      if (id === NO_SERIES || this.seriesById[id]!.gauge) continue;
      this.carried[id]! += slabs[base + i]!;
    }
  }
}

export { CONNECTION_BUCKETS, HTTP_DURATION_BUCKETS, UPGRADE_BUCKETS };
