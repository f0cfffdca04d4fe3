/**
 * Turns the bench's runs into the results files: every figure as the median of its runs with the
 * min–max beside it, the ratio of Sluice to NGINX and to HAProxy for every figure, and the load
 * generator's own CPU so a reader can rule it out as the bottleneck. The Markdown is for people,
 * the JSON beside it carries every run's raw value.
 */
import type { Figures, GeneratorUse, TargetRun } from './measure.js';
import { TARGET_LABELS, type TargetName } from './targets.js';
import { renderCompression, type CompressionResults } from './compression.js';

export interface Figure {
  readonly key: string;
  readonly label: string;
  readonly unit: string;
  /** Which way is better; 'info' figures get no ratio. */
  readonly better: 'lower' | 'higher' | 'info';
}

export const FIGURES: readonly Figure[] = [
  { key: 'cpu64', label: 'Proxy CPU per round trip, 64 B', unit: 'µs', better: 'lower' },
  { key: 'cpu4k', label: 'Proxy CPU per round trip, 4 KiB', unit: 'µs', better: 'lower' },
  { key: 'p50_64', label: 'Latency p50, 64 B', unit: 'µs', better: 'lower' },
  { key: 'p99_64', label: 'Latency p99, 64 B', unit: 'µs', better: 'lower' },
  { key: 'p999_64', label: 'Latency p99.9, 64 B', unit: 'µs', better: 'lower' },
  { key: 'addedP99_64', label: 'Added p99 (minus direct), 64 B', unit: 'µs', better: 'lower' },
  { key: 'p50_4k', label: 'Latency p50, 4 KiB', unit: 'µs', better: 'lower' },
  { key: 'p99_4k', label: 'Latency p99, 4 KiB', unit: 'µs', better: 'lower' },
  { key: 'p999_4k', label: 'Latency p99.9, 4 KiB', unit: 'µs', better: 'lower' },
  { key: 'addedP99_4k', label: 'Added p99 (minus direct), 4 KiB', unit: 'µs', better: 'lower' },
  { key: 'lost64', label: 'Messages lost, 64 B', unit: 'msgs', better: 'lower' },
  { key: 'lost4k', label: 'Messages lost, 4 KiB', unit: 'msgs', better: 'lower' },
  { key: 'throughput', label: 'Max throughput, 64 B closed loop (native client, C echo backends)', unit: 'msg/s', better: 'higher' },
  { key: 'throughputProxyCpu', label: 'Proxy CPU during max throughput', unit: '% core', better: 'info' },
  { key: 'cpuMax', label: 'Proxy CPU per round trip at max throughput', unit: 'µs', better: 'lower' },
  { key: 'rssPerConnection', label: 'RSS per idle proxied connection', unit: 'bytes', better: 'lower' },
  { key: 'cpuPerUpgrade', label: 'Proxy CPU per upgrade (churn)', unit: 'µs', better: 'lower' },
  { key: 'upgradesPerSecond', label: 'Upgrades/s during churn', unit: '/s', better: 'higher' },
  { key: 'httpRpsSmall', label: 'HTTP requests/s, small GET over keep-alive (autocannon)', unit: 'req/s', better: 'higher' },
  { key: 'httpCpuSmall', label: 'Proxy CPU per HTTP request, small GET', unit: 'µs', better: 'lower' },
  { key: 'httpRps1m', label: 'HTTP requests/s, 1 MiB response (autocannon)', unit: 'req/s', better: 'higher' },
  { key: 'httpCpu1m', label: 'Proxy CPU per HTTP request, 1 MiB response', unit: 'µs', better: 'lower' },
  { key: 'otherLoad', label: 'Other processes on the machine (worst echo window)', unit: '% core', better: 'info' },
];

export interface Summary {
  readonly median: number;
  readonly min: number;
  readonly max: number;
  readonly runs: readonly number[];
}

export interface TargetResult {
  readonly runs: TargetRun[];
  /** Why the target could not run at all (not installed). */
  readonly error: string | null;
  /** Runs that failed (would not start, or a measurement threw), with the reason. */
  readonly failures: string[];
}

export interface BenchResults {
  readonly date: string;
  readonly command: string;
  readonly machine: Record<string, string | number>;
  readonly versions: Record<string, string>;
  readonly pinning: string;
  readonly settings: Record<string, unknown>;
  readonly wallSeconds: number;
  readonly targets: Partial<Record<TargetName, TargetResult>>;
  /** The compression rows (bench/compression.ts), when they ran. */
  readonly compression?: CompressionResults | undefined;
}

