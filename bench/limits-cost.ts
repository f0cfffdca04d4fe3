/**
 * What the limits cost: Sluice's CPU per forwarded round trip and per upgrade with every limit configured
 * (none of them reached) against the same build without limits; and what a ping flood costs against a message
 * flood (uWebSockets.js answers every ping itself, so the question is whether pings are a cheaper way to
 * load the proxy than messages).
 *
 *   npx tsc -p . && node dist/bench/limits-cost.js [--runs 3] [--duration 5] [--out bench/results]
 *
 * Paired design as in metrics-cost.ts: each run starts both variants side by side (1 worker each) and drives
 * the same load at both at once, so a busy machine hits both alike; the figure is the median over runs of the
 * on/off ratio. Loads: `echo` 64 B (1,000 connections × 10 msg/s), `throughput` 64 B (50 connections × 16 in
 * flight), `churn` (upgrade and close, 50 at a time). The flood comparison: 50 connections to the variant
 * without limits, each keeping 32 pings (or 32 64-byte messages, echoed) in flight for the duration.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { parseOptions } from '../loadtest/options.js';
import { cpuMicros, processTree } from './procstat.js';
import { loadWithProxyCpu, median } from './paired.js';
import { REPO_ROOT, commandExists, freePort, pinned, removeSnapshot, sluiceConfig, snapshotSluice, startBackends, stopProcess, waitForPort, type Pinning, type Running } from './targets.js';

type Variant = 'on' | 'off';
type Load = 'echo' | 'throughput' | 'churn';

/** The bench's Sluice (targets.ts sluiceConfig) with every limit on, set so that none is reached. */
function limitsConfig(port: number, adminPort: number, backends: readonly number[]): string {
  return `admin: { address: "127.0.0.1:${adminPort}" }
entryPoints:
  web: { address: "127.0.0.1:${port}", websocket: { maxConnections: 1000000 } }
http:
  routers:
    echo: { rule: "PathPrefix(\`/\`)", service: echo, middlewares: [allow, perClient, upgrades] }
  middlewares:
    allow: { ipAllowList: { sourceRange: ["127.0.0.0/8", "::1"] } }
    perClient: { inFlightReq: { amount: 1000000 } }
    upgrades: { rateLimit: { average: 1000000, burst: 1000000 } }
  services:
    echo:
      loadBalancer:
        servers: [ ${backends.map((p) => `{ url: "ws://127.0.0.1:${p}" }`).join(', ')} ]
        maxConnections: 1000000
        admission: { average: 1000000, burst: 1000000 }
websocket:
  allowedOrigins: ["https://bench.example.com"]
  messageRate: { average: 1000000, burst: 1000000 }
  controlFrameRate: { average: 1000000, burst: 1000000 }
  maxLifetime: 1h
`;
}

