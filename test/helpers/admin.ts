/**
 * Test helpers for the admin listener: Sluice in-process with its observability wired exactly as
 * `sluice run` does (startObservability), so a test can both scrape /metrics and reach into the
 * SharedArrayBuffer or inject a fault; and a small Prometheus text parser for exact assertions.
 */
import { tmpdir } from 'node:os';
import { loadConfigText } from '../../src/config/load.js';
import type { Snapshot } from '../../src/config/snapshot.js';
import { createShared, type SharedViews } from '../../src/shared/layout.js';
import { planMetrics } from '../../src/shared/metrics-plan.js';
import { Supervisor } from '../../src/primary/supervisor.js';
import { startObservability, type Observability } from '../../src/primary/observability.js';
import { freePort } from './sluice.js';

export interface AdminSluice {
  readonly snapshot: Snapshot;
  readonly shared: SharedViews;
  readonly supervisor: Supervisor;
  readonly observability: Observability;
  readonly port: number;
  readonly url: string;
  readonly adminUrl: string;
  stop(): Promise<void>;
}

/** `{PORT}` and `{ADMIN_PORT}` in `config` become free ports; an `admin.address` is added when absent. */
export async function startWithAdmin(config: string, workers: number): Promise<AdminSluice> {
  const port = await freePort();
  let adminPort = await freePort();
  while (adminPort === port) adminPort = await freePort();
  const text = (/^admin:/m.test(config) ? config : `${config}\nadmin:\n  address: "127.0.0.1:{ADMIN_PORT}"\n`)
    .replaceAll('{PORT}', String(port))
    .replaceAll('{ADMIN_PORT}', String(adminPort));
  const snapshot = loadConfigText(text, 'yaml', 'in-process.yaml', tmpdir(), { workers });
  const shared = createShared(snapshot.backends.length, snapshot.workers, planMetrics(snapshot).slabFloats);
  const supervisor = new Supervisor(snapshot, shared);
  const observability = await startObservability(snapshot, shared, supervisor);
  let stopped: Promise<void> | null = null;
  const stop = (): Promise<void> =>
    (stopped ??= supervisor.shutdown(0).then(() => observability.close()));
  try {
    await supervisor.start();
  } catch (error) {
    await stop();
    throw error;
  }
  observability.markStarted();
  return { snapshot, shared, supervisor, observability, port, url: `ws://127.0.0.1:${port}`, adminUrl: `http://127.0.0.1:${adminPort}`, stop };
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
