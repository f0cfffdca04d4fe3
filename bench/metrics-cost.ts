/**
 * What metrics cost: Sluice's CPU per forwarded round trip with counting on, against the same build with
 * counting compiled out (SLUICE_METRICS=off, read once per worker, swaps the per-message counting
 * functions for no-ops and skips the per-connection ones). Runs alternate on/off so drift on a shared
 * machine spreads over both; the figure is the median of each, and the ratio of the medians.
 *
 *   npx tsc -p . && node dist/bench/metrics-cost.js [--runs 5] [--duration 5] [--out bench/results]
 *
 * Loads: `echo` 64 B, 2,000 connections × 1 message / 100 ms (20,000 msg/s each way, open loop), and
 * `throughput` 64 B, 100 connections × 16 in flight (closed loop, as fast as it goes). Proxy CPU is read
 * from /proc over the generator's measured window only (bench/procstat.ts).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseOptions } from '../loadtest/options.js';
import { runLoad } from '../loadtest/run.js';
import { cpuMicros, processTree } from './procstat.js';
import { REPO_ROOT, commandExists, removeSnapshot, snapshotSluice, startBackends, startTarget, type Pinning } from './targets.js';

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

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

async function main(): Promise<void> {
  const runs = arg('--runs', 5);
  const duration = arg('--duration', 5);
  const out = argText('--out', join(REPO_ROOT, 'bench/results'));
  const pin: Pinning = commandExists('taskset') ? { proxyCpu: '0', loadCpu: '1' } : { proxyCpu: null, loadCpu: null };
  const root = snapshotSluice();
  if (root === null) throw new Error('Sluice is not built: run npx tsc -p .');
  const backends = await startBackends(pin);
  const samples: Sample[] = [];
  try {
    for (let run = 1; run <= runs; run++) {
      const order: ('on' | 'off')[] = run % 2 === 1 ? ['on', 'off'] : ['off', 'on'];
      for (const variant of order) {
        if (variant === 'off') process.env.SLUICE_METRICS = 'off';
        else delete process.env.SLUICE_METRICS;
        const target = await startTarget('sluice-1', backends.ports, pin, root);
        try {
          for (const load of ['echo', 'throughput'] as const) {
            const shape = load === 'echo' ? ['--connections', '2000', '--interval', '100'] : ['--connections', '100', '--in-flight', '16'];
            const options = parseOptions([load, '--url', target.urls.join(','), '--size', '64', ...shape, '--rate', '4000', '--warmup', '1', '--duration', String(duration), '--threads', '1', '--no-progress']);
            let pids: number[] = [];
            let before = 0;
            let after = 0;
            const report = await runLoad(options!, {
              onPhase(phase) {
                if (phase === 'measure') {
                  pids = processTree(target.pid!);
                  before = cpuMicros(pids);
                } else if (phase === 'stop') after = cpuMicros(pids);
              },
            });
            const sample: Sample = { variant, load, run, usPerRoundTrip: (after - before) / report.received, roundTrips: report.received, lost: report.lost };
            samples.push(sample);
            process.stderr.write(`run ${run} metrics ${variant.padEnd(3)} ${load.padEnd(10)} ${sample.usPerRoundTrip.toFixed(2)} µs/round trip (${report.received} round trips, lost ${report.lost})\n`);
          }
        } finally {
          await target.stop();
        }
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
    summary[load] = { on, off, ratio: on / off };
    rows.push(`| ${load === 'echo' ? 'echo 64 B, 2,000 conn × 10 msg/s' : 'throughput 64 B, 100 conn × 16 in flight'} | ${on.toFixed(2)} | ${off.toFixed(2)} | ${((on / off - 1) * 100).toFixed(1)} % |`);
  }
  const stamp = new Date().toISOString().replace(/[-:]/g, '').slice(0, 13);
  const markdown = `# Metrics cost (${new Date().toISOString()})

Sluice 1 worker${pin.proxyCpu === null ? '' : ' pinned to CPU 0 (generator and echo backends on CPU 1)'}; ${runs} runs alternating on/off, medians.
Proxy CPU per round trip (one message each way through Sluice), µs, from /proc over the measured ${duration} s.

| Load | metrics on | metrics off (SLUICE_METRICS=off) | cost |
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
benchmarks; the alternating order and the medians are there to keep that noise out of the ratio.
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