export function summarize(values: readonly number[]): Summary | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
  return { median, min: sorted[0] as number, max: sorted[sorted.length - 1] as number, runs: values };
}

/**
 * Per-run values of a figure for a target. Proxy-added latency pairs run i of the target with
 * run i of direct: the bench interleaves targets within each run, so the pair ran minutes apart
 * at most and shares the machine's conditions.
 */
function values(results: BenchResults, target: TargetName, key: string): number[] {
  const runs = results.targets[target]?.runs ?? [];
  const added = /^addedP99_(64|4k)$/.exec(key);
  if (added) {
    const direct = results.targets.direct?.runs ?? [];
    if (target === 'direct') return [];
    return runs.flatMap((r, i) => {
      const mine = r.figures[`p99_${added[1]}`];
      const base = direct[i]?.figures[`p99_${added[1]}`];
      return typeof mine === 'number' && typeof base === 'number' ? [mine - base] : [];
    });
  }
  return runs.flatMap((r) => (typeof r.figures[key] === 'number' ? [r.figures[key] as number] : []));
}

export function summaries(results: BenchResults): Record<string, Partial<Record<TargetName, Summary>>> {
  const out: Record<string, Partial<Record<TargetName, Summary>>> = {};
  for (const f of FIGURES) {
    const row: Partial<Record<TargetName, Summary>> = {};
    for (const t of Object.keys(results.targets) as TargetName[]) {
      const s = summarize(values(results, t, f.key));
      if (s) row[t] = s;
    }
    out[f.key] = row;
  }
  return out;
}

export function num(n: number): string {
  const a = Math.abs(n);
  if (Number.isInteger(n) || a >= 100) return Math.round(n).toLocaleString('en-US');
  if (a >= 10) return n.toFixed(1);
  return n.toFixed(2);
}

function cell(s: Summary | undefined): string {
  if (!s) return '—';
  return s.runs.length > 1 ? `${num(s.median)} (${num(s.min)}–${num(s.max)})` : num(s.median);
}

/** Sluice's median over the other's; "—" when either is missing or both are zero. */
function ratio(f: Figure, sluice: Summary | undefined, other: Summary | undefined): string {
  if (!sluice || !other || f.better === 'info') return '—';
  if (f.key.startsWith('added') && (sluice.median <= 0 || other.median <= 0)) {
    // Added latency can be negative (direct is not a strict floor when the load core is busy), and a
    // ratio of signed numbers misleads; the difference in µs is what matters.
    const d = sluice.median - other.median;
    return `${d > 0 ? '+' : '−'}${num(Math.abs(d))} µs${d <= 0 ? ' ✓' : ''}`;
  }
  if (other.median === 0) return sluice.median === 0 ? 'equal (0)' : '—';
  const r = sluice.median / other.median;
  const good = f.better === 'lower' ? r <= 1 : r >= 1;
  return `${r.toFixed(2)}×${good ? ' ✓' : ''}`;
}

export type RatioTable = Record<string, Record<string, string>>;

export function ratios(results: BenchResults): RatioTable {
  const s = summaries(results);
  const out: RatioTable = {};
  for (const f of FIGURES) {
    const row = s[f.key] ?? {};
    out[f.key] = {
      'Sluice 1w / NGINX': ratio(f, row['sluice-1'], row.nginx),
      'Sluice 1w / HAProxy': ratio(f, row['sluice-1'], row.haproxy),
      'Sluice 2w / NGINX': ratio(f, row['sluice-2'], row.nginx),
      'Sluice 2w / HAProxy': ratio(f, row['sluice-2'], row.haproxy),
      // Not a proxy: uWS.js doing the work itself. A figure of Sluice's cannot go below it, so where this
      // column is past 1× no proxy built on uWS.js reaches HAProxy on that figure.
      'uWS.js alone / HAProxy': ratio(f, row.uws, row.haproxy),
    };
  }
  return out;
}

function generatorRow(runs: readonly TargetRun[], measurement: string): string {
  const use = runs.map((r) => (r.generator as GeneratorUse)[measurement]).filter((u) => u !== undefined);
  if (use.length === 0) return '—';
  const pct = summarize(use.map((u) => u.percentOfOneCore)) as Summary;
  const per = summarize(use.map((u) => u.usPerUnit)) as Summary;
  return `${num(pct.median)}% · ${num(per.median)} µs`;
}

