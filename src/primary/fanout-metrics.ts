/**
 * What fan-out shows: its Prometheus metrics (computed at scrape time from the hub, which sums the workers'
 * shared counters) and the admin API documents (/api/fanout, and the `fanout` totals in /api/overview that
 * the dashboard charts). Channel names are never label values: they come from publishers and backends
 * and are unbounded; only /api/fanout names the busiest channels.
 */
import type client from 'prom-client';
import { FANOUT_LATENCY_BUCKETS, FanoutCounter } from '../shared/fanout-wire.js';
import type { FanoutHub } from './fanout-hub.js';

type MetricType = 'counter' | 'gauge' | 'histogram';
interface Value {
  readonly labels: Record<string, string | number>;
  readonly value: number;
  readonly metricName?: string;
}

/** A metric computed when scraped (the shape prom-client's registry reads, as in metrics.ts). */
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

export const LATENCY_METRIC = 'sluice_fanout_publish_to_send_seconds';

export function registerFanoutMetrics(registry: client.Registry, hub: FanoutHub): void {
  const add = (name: string, help: string, type: MetricType, compute: () => Value[]): void => {
    registry.registerMetric(new ComputedMetric(name, help, type, compute) as unknown as client.Metric);
  };
  add('sluice_fanout_publishes_total', 'Publications taken, by source: http (the publish listener) or redis (another replica, or a publisher on Redis).', 'counter', () => {
    const { publishes } = hub.totals();
    return [
      { labels: { source: 'http' }, value: publishes.http },
      { labels: { source: 'redis' }, value: publishes.redis },
    ];
  });
  add('sluice_fanout_deliveries_total', 'Messages handed to subscribers (one per publication per subscriber), all workers.', 'counter', () => [{ labels: {}, value: hub.totals().deliveries }]);
  add(
    'sluice_fanout_dropped_total',
    'Losses by reason: slow_consumer (publications a lagging subscriber missed), slow_consumer_closed (subscribers closed with 1013), redis_unavailable (publications not forwarded to other replicas).',
    'counter',
    () => {
      const { dropped } = hub.totals();
      return [
        { labels: { reason: 'slow_consumer' }, value: dropped.slowConsumer },
        { labels: { reason: 'slow_consumer_closed' }, value: dropped.slowConsumerClosed },
        { labels: { reason: 'redis_unavailable' }, value: dropped.redisUnavailable },
      ];
    },
  );
  add('sluice_fanout_subscriptions', 'Subscriptions held now (one per connection per channel).', 'gauge', () => [{ labels: {}, value: hub.totals().subscriptions }]);
  add('sluice_fanout_channels', 'Channels with at least one subscriber now (updated within a second).', 'gauge', () => [{ labels: {}, value: hub.totals().channels }]);
  if (hub.broker !== null) {
    const broker = hub.broker;
    add('sluice_fanout_redis_connected', '1 while both Redis links (publish and subscribe) are up.', 'gauge', () => [{ labels: {}, value: broker.connected ? 1 : 0 }]);
  }
  add(LATENCY_METRIC, 'Time from a publication reaching Sluice to its publish in a worker (once per publication per worker that has subscribers).', 'histogram', () => {
    const c = hub.totals().counters;
    const values: Value[] = [];
    let cumulative = 0;
    FANOUT_LATENCY_BUCKETS.forEach((le, i) => {
      cumulative += c[FanoutCounter.LatencyBuckets + i]!;
      values.push({ metricName: `${LATENCY_METRIC}_bucket`, labels: { le }, value: cumulative });
    });
    cumulative += c[FanoutCounter.LatencyBuckets + FANOUT_LATENCY_BUCKETS.length]!;
    values.push({ metricName: `${LATENCY_METRIC}_bucket`, labels: { le: '+Inf' }, value: cumulative });
    values.push({ metricName: `${LATENCY_METRIC}_sum`, labels: {}, value: c[FanoutCounter.LatencySum]! });
    values.push({ metricName: `${LATENCY_METRIC}_count`, labels: {}, value: c[FanoutCounter.LatencyCount]! });
    return values;
  });
}

/** The totals /api/overview carries (and the dashboard charts as rates). */
export function fanoutOverview(hub: FanoutHub): object {
  const t = hub.totals();
  return { publishes: t.publishes, deliveries: t.deliveries, dropped: t.dropped, subscriptions: t.subscriptions, channels: t.channels };
}

/** GET /api/fanout: the totals, the Redis link, and the busiest channels with their subscriber counts. */
export function fanoutDocument(hub: FanoutHub, limit = 20): object {
  const s = hub.settings;
  return {
    ...fanoutOverview(hub),
    publishListener: `${s.publishHost === '' ? '*' : s.publishHost}:${s.publishPort}`,
    slowConsumer: s.slowConsumer,
    redis: hub.broker === null ? null : { channel: hub.broker.channel, connected: hub.broker.connected, unforwarded: hub.broker.unforwarded },
    busiestChannels: hub.busiest(limit),
  };
}
