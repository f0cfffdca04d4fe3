/**
 * The dashboard's recent past: a timer in the primary samples the admin API's totals (dashboardTotals in
 * admin-api.ts) once per interval, turns counters into per-second rates and the upgrade histogram into
 * percentiles, and keeps the result in a fixed-size ring (900 samples: 15 minutes at 1 s) that
 * GET /api/history?since=<t> reads. Memory is bounded: one preallocated Float64Array per series, and a
 * series that has had no value for a whole window is dropped (series come from config names and fixed
 * sets, so only reloads make new ones).
 *
 * Adding a chart line is one entry in DASHBOARD_SERIES here and one entry in the page's CHARTS list
 * (dashboard.ts); a series whose chart the page does not know still gets a chart of its own.
 */
import type { DashboardTotals } from './admin-api.js';

/** 15 minutes at the default interval. */
export const HISTORY_CAPACITY = 900;
export const DEFAULT_HISTORY_INTERVAL_MS = 1000;
/** Upgrade latency percentiles are taken over the upgrades of this many intervals (10 s by default):
 *  per interval there are often too few upgrades for a p99 to mean anything. */
export const LATENCY_WINDOW_SAMPLES = 10;

/** Test hook: SLUICE_HISTORY_INTERVAL_MS shortens the sample interval so a test sees samples within a
 *  second (the ring keeps 900 samples whatever the interval). Not meant for production. */
export function historyIntervalMs(env: NodeJS.ProcessEnv = process.env): number {
  const value = Number(env.SLUICE_HISTORY_INTERVAL_MS);
  return Number.isFinite(value) && value >= 50 ? value : DEFAULT_HISTORY_INTERVAL_MS;
}

// ---- What is sampled ---------------------------------------------------------------------------------

type Numbers = Readonly<Record<string, number>>;

/**
 * One family of series on one chart. `read` returns label → value; each label is a line.
 *  - gauge: the value as it is;
 *  - rate: a monotonic counter, shown as its increase per second (a decrease, i.e. a reset, counts 0);
 *  - quantiles: `read` returns per-bucket counts keyed by upper bound ('+Inf' last); shown as the
 *    `quantiles` (in milliseconds) of the observations of the last LATENCY_WINDOW_SAMPLES intervals.
 * `sparse` series appear only once their counter has moved (errors and closes: most reasons never
 * happen, and seven flat zeros would hide the one that does).
 */
export interface SeriesSpec {
  readonly chart: string;
  readonly kind: 'gauge' | 'rate' | 'quantiles';
  readonly read: (totals: DashboardTotals) => Numbers | undefined;
  readonly sparse?: boolean;
  readonly quantiles?: readonly number[];
}

/** websocket_closes_total's `code` label folded into the classes an operator reads. */
export function closeCodeClass(code: string): string {
  if (code === '1000') return 'normal';
  if (code === '1001') return 'going away';
  if (code === '3xxx' || code === '4xxx') return 'application';
  if (code.startsWith('10')) return 'error';
  return 'other';
}

function closesBySideAndClass(closes: DashboardTotals['closes']): Numbers {
  const out: Record<string, number> = {};
  for (const [side, byCode] of Object.entries(closes)) {
    for (const [code, n] of Object.entries(byCode)) {
      const key = `${side} ${closeCodeClass(code)}`;
      out[key] = (out[key] ?? 0) + n;
    }
  }
  return out;
}

function buckets(h: DashboardTotals['upgradeBuckets']): Numbers {
  const out: Record<string, number> = {};
  h.le.forEach((le, i) => (out[String(le)] = h.counts[i]!));
  out['+Inf'] = h.counts[h.le.length]!;
  return out;
}

export const DASHBOARD_SERIES: readonly SeriesSpec[] = [
  { chart: 'connections', kind: 'gauge', read: (t) => ({ total: t.active, ...t.activeByService }) },
  { chart: 'upgrades', kind: 'rate', read: (t) => ({ upgrades: t.upgrades }) },
  { chart: 'messages', kind: 'rate', read: (t) => ({ 'client → backend': t.messages.clientToBackend, 'backend → client': t.messages.backendToClient }) },
  { chart: 'bytes', kind: 'rate', read: (t) => ({ 'client → backend': t.bytes.clientToBackend, 'backend → client': t.bytes.backendToClient }) },
  { chart: 'errors', kind: 'rate', sparse: true, read: (t) => t.errors },
  { chart: 'closes', kind: 'rate', sparse: true, read: (t) => closesBySideAndClass(t.closes) },
  { chart: 'upgrade-latency', kind: 'quantiles', quantiles: [0.5, 0.99], read: (t) => buckets(t.upgradeBuckets) },
  { chart: 'backend-health', kind: 'gauge', read: (t) => t.backendUp },
  { chart: 'backend-connections', kind: 'gauge', read: (t) => t.activeByBackend },
  // HTTP proxying is not built yet: dashboardTotals leaves httpRequests out and this chart stays empty.
  { chart: 'http-requests', kind: 'rate', sparse: true, read: (t) => t.httpRequests },
  { chart: 'limited', kind: 'rate', sparse: true, read: (t) => t.limited },
];

