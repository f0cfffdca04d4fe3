/**
 * What the paired cost benches (metrics-cost.ts, limits-cost.ts) share: one load-generator run whose
 * measured window is also the window the proxy's CPU is read over (as measure.ts does for the main bench),
 * and the median they report.
 */
import type { LoadOptions } from '../loadtest/options.js';
import { runLoad, type LoadReport } from '../loadtest/run.js';
import { cpuMicros, processTree } from './procstat.js';

/** Run `options` and return the report with the CPU microseconds process `pid` and its children used
 *  while the generator measured (warm-up and drain left out). */
export async function loadWithProxyCpu(pid: number, options: LoadOptions): Promise<{ report: LoadReport; cpuUs: number }> {
  let pids: number[] = [];
  let before = 0;
  let after = 0;
  const report = await runLoad(options, {
    onPhase(phase) {
      if (phase === 'measure') {
        pids = processTree(pid);
        before = cpuMicros(pids);
      } else if (phase === 'stop') after = cpuMicros(pids);
    },
  });
  return { report, cpuUs: after - before };
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
