/**
 * What a reload costs a worker while it holds thousands of connections: Sluice (one worker, its own
 * process) holds `--connections` idle proxied WebSockets (default 8,000, the machine's open-file limit
 * allows no more per process) spread over N routers, and is reloaded `--reloads` times (one router's
 * rule changes each time, so every reload makes a new generation). Two figures per reload:
 *  - the worker's own install time (what it reports: building the generation's routing table,
 *    balancers and metrics plan), and
 *  - the event-loop pause a client sees: a probe connection sends a message every 2 ms through the
 *    same worker and times each echo; the worst echo in the second around a reload, against the worst
 *    echo of quiet seconds, includes what the install time cannot see (the structured clone of the
 *    snapshot as the message arrives).
 * Run with N = 10 and 1,000 routers; results go to bench/results/reload-pause-*.md.
 *
 *   node dist/bench/reload-pause.js [--connections 8000] [--reloads 10] [--routers 10,1000]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { cpus, tmpdir, totalmem } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

interface Args {
  connections: number;
  reloads: number;
  routers: number[];
}

function parseArgs(argv: readonly string[]): Args {
  const args: Args = { connections: 8000, reloads: 10, routers: [10, 1000] };
  for (let i = 0; i < argv.length; i += 2) {
    const value = argv[i + 1] ?? '';
    if (argv[i] === '--connections') args.connections = Number(value);
    else if (argv[i] === '--reloads') args.reloads = Number(value);
    else if (argv[i] === '--routers') args.routers = value.split(',').map(Number);
    else throw new Error(`unknown option ${argv[i]} (expected --connections, --reloads or --routers)`);
  }
  return args;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

function configText(port: number, adminPort: number, routers: number, backends: readonly string[], variant: number): string {
  const services = Math.max(1, Math.floor(routers / 10));
  const lines = [
    'entryPoints:',
    `  web: { address: "127.0.0.1:${port}" }`,
    `admin: { address: "127.0.0.1:${adminPort}" }`,
    'workers: 1',
    'http:',
    '  routers:',
  ];
  for (let r = 0; r < routers; r++) {
    const rule = r === 0 ? `PathPrefix(\`/r0/v${variant}\`) || PathPrefix(\`/r0/\`)` : `PathPrefix(\`/r${r}/\`)`;
    lines.push(`    r${r}: { rule: "${rule}", service: s${r % services} }`);
  }
  lines.push('  services:');
  for (let s = 0; s < services; s++) lines.push(`    s${s}: { loadBalancer: { servers: [ { url: "${backends[0]}" }, { url: "${backends[1]}" } ] } }`);
  return `${lines.join('\n')}\n`;
}

function startProcess(args: string[], readyText: string): Promise<{ child: ChildProcess; output: () => string }> {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (output += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (output += d));
  return new Promise((resolve, reject) => {
    const timer = setInterval(() => {
      if (output.includes(readyText)) {
        clearInterval(timer);
        resolve({ child, output: () => output });
      }
    }, 20);
    child.once('exit', (code) => {
      clearInterval(timer);
      reject(new Error(`${args.join(' ')} exited with ${code}:\n${output}`));
    });
  });
}

async function openIdle(url: string, routers: number, count: number): Promise<WebSocket[]> {
  const sockets: WebSocket[] = [];
  for (let start = 0; start < count; start += 200) {
    const batch: Promise<WebSocket>[] = [];
    for (let i = start; i < Math.min(count, start + 200); i++) {
      batch.push(
        new Promise((resolve, reject) => {
          const ws = new WebSocket(`${url}/r${i % routers}/x`, { localAddress: `127.0.0.${2 + (i % 8)}`, perMessageDeflate: false });
          ws.once('open', () => resolve(ws));
          ws.once('error', reject);
        }),
      );
    }
    sockets.push(...(await Promise.all(batch)));
  }
  return sockets;
}

interface Probe {
  /** Echo round trips (ms) with the time each was sent (performance.now()). */
  readonly samples: { at: number; rtt: number }[];
  stop(): void;
}

function probe(ws: WebSocket): Probe {
  const samples: { at: number; rtt: number }[] = [];
  let sentAt = 0;
  let waiting = false;
  ws.on('message', () => {
    samples.push({ at: sentAt, rtt: performance.now() - sentAt });
    waiting = false;
  });
  const timer = setInterval(() => {
    if (waiting) return;
    waiting = true;
    sentAt = performance.now();
    ws.send('p');
  }, 2);
  return { samples, stop: () => clearInterval(timer) };
}