// ---- Rates and percentiles ---------------------------------------------------------------------------

/** Per-second increase of a counter; NaN when there is no earlier value; a decrease (the counter was
 *  reset, e.g. by a reload) counts as no increase rather than a negative rate. */
export function counterRate(now: number, before: number | undefined, seconds: number): number {
  if (before === undefined || !(seconds > 0)) return NaN;
  return Math.max(0, now - before) / seconds;
}

/**
 * The q-quantile of a histogram given as per-bucket counts with their upper bounds (the last count is
 * +Inf), interpolated linearly inside the bucket like Prometheus' histogram_quantile; NaN when empty.
 * A quantile in the +Inf bucket is reported as the highest finite bound.
 */
export function histogramQuantile(q: number, le: readonly number[], counts: readonly number[]): number {
  let total = 0;
  for (const c of counts) total += c;
  if (!(total > 0)) return NaN;
  const rank = q * total;
  let cumulative = 0;
  for (let i = 0; i < counts.length; i++) {
    const count = counts[i]!;
    if (cumulative + count >= rank && count > 0) {
      if (i >= le.length) return le[le.length - 1]!;
      const lower = i === 0 ? 0 : le[i - 1]!;
      return lower + ((le[i]! - lower) * (rank - cumulative)) / count;
    }
    cumulative += count;
  }
  return le[le.length - 1]!;
}

// ---- The ring ----------------------------------------------------------------------------------------

export interface SeriesDocument {
  readonly key: string;
  readonly chart: string;
  readonly label: string;
  /** One per entry of `t`; null where the series had no value. */
  readonly values: (number | null)[];
}

export interface HistoryDocument {
  /** When this ring started (epoch ms): a page that sees it change knows Sluice restarted. */
  readonly startedAt: number;
  readonly intervalSeconds: number;
  readonly capacity: number;
  /** Sample times, seconds since the epoch, increasing. */
  readonly t: number[];
  readonly series: SeriesDocument[];
}

export interface SampleValue {
  readonly chart: string;
  readonly label: string;
  readonly value: number;
}

interface SeriesRing {
  readonly chart: string;
  readonly label: string;
  readonly values: Float64Array;
  /** Index (count of samples written before it) of the last sample with a value. */
  lastSeen: number;
}

/** JSON has no NaN, and a rate of 12.345678 reads no better than 12.346. */
function rounded(value: number): number | null {
  return Number.isFinite(value) ? Math.round(value * 1000) / 1000 : null;
}

export class HistoryRing {
  private readonly times: Float64Array;
  /** Samples ever written; the newest is at (written - 1) % capacity. */
  private written = 0;
  private readonly series = new Map<string, SeriesRing>();
  readonly startedAt = Date.now();

  constructor(
    readonly capacity = HISTORY_CAPACITY,
    readonly intervalMs = DEFAULT_HISTORY_INTERVAL_MS,
  ) {
    this.times = new Float64Array(capacity);
  }

  /** Append one sample at `atMs` (epoch ms); series missing from `values` get no value at that time. */
  push(atMs: number, values: ReadonlyMap<string, SampleValue>): void {
    const slot = this.written % this.capacity;
    // Times must increase for since-queries to be exact, even if the wall clock steps back.
    const previous = this.written === 0 ? -Infinity : this.times[(this.written - 1) % this.capacity]!;
    this.times[slot] = Math.max(atMs / 1000, previous + 0.001);
    for (const [key, ring] of this.series) {
      if (values.has(key)) continue;
      // A whole window without a value: nothing left to show, free it (a backend removed by a reload).
      if (this.written - ring.lastSeen >= this.capacity) this.series.delete(key);
      else ring.values[slot] = NaN;
    }
    for (const [key, sample] of values) {
      let ring = this.series.get(key);
      if (ring === undefined) {
        ring = { chart: sample.chart, label: sample.label, values: new Float64Array(this.capacity).fill(NaN), lastSeen: this.written };
        this.series.set(key, ring);
      }
      ring.values[slot] = sample.value;
      if (Number.isFinite(sample.value)) ring.lastSeen = this.written;
    }
    this.written++;
  }

