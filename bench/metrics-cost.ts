/**
 * What metrics cost: Sluice's CPU per forwarded round trip with counting on, against the same build with
 * counting compiled out (SLUICE_METRICS=off, read once per worker, swaps the per-message counting
 * functions for no-ops and skips the per-connection ones).
 *
 *   npx tsc -p . && node dist/bench/metrics-cost.js [--runs 7] [--duration 5] [--out bench/results]
 *
 * Paired design, because this machine is shared with other benchmarks and sequential runs differed by
 * 3× from one to the next: each run starts both variants side by side on the same CPU and drives the
 * same load at both at the same time, so whatever else the machine does hits both alike; the figure is
 * the median over runs of the on/off ratio of proxy CPU per round trip (and the medians of each).
 *
 * Loads: `echo` 64 B, 1,000 connections × 1 message / 100 ms per variant (10,000 msg/s each way, open
 * loop), and `throughput` 64 B, 50 connections × 16 in flight per variant (closed loop). Proxy CPU is
 * read from /proc over each generator's measured window only (bench/procstat.ts).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseOptions } from '../loadtest/options.js';
import { loadWithProxyCpu, median } from './paired.js';
import { REPO_ROOT, commandExists, removeSnapshot, snapshotSluice, startBackends, startTarget, type Pinning, type Running } from './targets.js';

interface Sample {
  readonly variant: 'on' | 'off';
  readonly load: 'echo' | 'throughput';
  readonly run: number;
  readonly usPerRoundTrip: number;
  readonly roundTrips: number;
  readonly lost: number;
}

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}
function argText(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1]! : fallback;
}

async function main(): Promise<void> {
  const runs = arg('--runs', 7);
  const duration = arg('--duration', 5);
  const out = argText('--out', join(REPO_ROOT, 'bench/results'));
  const pin: Pinning = commandExists('taskset') ? { proxyCpu: '0', loadCpu: '1' } : { proxyCpu: null, loadCpu: null };
  const root = snapshotSluice();
  if (root === null) throw new Error('Sluice is not built: run npx tsc -p .');
  const backends = await startBackends(pin);
  const samples: Sample[] = [];
  try {
    for (let run = 1; run <= runs; run++) {
      const targets = new Map<'on' | 'off', Running>();
      // Start order alternates, so neither variant is always the older process.
      for (const variant of run % 2 === 1 ? (['on', 'off'] as const) : (['off', 'on'] as const)) {
        if (variant === 'off') process.env.SLUICE_METRICS = 'off';
        else delete process.env.SLUICE_METRICS;
        targets.set(variant, await startTarget('sluice-1', backends.ports, pin, root));
      }
      delete process.env.SLUICE_METRICS;
      try {
        for (const load of ['echo', 'throughput'] as const) {
          const measured = await Promise.all(
            (['on', 'off'] as const).map(async (variant) => {
              const target = targets.get(variant)!;
              const shape = load === 'echo' ? ['--connections', '1000', '--interval', '100'] : ['--connections', '50', '--in-flight', '16'];
              const options = parseOptions([load, '--url', target.urls.join(','), '--size', '64', ...shape, '--rate', '2000', '--warmup', '1', '--duration', String(duration), '--threads', '1', '--no-progress']);
              const { report, cpuUs } = await loadWithProxyCpu(target.pid!, options!);
              return { variant, load, run, usPerRoundTrip: cpuUs / report.received, roundTrips: report.received, lost: report.lost } satisfies Sample;
            }),
          );
          for (const sample of measured) {
            samples.push(sample);
            process.stderr.write(`run ${run} metrics ${sample.variant.padEnd(3)} ${load.padEnd(10)} ${sample.usPerRoundTrip.toFixed(2)} µs/round trip (${sample.roundTrips} round trips, lost ${sample.lost})\n`);
          }
        }
      } finally {
        for (const target of targets.values()) await target.stop();
      }
    }
  } finally {
    delete process.env.SLUICE_METRICS;
    await backends.stop();
    removeSnapshot(root);
  }
  const rows: string[] = [];
  const summary: Record<string, { on: number; off: number; ratio: number }> = {};
  for (const load of ['echo', 'throughput'] as const) {
    const on = median(samples.filter((s) => s.load === load && s.variant === 'on').map((s) => s.usPerRoundTrip));
    const off = median(samples.filter((s) => s.load === load && s.variant === 'off').map((s) => s.usPerRoundTrip));
    const ratios = Array.from({ length: runs }, (_, i) => {
      const of = (v: 'on' | 'off'): number => samples.find((x) => x.run === i + 1 && x.load === load && x.variant === v)!.usPerRoundTrip;
      return of('on') / of('off');
    });
    const ratio = median(ratios);
    summary[load] = { on, off, ratio };
    rows.push(`| ${load === 'echo' ? 'echo 64 B, 1,000 conn × 10 msg/s' : 'throughput 64 B, 50 conn × 16 in flight'} | ${on.toFixed(2)} | ${off.toFixed(2)} | ${((ratio - 1) * 100).toFixed(1)} % (runs: ${ratios.map((r) => `${((r - 1) * 100).toFixed(0)}`).join(', ')}) |`);
  }
  const stamp = new Date().toISOString().replace(/[-:]/g, '').slice(0, 13);
  const markdown = `# Metrics cost (${new Date().toISOString()})

Two Sluice processes, 1 worker each, metrics on and SLUICE_METRICS=off, side by side${pin.proxyCpu === null ? '' : ' on CPU 0 (generators and echo backends on CPU 1)'}, the same load at both at once; ${runs} runs.
Proxy CPU per round trip (one message each way through Sluice), µs, from /proc over the measured ${duration} s: medians
of each variant, and the cost as the median over runs of each run's on/off ratio.

| Load | metrics on | metrics off | cost (median of paired ratios; each run's in %) |
|---|---|---|---|
${rows.join('\n')}

Every sample (µs per round trip):

| Run | Load | on | off |
|---|---|---|---|
${Array.from({ length: runs }, (_, i) => i + 1)
  .flatMap((run) =>
    (['echo', 'throughput'] as const).map((load) => {
      const get = (v: 'on' | 'off'): string => samples.find((s) => s.run === run && s.load === load && s.variant === v)?.usPerRoundTrip.toFixed(2) ?? '-';
      return `| ${run} | ${load} | ${get('on')} | ${get('off')} |`;
    }),
  )
  .join('\n')}

Command: \`node dist/bench/metrics-cost.js --runs ${runs} --duration ${duration}\`. The machine is shared with other
benchmarks; running both variants at once and taking paired ratios keeps most of that noise out of the cost.
`;
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, `metrics-cost-${stamp}.md`), markdown);
  writeFileSync(join(out, `metrics-cost-${stamp}.json`), `${JSON.stringify({ runs, duration, pin, summary, samples }, null, 2)}\n`);
  process.stdout.write(markdown);
}

main().catch((error: Error) => {
  process.stderr.write(`metrics-cost: ${error.stack ?? error.message}\n`);
  process.exitCode = 1;
});
