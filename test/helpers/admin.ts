/**
 * Test helpers for the admin listener: Sluice in-process with its observability wired exactly as
 * `sluice run` does (in-process.ts, src/primary/primary.ts), so a test can both scrape /metrics and
 * reach into the SharedArrayBuffer or inject a fault; and a small Prometheus text parser for exact
 * assertions.
 */
import { startInProcess, type InProcessSluice } from './in-process.js';

export type AdminSluice = InProcessSluice;

/** `{PORT}` and `{ADMIN_PORT}` in `config` become free ports; an `admin.address` is added when absent. */
export function startWithAdmin(config: string, workers: number): Promise<AdminSluice> {
  return startInProcess(config, workers);
}

export interface HttpAnswer {
  readonly status: number;
  readonly type: string;
  readonly text: string;
}

export async function get(url: string): Promise<HttpAnswer> {
  const res = await fetch(url);
  return { status: res.status, type: res.headers.get('content-type') ?? '', text: await res.text() };
}

/** One sample of a Prometheus text exposition. */
export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export function parsePrometheus(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (match === null) throw new Error(`not a Prometheus sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, key, value] of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[key!] = value!.replace(/\\(.)/g, '$1');
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return samples;
}

/** The value of the one sample of `name` whose labels include `labels` exactly, 0 when there is none;
 *  throws when several match (the test named too few labels). */
export function sampleValue(samples: readonly Sample[], name: string, labels: Record<string, string> = {}): number {
  const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (found.length > 1) throw new Error(`${found.length} samples of ${name} match ${JSON.stringify(labels)}`);
  return found[0]?.value ?? 0;
}

/** Sum of every sample of `name` whose labels include `labels`. */
export function sampleSum(samples: readonly Sample[], name: string, labels: Record<string, string> = {}): number {
  return samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((a, s) => a + s.value, 0);
}