  /** Samples newer than `sinceSeconds` (all that the ring holds for 0), oldest first. */
  since(sinceSeconds = 0): HistoryDocument {
    const oldest = Math.max(0, this.written - this.capacity);
    let first = this.written;
    while (first > oldest && this.times[(first - 1) % this.capacity]! > sinceSeconds) first--;
    const t: number[] = [];
    for (let i = first; i < this.written; i++) t.push(this.times[i % this.capacity]!);
    const series: SeriesDocument[] = [];
    for (const [key, ring] of this.series) {
      const values: (number | null)[] = [];
      for (let i = first; i < this.written; i++) values.push(rounded(ring.values[i % this.capacity]!));
      series.push({ key, chart: ring.chart, label: ring.label, values });
    }
    return { startedAt: this.startedAt, intervalSeconds: this.intervalMs / 1000, capacity: this.capacity, t, series };
  }
}

// ---- The sampler -------------------------------------------------------------------------------------

/** Turns successive DashboardTotals into one ring sample each: keeps the previous counter values (for
 *  rates) and the last few histogram snapshots (for windowed percentiles). */
export class HistorySampler {
  private readonly previous = new Map<string, number>();
  private readonly moved = new Set<string>();
  private previousAtMs = NaN;
  /** Per quantiles spec: cumulative bucket counts of the last LATENCY_WINDOW_SAMPLES + 1 samples. */
  private readonly histograms = new Map<SeriesSpec, Numbers[]>();

  constructor(
    readonly ring: HistoryRing,
    private readonly specs: readonly SeriesSpec[] = DASHBOARD_SERIES,
  ) {}

  /** `atMs` is wall-clock (the x axis); `monotonicMs` (performance.now()) measures the interval. */
  sample(totals: DashboardTotals, atMs: number, monotonicMs: number): void {
    const seconds = (monotonicMs - this.previousAtMs) / 1000;
    const values = new Map<string, SampleValue>();
    for (const spec of this.specs) {
      const read = spec.read(totals);
      if (read === undefined) continue;
      if (spec.kind === 'quantiles') {
        this.quantiles(spec, read, values);
        continue;
      }
      for (const [label, value] of Object.entries(read)) {
        const key = `${spec.chart}/${label}`;
        if (spec.kind === 'gauge') {
          values.set(key, { chart: spec.chart, label, value });
          continue;
        }
        const before = this.previous.get(key);
        this.previous.set(key, value);
        if (spec.sparse === true && !this.moved.has(key)) {
          if (before === undefined || value === before) continue;
          this.moved.add(key);
        }
        values.set(key, { chart: spec.chart, label, value: counterRate(value, before, seconds) });
      }
    }
    this.previousAtMs = monotonicMs;
    this.ring.push(atMs, values);
  }

  private quantiles(spec: SeriesSpec, cumulative: Numbers, into: Map<string, SampleValue>): void {
    let window = this.histograms.get(spec);
    if (window === undefined) this.histograms.set(spec, (window = []));
    window.push(cumulative);
    if (window.length > LATENCY_WINDOW_SAMPLES + 1) window.shift();
    const oldest = window[0]!;
    const labels = Object.keys(cumulative);
    const le = labels.filter((l) => l !== '+Inf').map(Number);
    // Counts within the window; a reset makes a bucket's difference negative, which counts as 0.
    const counts = labels.map((l) => (window.length > 1 ? Math.max(0, cumulative[l]! - (oldest[l] ?? 0)) : 0));
    for (const q of spec.quantiles ?? []) {
      const label = `p${Math.round(q * 1000) / 10}`;
      into.set(`${spec.chart}/${label}`, { chart: spec.chart, label, value: histogramQuantile(q, le, counts) * 1000 });
    }
  }
}

export interface History {
  readonly ring: HistoryRing;
  stop(): void;
}

/** Sample `read()` now and then every `intervalMs` until stopped; the timer never keeps the process alive. */
export function startHistory(ring: HistoryRing, read: () => DashboardTotals): History {
  const sampler = new HistorySampler(ring);
  const tick = (): void => sampler.sample(read(), Date.now(), performance.now());
  tick();
  const timer = setInterval(tick, ring.intervalMs);
  timer.unref();
  return { ring, stop: () => clearInterval(timer) };
}