export function renderMarkdown(results: BenchResults): string {
  const targets = Object.keys(results.targets) as TargetName[];
  const s = summaries(results);
  const lines: string[] = [];
  const runCount = Math.max(0, ...targets.map((t) => results.targets[t]?.runs.length ?? 0));
  lines.push(`# Sluice bench — ${results.date}`, '');
  lines.push(`- Command: \`${results.command}\` (${Math.round(results.wallSeconds)} s)`);
  lines.push(`- Machine: ${Object.entries(results.machine).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  lines.push(`- Versions: ${Object.entries(results.versions).map(([k, v]) => `${k} ${v}`).join('; ')}`);
  lines.push(`- Pinning: ${results.pinning}`);
  if (runCount === 0) {
    // Only the extra rows ran (--only compression or fanout): no comparison tables to show empty.
    if (results.compression !== undefined) lines.push('', ...renderCompression(results.compression));
    lines.push('');
    return lines.join('\n');
  }
  lines.push(`- Load: ${Object.entries(results.settings).map(([k, v]) => `${k} ${String(v)}`).join(', ')}`);
  lines.push('');
  lines.push(`## Results (median of ${runCount} run${runCount === 1 ? '' : 's'}, min–max in brackets)`, '');
  lines.push(`| Figure | unit | ${targets.map((t) => TARGET_LABELS[t]).join(' | ')} |`);
  lines.push(`|---|---|${targets.map(() => '---:').join('|')}|`);
  for (const f of FIGURES) {
    lines.push(`| ${f.label} | ${f.unit} | ${targets.map((t) => cell(s[f.key]?.[t])).join(' | ')} |`);
  }
  lines.push('');
  const r = ratios(results);
  const columns = Object.keys(Object.values(r)[0] ?? {});
  lines.push('## Ratios: Sluice ÷ NGINX and Sluice ÷ HAProxy (✓ = Sluice at or better)', '');
  if (targets.includes('uws')) {
    lines.push('The last column is not a proxy: uWS.js echoing, upgrading and answering HTTP itself, with no backend leg. Sluice terminates clients in uWS.js, so its figures cannot go below that column\'s; where it is already past 1×, no proxy of this design reaches HAProxy there.', '');
  }
  lines.push(`| Figure | better | ${columns.join(' | ')} |`);
  lines.push(`|---|---|${columns.map(() => '---:').join('|')}|`);
  for (const f of FIGURES) {
    lines.push(`| ${f.label} | ${f.better} | ${columns.map((c) => r[f.key]?.[c] ?? '—').join(' | ')} |`);
  }
  lines.push('');
  lines.push('## Load generator CPU (median % of one core · µs per message or upgrade)', '');
  lines.push('Pinned to the same core as the echo backends; near 100 % would mean the generator, not the proxy, set the pace.', '');
  const measurements = ['connect', 'echo 64', 'echo 4k', 'throughput', 'churn'];
  lines.push(`| Measurement | ${targets.map((t) => TARGET_LABELS[t]).join(' | ')} |`);
  lines.push(`|---|${targets.map(() => '---:').join('|')}|`);
  for (const m of measurements) {
    lines.push(`| ${m} | ${targets.map((t) => generatorRow(results.targets[t]?.runs ?? [], m)).join(' | ')} |`);
  }
  if (results.compression !== undefined) lines.push('', ...renderCompression(results.compression));
  const notes: string[] = [];
  for (const t of targets) {
    const tr = results.targets[t];
    if (tr?.error) notes.push(`- ${TARGET_LABELS[t]}: ${tr.error}`);
    tr?.failures.forEach((f) => notes.push(`- ${TARGET_LABELS[t]}, ${f}`));
    tr?.runs.forEach((run, i) => run.notes.forEach((n) => notes.push(`- ${TARGET_LABELS[t]}, run ${i + 1}: ${n}`)));
  }
  lines.push('', '## Notes', '');
  lines.push(...(notes.length > 0 ? notes : ['- No connection failures, losses or start-up errors.']));
  lines.push('');
  return lines.join('\n');
}

export function renderJson(results: BenchResults): string {
  return `${JSON.stringify({ ...results, summaries: summaries(results), ratios: ratios(results) }, null, 2)}\n`;
}

export type { Figures };
