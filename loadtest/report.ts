/**
 * How a run reads to a person: the one-line progress shown each second on a terminal and the
 * summary table at the end. Only the lines that mean something for the scenario are printed; the
 * JSON document (--json) always carries every field.
 */
import type { Percentiles } from './histogram.js';
import type { LoadOptions } from './options.js';
import type { LoadReport, Progress } from './run.js';

const int = (n: number): string => Math.round(n).toLocaleString('en-US');

function bytes(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} kB`;
  return `${n} B`;
}

/** Microseconds, shown as ms once they pass 10 ms so columns stay short. */
function micros(n: number): string {
  return n >= 10_000 ? `${(n / 1000).toFixed(1)} ms` : `${int(n)} µs`;
}

function counts(c: Record<string, number>): string {
  const entries = Object.entries(c).sort((a, b) => b[1] - a[1]);
  return entries.length === 0 ? 'none' : entries.map(([k, v]) => `${k} ${int(v)}`).join(', ');
}

function latencyLine(p: Percentiles): string {
  if (p.count === 0) return 'no samples';
  return `p50 ${micros(p.p50)}  p90 ${micros(p.p90)}  p99 ${micros(p.p99)}  p99.9 ${micros(p.p999)}  max ${micros(p.max)}`;
}

export function formatProgress(p: Progress, o: LoadOptions): string {
  const t = `[${p.elapsedSeconds.toFixed(0).padStart(4)}s ${p.phase.padEnd(7)}]`;
  const p99 = p.recentP99 > 0 ? micros(p.recentP99) : '-';
  if (o.scenario === 'connect' || o.scenario === 'churn') {
    return `${t} open ${int(p.open)}  upgrades ${int(p.upgradesPerSecond)}/s  upgrade p99 ${p99}  errors ${int(p.errors)}`;
  }
  if (o.scenario === 'receive') {
    return `${t} open ${int(p.open)}  received ${int(p.receivedPerSecond)}/s  push p99 ${p99}  errors ${int(p.errors)}`;
  }
  return (
    `${t} open ${int(p.open)}  sent ${int(p.sentPerSecond)}/s  received ${int(p.receivedPerSecond)}/s` +
    `  p99 ${p99}  errors ${int(p.errors)}`
  );
}

export function formatSummary(r: LoadReport, o: LoadOptions): string {
  const rows: [string, string][] = [];
  const add = (k: string, v: string): void => void rows.push([k, v]);
  let what = `${int(o.connections)} connections`;
  if (o.scenario === 'echo') what += ` × ${o.size} B every ${o.intervalMs} ms`;
  if (o.scenario === 'slow-consumer') what += ` × ${o.size} B every ${o.intervalMs} ms, ${o.slow} slow (${o.slowSize} B)`;
  if (o.scenario === 'throughput') what += ` × ${o.inFlight} in flight × ${o.size} B`;
  if (o.scenario === 'receive') what += ', listening';
  if (o.scenario === 'churn') what = `${int(o.concurrency)} at a time`;
  const via = [o.hostHeader === undefined ? '' : `Host ${o.hostHeader}`, o.servername === undefined ? '' : `SNI ${o.servername}`].filter((x) => x !== '');
  add('run', `${r.scenario} · ${r.urls.join(', ')}${via.length > 0 ? ` (${via.join(', ')})` : ''} · ${what} · ${o.threads} thread${o.threads > 1 ? 's' : ''}`);
  add('measured', `${r.measuredSeconds.toFixed(2)} s${o.warmup > 0 ? ` after ${o.warmup} s warm-up` : ''}${r.interrupted ? '  (INTERRUPTED: partial results)' : ''}`);
  if (o.scenario !== 'churn') {
    add('connections', `${int(r.connections.opened)} opened of ${int(r.connections.attempted)} in ${r.rampSeconds.toFixed(2)} s, peak ${int(r.connections.peak)}`);
    add('failed to open', counts(r.connections.failures));
    add('closed early', counts(r.connections.closedEarly));
  }
  if (o.scenario === 'connect' || o.scenario === 'churn') {
    if (o.scenario === 'churn') {
      add('upgrades', `${int(r.upgrades)} (${int(r.upgradesPerSecond)}/s)`);
      add('failures', counts(r.connections.failures));
    }
    add('upgrade latency', latencyLine(r.upgradeLatencyUs));
  } else if (o.scenario === 'receive') {
    add('messages', `received ${int(r.received)}${r.unstamped > 0 ? ` (${int(r.unstamped)} without a sentAt stamp)` : ''}`);
    add('rate', `${int(r.messagesPerSecond)} msg/s  ${bytes(r.bytesPerSecond.received)}/s received`);
    add(
      'push latency',
      r.latencyUs.count > 0
        ? `${latencyLine(r.latencyUs)}  (server's sentAt to arrival; needs clocks in step)`
        : 'no stamped messages (a push starting with {"sentAt":<Unix ms> gets one)',
    );
  } else {
    add('messages', `sent ${int(r.sent)}  received ${int(r.received)}  lost ${int(r.lost)}${r.corrupt > 0 ? `  WRONG LENGTH ${int(r.corrupt)}` : ''}`);
    add('rate', `${int(r.messagesPerSecond)} msg/s  ${bytes(r.bytesPerSecond.sent)}/s sent  ${bytes(r.bytesPerSecond.received)}/s received`);
    add('round trip', latencyLine(r.latencyUs));
    if (o.scenario !== 'throughput') add('send lag', `${latencyLine(r.sendLagUs)}  (lateness of the sender; high means the generator was saturated)`);
  }
  if (r.slow) {
    const s = r.slow;
    add('slow connections', `${s.connections}: sent ${int(s.sent)} (${bytes(s.bytesSent)}), ${s.everBlocked} saw backpressure, ${s.blockedAtStop} blocked at the end`);
    add('slow, closed by peer', counts(s.closed));
    add('slow, read at the end', `${int(s.receivedAfterResume)} messages (${bytes(s.bytesReceivedAfterResume)})`);
  }
  const unit = o.scenario === 'connect' || o.scenario === 'churn' ? 'upgrade' : 'message';
  const counted = unit === 'upgrade' ? r.upgrades : r.sent + r.received;
  // A per-unit figure over nothing (every attempt failed) would read as a measurement; say why there is none.
  const perUnit = counted > 0 ? `, ${r.cpu.usPerMessage} µs per ${unit}` : ` (no ${unit} ${unit === 'upgrade' ? 'completed' : 'counted'}, so no per-${unit} figure)`;
  add('generator CPU', `${r.cpu.percentOfOneCore}% of one core${perUnit} (user ${int(r.cpu.userMs)} ms, system ${int(r.cpu.systemMs)} ms)`);
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n');
}
