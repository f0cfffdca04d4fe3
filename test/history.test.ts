/**
 * The dashboard's history (src/primary/history.ts) without a process: the ring keeps the last N samples
 * and answers since-queries across its wraparound, a series that appears late is padded with gaps and
 * one that stops is dropped after a window, and the sampler turns counters into per-second rates
 * (resets count 0) and the upgrade histogram into windowed percentiles. Then the same through a real
 * Sluice: /api/history and its since= queries, and the chart library served by the admin listener.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { DashboardTotals } from '../src/primary/admin-api.js';
import { simpleConfig, startBackend, startSluice } from './helpers/sluice.js';
import { connect, closed } from './helpers/clients.js';
import {
  closeCodeClass,
  counterRate,
  histogramQuantile,
  HistoryRing,
  HistorySampler,
  LATENCY_WINDOW_SAMPLES,
  type SampleValue,
  type SeriesSpec,
} from '../src/primary/history.js';

function sample(entries: Record<string, number>): Map<string, SampleValue> {
  return new Map(Object.entries(entries).map(([key, value]) => [key, { chart: key.split('/')[0]!, label: key.split('/')[1]!, value }]));
}

function valuesOf(ring: HistoryRing, key: string, since = 0): (number | null)[] | undefined {
  return ring.since(since).series.find((s) => s.key === key)?.values;
}

describe('history ring', () => {
  test('keeps the last `capacity` samples in order across the wraparound', () => {
    const ring = new HistoryRing(4, 1000);
    for (let i = 1; i <= 10; i++) ring.push(i * 1000, sample({ 'c/a': i }));
    const doc = ring.since(0);
    assert.deepEqual(doc.t, [7, 8, 9, 10]);
    assert.deepEqual(valuesOf(ring, 'c/a'), [7, 8, 9, 10]);
    assert.equal(doc.capacity, 4);
    assert.equal(doc.intervalSeconds, 1);
  });

  test('since returns only newer samples, across the wraparound and past the newest', () => {
    const ring = new HistoryRing(4, 1000);
    for (let i = 1; i <= 6; i++) ring.push(i * 1000, sample({ 'c/a': i * 10 }));
    assert.deepEqual(ring.since(4).t, [5, 6]);
    assert.deepEqual(valuesOf(ring, 'c/a', 4), [50, 60]);
    assert.deepEqual(ring.since(4.5).t, [5, 6]);
    assert.deepEqual(ring.since(6).t, []);
    assert.deepEqual(valuesOf(ring, 'c/a', 6), [], 'a series is listed even when no sample is newer');
    // Older than anything kept: the whole window (the page then shows a gap, not stale data).
    assert.deepEqual(ring.since(1).t, [3, 4, 5, 6]);
  });

  test('a series that appears late has gaps before it; one that stops has gaps after it, then is dropped', () => {
    const ring = new HistoryRing(3, 1000);
    ring.push(1000, sample({ 'c/a': 1 }));
    ring.push(2000, sample({ 'c/a': 2, 'c/late': 5 }));
    assert.deepEqual(valuesOf(ring, 'c/late'), [null, 5]);
    ring.push(3000, sample({ 'c/late': 6 }));
    assert.deepEqual(valuesOf(ring, 'c/a'), [1, 2, null]);
    ring.push(4000, sample({ 'c/late': 7 }));
    assert.deepEqual(valuesOf(ring, 'c/a'), [2, null, null]);
    ring.push(5000, sample({ 'c/late': 8 }));
    assert.equal(valuesOf(ring, 'c/a'), undefined, 'once its last value has left the window, the series is freed');
    ring.push(6000, sample({ 'c/late': 9 }));
    assert.deepEqual(valuesOf(ring, 'c/late'), [7, 8, 9]);
  });

  test('times increase even when the wall clock steps back, so since-queries stay exact', () => {
    const ring = new HistoryRing(10, 1000);
    ring.push(5000, sample({ 'c/a': 1 }));
    ring.push(4000, sample({ 'c/a': 2 }));
    const [first, second] = ring.since(0).t;
    assert.ok(second! > first!, `${second} > ${first}`);
    assert.deepEqual(valuesOf(ring, 'c/a', first), [2]);
  });

  test('NaN (no value) and long fractions are sent as JSON-friendly null and 3 decimals', () => {
    const ring = new HistoryRing(2, 1000);
    ring.push(1000, sample({ 'c/a': NaN }));
    ring.push(2000, sample({ 'c/a': 1 / 3 }));
    assert.deepEqual(valuesOf(ring, 'c/a'), [null, 0.333]);
    assert.match(JSON.stringify(ring.since(0)), /"values":\[null,0\.333\]/);
  });
});

describe('rates and percentiles', () => {
  test('a counter becomes its increase per second; a reset is no increase; no earlier value is no rate', () => {
    assert.equal(counterRate(150, 100, 2), 25);
    assert.equal(counterRate(100, 100, 1), 0);
    assert.equal(counterRate(3, 100, 1), 0, 'a counter that went down was reset: not a negative rate');
    assert.ok(Number.isNaN(counterRate(100, undefined, 1)));
    assert.ok(Number.isNaN(counterRate(100, 50, 0)));
  });

  test('quantiles interpolate inside the bucket like histogram_quantile', () => {
    const le = [0.001, 0.01, 0.1];
    // 10 observations: 4 ≤ 1 ms, 4 in (1, 10] ms, 2 in (10, 100] ms.
    assert.equal(histogramQuantile(0.4, le, [4, 4, 2, 0]), 0.001);
    assert.ok(Math.abs(histogramQuantile(0.5, le, [4, 4, 2, 0]) - (0.001 + 0.009 * 0.25)) < 1e-12);
    assert.ok(Math.abs(histogramQuantile(0.9, le, [4, 4, 2, 0]) - (0.01 + 0.09 * 0.5)) < 1e-12);
    assert.equal(histogramQuantile(0.99, le, [0, 0, 0, 3]), 0.1, 'in +Inf: the highest finite bound');
    assert.ok(Number.isNaN(histogramQuantile(0.5, le, [0, 0, 0, 0])));
  });

  test('close codes fold into classes', () => {
    assert.deepEqual(['1000', '1001', '1006', '1011', '3xxx', '4xxx', 'other'].map(closeCodeClass), [
      'normal',
      'going away',
      'error',
      'error',
      'application',
      'application',
      'other',
    ]);
  });
});

function totals(over: Partial<DashboardTotals> = {}): DashboardTotals {
  return {
    active: 0,
    activeByService: { chat: 0 },
    activeByBackend: { 'chat ws://a': 0 },
    backendUp: { 'chat ws://a': 1 },
    upgrades: 0,
    messages: { clientToBackend: 0, backendToClient: 0 },
    bytes: { clientToBackend: 0, backendToClient: 0 },
    errors: { connect_refused: 0, backend_lost: 0 },
    closes: { client: { '1000': 0, '4xxx': 0 }, backend: { '1006': 0 } },
    upgradeBuckets: { le: [0.001, 0.01, 0.1], counts: [0, 0, 0, 0] },
    ...over,
  };
}

describe('history sampler', () => {
  test('counters become rates over the measured interval; gauges are kept as they are', () => {
    const ring = new HistoryRing(10, 1000);
    const sampler = new HistorySampler(ring);
    sampler.sample(totals(), 1000, 0);
    sampler.sample(totals({ active: 3, activeByService: { chat: 3 }, messages: { clientToBackend: 40, backendToClient: 10 } }), 2000, 2000);
    sampler.sample(totals({ active: 1, activeByService: { chat: 1 }, messages: { clientToBackend: 2, backendToClient: 10 } }), 3000, 3000);
    assert.deepEqual(valuesOf(ring, 'messages/client → backend'), [null, 20, 0], 'per second over 2 s; a reset is 0');
    assert.deepEqual(valuesOf(ring, 'messages/backend → client'), [null, 5, 0]);
    assert.deepEqual(valuesOf(ring, 'connections/total'), [0, 3, 1]);
    assert.deepEqual(valuesOf(ring, 'connections/chat'), [0, 3, 1]);
    assert.deepEqual(valuesOf(ring, 'backend-health/chat ws://a'), [1, 1, 1]);
  });

  test('error and close series appear once their counter moves, then stay', () => {
    const ring = new HistoryRing(10, 1000);
    const sampler = new HistorySampler(ring);
    sampler.sample(totals(), 1000, 0);
    sampler.sample(totals(), 2000, 1000);
    const charts = (): string[] => ring.since(0).series.map((s) => s.key);
    assert.ok(!charts().some((k) => k.startsWith('errors/') || k.startsWith('closes/')), charts().join(', '));
    sampler.sample(totals({ errors: { connect_refused: 0, backend_lost: 2 }, closes: { client: { '1000': 0, '4xxx': 0 }, backend: { '1006': 2 } } }), 3000, 2000);
    sampler.sample(totals({ errors: { connect_refused: 0, backend_lost: 2 }, closes: { client: { '1000': 0, '4xxx': 0 }, backend: { '1006': 2 } } }), 4000, 3000);
    assert.deepEqual(valuesOf(ring, 'errors/backend_lost'), [null, null, 2, 0]);
    assert.deepEqual(valuesOf(ring, 'closes/backend error'), [null, null, 2, 0]);
    assert.equal(valuesOf(ring, 'errors/connect_refused'), undefined);
    assert.equal(valuesOf(ring, 'closes/client normal'), undefined);
    assert.equal(valuesOf(ring, 'http-requests/2xx'), undefined, 'no HTTP series until HTTP requests are counted');
  });

  test('a series source that appears later (HTTP requests) gets its own ring from then on', () => {
    const ring = new HistoryRing(10, 1000);
    const sampler = new HistorySampler(ring);
    sampler.sample(totals(), 1000, 0);
    sampler.sample(totals({ httpRequests: { '2xx': 5 } }), 2000, 1000);
    sampler.sample(totals({ httpRequests: { '2xx': 9 } }), 3000, 2000);
    assert.deepEqual(valuesOf(ring, 'http-requests/2xx'), [null, null, 4]);
  });

  test('upgrade latency percentiles come from the histogram over the last window of samples', () => {
    const ring = new HistoryRing(40, 1000);
    const sampler = new HistorySampler(ring);
    const at = (counts: number[], i: number): void =>
      sampler.sample(totals({ upgradeBuckets: { le: [0.001, 0.01, 0.1], counts } }), 1000 * (i + 1), 1000 * i);
    at([0, 0, 0, 0], 0);
    at([10, 0, 0, 0], 1); // ten fast upgrades: p50 and p99 within the first bucket
    const p50 = valuesOf(ring, 'upgrade-latency/p50')!;
    const p99 = valuesOf(ring, 'upgrade-latency/p99')!;
    assert.deepEqual([p50[0], p99[0]], [null, null], 'no upgrades yet: no percentile');
    assert.equal(p50[1], 0.5);
    assert.equal(p99[1], 0.99);
    at([10, 0, 10, 0], 2); // ten slow ones (10-100 ms) join them in the window
    assert.equal(valuesOf(ring, 'upgrade-latency/p50')![2], 1);
    assert.equal(valuesOf(ring, 'upgrade-latency/p99')![2], 98.2);
    // Once the window has passed both without new upgrades, there is nothing to take a percentile of.
    for (let i = 3; i <= 2 + LATENCY_WINDOW_SAMPLES; i++) at([10, 0, 10, 0], i);
    assert.equal(valuesOf(ring, 'upgrade-latency/p50')!.at(-1), null);
  });

  test('adding a series is one spec line', () => {
    const ring = new HistoryRing(10, 1000);
    const specs: SeriesSpec[] = [{ chart: 'extra', kind: 'rate', read: (t) => ({ upgrades: t.upgrades * 2 }) }];
    const sampler = new HistorySampler(ring, specs);
    sampler.sample(totals(), 1000, 0);
    sampler.sample(totals({ upgrades: 3 }), 2000, 1000);
    assert.deepEqual(ring.since(0).series.map((s) => [s.chart, s.label, s.values]), [['extra', 'upgrades', [null, 6]]]);
  });
});

describe('GET /api/history', () => {
  test('serves the window, then only newer samples; refuses a bad since', async (t) => {
    const backend = await startBackend();
    const sluice = await startSluice(simpleConfig([backend.url]), { env: { ...process.env, SLUICE_HISTORY_INTERVAL_MS: '100' } });
    t.after(async () => {
      await sluice.stop();
      await backend.close();
    });
    type Doc = { startedAt: number; intervalSeconds: number; capacity: number; t: number[]; series: { key: string; values: (number | null)[] }[] };
    const history = async (query = ''): Promise<Doc> => {
      const res = await fetch(`${sluice.adminUrl}/api/history${query}`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
      return (await res.json()) as Doc;
    };
    const first = await history();
    assert.equal(first.intervalSeconds, 0.1);
    assert.equal(first.capacity, 900);
    assert.ok(first.t.length >= 1);

    const ws = await connect(`${sluice.url}/`);
    for (let i = 0; i < 10; i++) ws.send('x');
    const last = first.t.at(-1)!;
    let newer: Doc = first;
    const deadline = Date.now() + 5000;
    for (;;) {
      newer = await history(`?since=${last}`);
      const upgrades = newer.series.find((s) => s.key === 'upgrades/upgrades')!.values;
      if (upgrades.some((v) => v !== null && v > 0)) break;
      assert.ok(Date.now() < deadline, `no sample counted the upgrade: ${JSON.stringify(newer)}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.ok(newer.t.every((time) => time > last), 'only samples newer than since');
    assert.equal(newer.startedAt, first.startedAt);
    for (const s of newer.series) assert.equal(s.values.length, newer.t.length, `${s.key}: one value per sample`);
    ws.close(1000);
    await closed(ws);

    const bad = await fetch(`${sluice.adminUrl}/api/history?since=yesterday`);
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as { error: string }).error, "since: invalid value 'yesterday' (expected seconds since the epoch, e.g. the last 't' received)");

    const script = await fetch(`${sluice.adminUrl}/dashboard/uplot.min.js`);
    assert.equal(script.status, 200);
    assert.match(script.headers.get('content-type') ?? '', /^text\/javascript/);
    assert.match(await script.text(), /uPlot/);
    const page = await (await fetch(`${sluice.adminUrl}/dashboard`)).text();
    assert.doesNotMatch(page, /(src|href)="(https?:)?\/\//, 'the page loads nothing from another origin');
  });
});