/** One Sluice (1 worker) of the snapshot at `root`, with or without the limits. */
async function startVariant(variant: Variant, root: string, backends: readonly number[], pin: Pinning): Promise<Running> {
  const port = await freePort();
  const adminPort = await freePort();
  const dir = mkdtempSync(join(tmpdir(), `sluice-limits-${variant}-`));
  const file = join(dir, 'sluice.yaml');
  writeFileSync(file, variant === 'on' ? limitsConfig(port, adminPort, backends) : sluiceConfig(port, adminPort, backends));
  const [cmd, args] = pinned(pin.proxyCpu, process.execPath, [join(root, 'bin/sluice.js'), 'run', '--config', file, '--workers', '1']);
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'], cwd: root });
  await waitForPort(port, 20_000, child);
  return {
    urls: [`ws://127.0.0.1:${port}/`],
    throughputUrls: null,
    httpUrl: `http://127.0.0.1:${port}`,
    pid: child.pid as number,
    stop: async () => {
      await stopProcess(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

async function measure(target: Running, load: Load, duration: number): Promise<{ us: number; units: number }> {
  const shape =
    load === 'echo'
      ? ['echo', '--connections', '1000', '--interval', '100', '--size', '64', '--rate', '2000']
      : load === 'throughput'
        ? ['throughput', '--connections', '50', '--in-flight', '16', '--size', '64']
        : ['churn', '--concurrency', '50'];
  const options = parseOptions([...shape, '--url', target.urls.join(','), '--warmup', '1', '--duration', String(duration), '--threads', '1', '--no-progress']);
  const { report, cpuUs } = await loadWithProxyCpu(target.pid!, options!);
  const units = load === 'churn' ? report.upgrades : report.received;
  return { us: cpuUs / units, units };
}

/** 50 connections each keeping 32 pings (or messages) in flight for `seconds`: Sluice µs per frame answered. */
async function flood(target: Running, kind: 'ping' | 'message', seconds: number): Promise<{ us: number; frames: number }> {
  const sockets = await Promise.all(
    Array.from({ length: 50 }, () => new Promise<WebSocket>((resolve, reject) => {
      const ws = new WebSocket(target.urls[0]!, { perMessageDeflate: false });
      ws.once('open', () => resolve(ws));
      ws.once('error', reject);
    })),
  );
  let frames = 0;
  let running = true;
  const payload = Buffer.alloc(64, 7);
  const send = (ws: WebSocket): void => {
    if (kind === 'ping') ws.ping(payload);
    else ws.send(payload);
  };
  for (const ws of sockets) {
    const answered = (): void => {
      frames++;
      if (running) send(ws);
    };
    ws.on(kind === 'ping' ? 'pong' : 'message', answered);
    for (let i = 0; i < 32; i++) send(ws);
  }
  await new Promise((r) => setTimeout(r, 1000));
  const pids = processTree(target.pid!);
  const before = cpuMicros(pids);
  const framesBefore = frames;
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const after = cpuMicros(pids);
  const counted = frames - framesBefore;
  running = false;
  for (const ws of sockets) ws.terminate();
  return { us: (after - before) / counted, frames: counted };
}

async function main(): Promise<void> {
  const runs = arg('--runs', 3);
  const duration = arg('--duration', 5);
  const out = process.argv.includes('--out') ? process.argv[process.argv.indexOf('--out') + 1]! : join(REPO_ROOT, 'bench/results');
  const pin: Pinning = commandExists('taskset') ? { proxyCpu: '0', loadCpu: '1' } : { proxyCpu: null, loadCpu: null };
  const root = snapshotSluice();
  if (root === null) throw new Error('Sluice is not built: run npx tsc -p .');
  const backends = await startBackends(pin);
  const samples: { run: number; load: Load; variant: Variant; us: number; units: number }[] = [];
  const floods: { run: number; kind: 'ping' | 'message'; us: number; frames: number }[] = [];
  try {
    for (let run = 1; run <= runs; run++) {
      const targets = new Map<Variant, Running>();
      try {
        // Start order alternates, so neither variant is always the older process. Inside the try: when the
        // second fails to start, the first is stopped too.
        for (const variant of run % 2 === 1 ? (['on', 'off'] as const) : (['off', 'on'] as const)) targets.set(variant, await startVariant(variant, root, backends.ports, pin));
        for (const load of ['echo', 'throughput', 'churn'] as const) {
          const measured = await Promise.all((['on', 'off'] as const).map(async (variant) => ({ variant, ...(await measure(targets.get(variant)!, load, duration)) })));
          for (const m of measured) {
            samples.push({ run, load, ...m });
            process.stderr.write(`run ${run} limits ${m.variant.padEnd(3)} ${load.padEnd(10)} ${m.us.toFixed(2)} µs per ${load === 'churn' ? 'upgrade' : 'round trip'} (${m.units})\n`);
          }
        }
        for (const kind of ['ping', 'message'] as const) {
          const f = await flood(targets.get('off')!, kind, duration);
          floods.push({ run, kind, ...f });
          process.stderr.write(`run ${run} flood ${kind.padEnd(7)} ${f.us.toFixed(2)} µs per ${kind === 'ping' ? 'ping answered' : 'message echoed'} (${f.frames})\n`);
        }
      } finally {
        for (const t of targets.values()) await t.stop();
      }
    }
  } finally {
    await backends.stop();
    removeSnapshot(root);
  }
  const rows = (['echo', 'throughput', 'churn'] as const).map((load) => {
    const of = (run: number, v: Variant): number => samples.find((s) => s.run === run && s.load === load && s.variant === v)!.us;
    const ratios = Array.from({ length: runs }, (_, i) => of(i + 1, 'on') / of(i + 1, 'off'));
    const on = median(samples.filter((s) => s.load === load && s.variant === 'on').map((s) => s.us));
    const off = median(samples.filter((s) => s.load === load && s.variant === 'off').map((s) => s.us));
    return `| ${load} | ${on.toFixed(2)} | ${off.toFixed(2)} | ${((median(ratios) - 1) * 100).toFixed(1)} % (runs: ${ratios.map((r) => ((r - 1) * 100).toFixed(0)).join(', ')}) |`;
  });
  const ping = median(floods.filter((f) => f.kind === 'ping').map((f) => f.us));
  const message = median(floods.filter((f) => f.kind === 'message').map((f) => f.us));
  const markdown = `# Limits cost (${new Date().toISOString()})

Two Sluice processes, 1 worker each, with every limit configured (none reached) and without limits, side by side${pin.proxyCpu === null ? '' : ' on CPU 0 (generators and echo backends on CPU 1)'}; ${runs} runs of ${duration} s.
Proxy CPU from /proc: µs per round trip (echo, throughput) or per upgrade (churn).

| Load | limits on | limits off | cost (median of paired ratios; each run's in %) |
|---|---|---|---|
${rows.join('\n')}

Flood, without limits (50 connections × 32 in flight): a client ping costs Sluice ${ping.toFixed(2)} µs (uWS answers it; no JavaScript
runs unless controlFrameRate is set), a 64-byte message echoed through the backend ${message.toFixed(2)} µs (two forwarded frames).

Command: \`node dist/bench/limits-cost.js --runs ${runs} --duration ${duration}\`.
`;
  mkdirSync(out, { recursive: true });
  const stamp = new Date().toISOString().replace(/[-:]/g, '').slice(0, 13);
  writeFileSync(join(out, `limits-cost-${stamp}.md`), markdown);
  writeFileSync(join(out, `limits-cost-${stamp}.json`), `${JSON.stringify({ runs, duration, pin, samples, floods }, null, 2)}\n`);
  process.stdout.write(markdown);
}

main().catch((error: Error) => {
  process.stderr.write(`limits-cost: ${error.stack ?? error.message}\n`);
  process.exitCode = 1;
});