function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function measure(routers: number, connections: number, reloads: number, backends: readonly string[]): Promise<string[]> {
  const dir = mkdtempSync(path.join(tmpdir(), 'sluice-reload-bench-'));
  const port = await freePort();
  const adminPort = await freePort();
  const file = path.join(dir, 'sluice.yaml');
  writeFileSync(file, configText(port, adminPort, routers, backends, 0));
  const sluice = await startProcess([path.join(REPO, 'bin/sluice.js'), 'run', '--config', file], 'sluice listening');
  const url = `ws://127.0.0.1:${port}`;
  const idle = await openIdle(url, routers, connections);
  const probeSocket = await openIdle(url, 1, 1);
  const p = probe(probeSocket[0]!);
  await sleep(2000);
  const installs: number[] = [];
  const windows: { from: number; to: number }[] = [];
  for (let i = 1; i <= reloads; i++) {
    writeFileSync(file, configText(port, adminPort, routers, backends, i));
    const from = performance.now();
    const res = await fetch(`http://127.0.0.1:${adminPort}/api/reload`, { method: 'POST' });
    const body = (await res.json()) as { result: string; pausesMs: number[] };
    if (body.result !== 'success') throw new Error(`reload ${i}: ${JSON.stringify(body)}`);
    installs.push(...body.pausesMs);
    windows.push({ from: from - 50, to: performance.now() + 500 });
    await sleep(1000);
  }
  p.stop();
  const inReload = p.samples.filter((s) => windows.some((w) => s.at >= w.from && s.at <= w.to)).map((s) => s.rtt);
  const quiet = p.samples.filter((s) => !windows.some((w) => s.at >= w.from - 200 && s.at <= w.to + 200)).map((s) => s.rtt);
  for (const ws of idle) ws.terminate();
  probeSocket[0]!.terminate();
  sluice.child.kill('SIGINT');
  sluice.child.kill('SIGINT');
  await new Promise((r) => sluice.child.once('exit', r));
  rmSync(dir, { recursive: true, force: true });
  const f = (n: number): string => n.toFixed(2);
  return [
    `| ${routers} | ${connections} | ${f(percentile(installs, 50))} | ${f(Math.max(...installs))} | ${f(percentile(quiet, 99))} / ${f(Math.max(...quiet))} | ${f(percentile(inReload, 99))} / ${f(Math.max(...inReload))} | ${inReload.length} |`,
  ];
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const backends = await startProcess([path.join(REPO, 'dist/loadtest/echo-backend.js'), '--ports', '0,0'], 'listening');
  const ports = [...backends.output().matchAll(/:(\d+)/g)].map((m) => Number(m[1]));
  const urls = ports.map((p) => `ws://127.0.0.1:${p}`);
  const rows: string[] = [];
  try {
    for (const routers of args.routers) {
      process.stderr.write(`reload pause: ${routers} routers, ${args.connections} idle connections, ${args.reloads} reloads…\n`);
      rows.push(...(await measure(routers, args.connections, args.reloads, urls)));
    }
  } finally {
    backends.child.kill('SIGTERM');
  }
  const stamp = new Date().toISOString().replace(/[-:]/g, '').slice(0, 13);
  const command = `node dist/bench/reload-pause.js ${process.argv.slice(2).join(' ')}`.trim();
  const text = [
    `# Reload pause, ${new Date().toISOString()}`,
    '',
    `Command: \`${command}\`. Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}.`,
    'One worker; the idle connections are spread over the routers; each reload changes one rule. "Install" is the',
    "worker's own time to build the generation; the echo columns are a probe's round trips through the same",
    'worker (every 2 ms), p99 / max, in quiet seconds and in the second around each reload.',
    '',
    '| routers | idle connections | install p50 ms | install max ms | echo quiet p99 / max ms | echo around reloads p99 / max ms | probes around reloads |',
    '|---|---|---|---|---|---|---|',
    ...rows,
    '',
  ].join('\n');
  mkdirSync(path.join(REPO, 'bench/results'), { recursive: true });
  const out = path.join(REPO, `bench/results/reload-pause-${stamp}.md`);
  writeFileSync(out, text);
  process.stdout.write(`${text}\nwritten to ${path.relative(REPO, out)}\n`);
}

main().catch((error: Error) => {
  process.stderr.write(`${error.stack ?? error.message}\n`);
  process.exitCode = 1;
});
