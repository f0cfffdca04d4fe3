/**
 * The floor row of the fan-out table: native/tools/fanout-floor.c, compiled here with the system's C
 * compiler, writes each publication to every subscriber socket with plain write(2) calls and no proxy at
 * all, pinned like the proxies (writer on the proxy's core, reader on the load core). What it costs is what
 * the kernel charges for loopback fan-out on this machine, so the proxies' rows can be read against it:
 * CPU per delivery above it is the proxy's own, and a latency target below its p99 cannot be met by any
 * proxy on one core.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { commandExists, REPO_ROOT, type Pinning } from './targets.js';
import type { FanoutSettings, FanoutStep } from './fanout.js';

interface FloorRun {
  received: number;
  writerCpuPerDeliveryUs: number;
  writerSystemShare: number;
  readerCpuPerDeliveryUs: number;
  p50Ms: number;
  p99Ms: number;
}

const cpuArg = (cpu: string | null): string => (cpu === null ? '-1' : String(Number.parseInt(cpu, 10)));

/** One step per rate, as the proxies' steps; throws when there is no C compiler. */
export function runFanoutFloor(s: FanoutSettings, pin: Pinning, log: (line: string) => void): FanoutStep[] {
  if (!commandExists('cc')) throw new Error('cc is not installed (apt-get install gcc)');
  const dir = mkdtempSync(join(tmpdir(), 'fanout-floor-'));
  try {
    const binary = join(dir, 'fanout-floor');
    execFileSync('cc', ['-O2', '-o', binary, join(REPO_ROOT, 'native/tools/fanout-floor.c')]);
    return s.rates.map((rate) => {
      const count = Math.max(1, Math.round(rate * s.seconds));
      const args = [String(s.subscribers), String(rate), String(count), cpuArg(pin.proxyCpu), cpuArg(pin.loadCpu)];
      const run = JSON.parse(execFileSync(binary, args, { encoding: 'utf8', timeout: 120_000 })) as FloorRun;
      const seconds = count / rate;
      const step: FanoutStep = {
        rate,
        published: count,
        expected: count * s.subscribers,
        received: run.received,
        deliveriesPerSecond: run.received / seconds,
        cpuPerDelivery: run.writerCpuPerDeliveryUs,
        backendCpuPerDelivery: 0,
        proxyCpuPercent: ((run.writerCpuPerDeliveryUs * run.received) / (seconds * 1e6)) * 100,
        receiverCpuPercent: ((run.readerCpuPerDeliveryUs * run.received) / (seconds * 1e6)) * 100,
        p50Ms: run.p50Ms,
        p99Ms: run.p99Ms,
        internalP99Ms: null,
        systemShare: run.writerSystemShare,
      };
      log(`    ${rate}/s: ${step.cpuPerDelivery.toFixed(2)} µs CPU per delivery (${Math.round(step.systemShare * 100)} % kernel), p99 ${step.p99Ms.toFixed(1)} ms`);
      return step;
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
