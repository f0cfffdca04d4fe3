/**
 * The compression rows of `npm run bench`: what permessage-deflate costs and saves on the client leg for a
 * 2 KiB JSON feed message, Sluice with compression off, shared and dedicated (backend leg plain, Sluice's
 * default) against HAProxy passing a compressing backend's frames through (the backend compresses with
 * uWS's shared or dedicated compressor). Per row: bytes on the client's wire per message each way, proxy
 * CPU per round trip at a fixed rate, and RSS per idle connection that exchanged one message (so its
 * compressor and decompressor exist). Clients are `ws` with its default permessage-deflate offer, as a
 * browser makes one. Also runs bench/compression-fanout.ts (uWS pub/sub: once or per subscriber).
 *
 * Every step is bounded; the proxy is pinned like the main bench's (CPU 0; clients and backends on CPU 1).
 * The backends are this file run with `--backend MODE --ports P,P,P` (uWS echo that compresses what it sends).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import uWS from 'uWebSockets.js';
import WebSocket from 'ws';
import { cpuMicros, processTree, rssBytes } from './procstat.js';
import { REPO_ROOT, freePort, haproxyConfig, pinned, stopProcess, waitForPort, type Pinning } from './targets.js';
import { measureFanout, type FanoutRow } from './compression-fanout.js';

type Mode = 'off' | 'shared' | 'dedicated';

export interface CompressionCase {
  readonly label: string;
  readonly proxy: 'sluice' | 'haproxy';
  /** Sluice's websocket.compression (client leg); HAProxy has none of its own. */
  readonly proxyMode: Mode;
  /** What the backends compress with (HAProxy rows: passed through to the client). */
  readonly backendMode: Mode;
  /** More of Sluice's websocket keys, YAML (compressor sizes). */
  readonly sluiceKeys?: string;
}

export const COMPRESSION_CASES: readonly CompressionCase[] = [
  { label: 'Sluice, compression off', proxy: 'sluice', proxyMode: 'off', backendMode: 'off' },
  { label: 'Sluice, shared', proxy: 'sluice', proxyMode: 'shared', backendMode: 'off' },
  { label: 'Sluice, dedicated (32KB)', proxy: 'sluice', proxyMode: 'dedicated', backendMode: 'off' },
  { label: 'HAProxy, backend compresses (shared)', proxy: 'haproxy', proxyMode: 'off', backendMode: 'shared' },
  { label: 'HAProxy, backend compresses (dedicated 32KB)', proxy: 'haproxy', proxyMode: 'off', backendMode: 'dedicated' },
];

export interface CompressionSettings {
  readonly quick: boolean;
  /** Echo load: connections × one message per interval, warm-up then measured seconds. */
  readonly connections: number;
  readonly intervalMs: number;
  readonly warmup: number;
  readonly duration: number;
  /** Idle connections held for the memory figure. */
  readonly held: number;
  readonly fanoutSubscribers: number;
  readonly fanoutMessages: number;
}

export const COMPRESSION_FULL: CompressionSettings = {
  quick: false,
  connections: 100,
  intervalMs: 50,
  warmup: 1,
  duration: 5,
  held: 2000,
  fanoutSubscribers: 200,
  fanoutMessages: 300,
};
export const COMPRESSION_QUICK: CompressionSettings = {
  ...COMPRESSION_FULL,
  quick: true,
  warmup: 0.5,
  duration: 2,
  held: 500,
  fanoutSubscribers: 50,
  fanoutMessages: 100,
};

export interface CompressionFigures {
  readonly label: string;
  /** Client-leg bytes per message toward the client and from it (frame headers included). */
  readonly bytesToClient: number | null;
  readonly bytesFromClient: number | null;
  readonly cpuPerRoundTrip: number | null;
  readonly rssPerConnection: number | null;
  readonly lost: number;
  readonly error: string | null;
}

export interface CompressionResults {
  readonly settings: CompressionSettings;
  /** One list of rows per run. */
  readonly runs: CompressionFigures[][];
  readonly fanout: FanoutRow[];
}

const UWS_MODES: Record<Mode, number> = {
  off: uWS.DISABLED,
  shared: uWS.SHARED_COMPRESSOR | uWS.SHARED_DECOMPRESSOR,
  dedicated: uWS.DEDICATED_COMPRESSOR_32KB | uWS.SHARED_DECOMPRESSOR,
};

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A 2 KiB JSON feed message; `seq` varies the numbers as a live feed does. */
export function feedMessage(seq: number): string {
  let text = '{"type":"quotes","seq":' + seq + ',"quotes":[';
  for (let i = 0; text.length < 2000; i++) {
    text += `${i > 0 ? ',' : ''}{"symbol":"SYM${(seq + i) % 97}","bid":${(100 + ((seq * 31 + i * 7) % 997) / 10).toFixed(2)},"ask":${(100.5 + ((seq * 17 + i * 3) % 997) / 10).toFixed(2)},"ts":${1700000000000 + seq * 50 + i}}`;
  }
  return `${text}]}`.padEnd(2048, ' ').slice(0, 2048);
}

// ---- backends ---------------------------------------------------------------------------------

/** Echo backends (uWS) on `ports` that compress what they send with `mode`. Runs in a child process. */
function runBackends(mode: Mode, ports: number[]): void {
  for (const port of ports) {
    uWS
      .App()
      .ws('/*', {
        compression: UWS_MODES[mode],
        maxPayloadLength: 16 * 1024 * 1024,
        maxBackpressure: 16 * 1024 * 1024,
        idleTimeout: 0,
        message: (ws, message, isBinary) => {
          ws.send(message, isBinary, true);
        },
      })
      .listen('127.0.0.1', port, (s) => {
        if (!s) {
          process.stderr.write(`cannot listen on ${port}\n`);
          process.exit(1);
        }
      });
  }
}

async function startBackends(mode: Mode, pin: Pinning): Promise<{ ports: number[]; child: ChildProcess }> {
  const ports = [await freePort(), await freePort(), await freePort()];
  const [cmd, args] = pinned(pin.loadCpu, process.execPath, [fileURLToPath(import.meta.url), '--backend', mode, '--ports', ports.join(',')]);
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  for (const p of ports) await waitForPort(p, 10_000, child);
  return { ports, child };
}

// ---- proxies ------------------------------------------------------------------------------------

async function startProxy(c: CompressionCase, backends: number[], pin: Pinning, sluiceRoot: string): Promise<{ port: number; child: ChildProcess; dir: string }> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-compression-'));
  let child: ChildProcess;
  if (c.proxy === 'haproxy') {
    const file = join(dir, 'haproxy.cfg');
    writeFileSync(file, haproxyConfig(port, backends));
    const [cmd, args] = pinned(pin.proxyCpu, 'haproxy', ['-db', '-f', file]);
    child = spawn(cmd, args, { stdio: 'ignore' });
  } else {
    const file = join(dir, 'sluice.yaml');
    writeFileSync(
      file,
      `admin: { address: "127.0.0.1:${await freePort()}" }
entryPoints:
  web: { address: "127.0.0.1:${port}" }
http:
  routers:
    echo: { rule: "PathPrefix(\`/\`)", service: echo }
  services:
    echo:
      loadBalancer:
        servers: [ ${backends.map((p) => `{ url: "ws://127.0.0.1:${p}" }`).join(', ')} ]
websocket:
  compression: ${c.proxyMode}
${c.sluiceKeys ?? ''}
`,
    );
    const [cmd, args] = pinned(pin.proxyCpu, process.execPath, [join(sluiceRoot, 'bin/sluice.js'), 'run', '--config', file, '--workers', '1']);
    child = spawn(cmd, args, { stdio: 'ignore', cwd: sluiceRoot });
  }
  try {
    await waitForPort(port, 20_000, child);
  } catch (err) {
    await stopProcess(child);
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return { port, child, dir };
}

// ---- clients --------------------------------------------------------------------------------------

function socketOf(ws: WebSocket): Socket {
  return (ws as unknown as { _socket: Socket })._socket;
}

/** Open `n` clients with ws's default permessage-deflate offer (compressing messages of 1 KiB and more). */
async function openClients(url: string, n: number): Promise<WebSocket[]> {
  const clients: WebSocket[] = [];
  for (let i = 0; i < n; i += 50) {
    const batch = Array.from({ length: Math.min(50, n - i) }, () => new WebSocket(url, { perMessageDeflate: true, handshakeTimeout: 10_000 }));
    await Promise.all(batch.map((ws) => new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    })));
    clients.push(...batch);
  }
  return clients;
}

async function closeClients(clients: WebSocket[]): Promise<void> {
  for (const ws of clients) ws.terminate();
  await sleep(200);
}

/** RSS per idle connection: hold `n` clients that each exchanged `messages` messages (one by default). */
async function measureIdle(url: string, proxyPid: number, n: number, messages = 1): Promise<number> {
  await sleep(500);
  const before = rssBytes(processTree(proxyPid));
  const clients = await openClients(url, n);
  for (let m = 0; m < messages; m++) {
    await Promise.all(clients.map((ws, i) => new Promise<void>((resolve) => {
      ws.once('message', () => resolve());
      ws.send(feedMessage(i * messages + m));
    })));
  }
  await sleep(1000);
  const after = rssBytes(processTree(proxyPid));
  await closeClients(clients);
  return (after - before) / n;
}

/** The fixed-rate echo: returns per-message client-leg bytes each way and proxy CPU per round trip. */
async function measureEcho(url: string, proxyPid: number, s: CompressionSettings): Promise<Pick<CompressionFigures, 'bytesToClient' | 'bytesFromClient' | 'cpuPerRoundTrip' | 'lost'>> {
  const clients = await openClients(url, s.connections);
  let received = 0;
  let sent = 0;
  let measuring = false;
  // Lost is counted over the whole run, after the replies still in flight have had a second to arrive: the
  // window's own counts differ by the messages in flight at its edges, which are not losses.
  let receivedAll = 0;
  for (const ws of clients) {
    ws.on('message', () => {
      receivedAll++;
      if (measuring) received++;
    });
  }
  let seq = 0;
  const timers = clients.map((ws, i) =>
    setTimeout(() => {
      timers[i] = setInterval(() => {
        if (measuring) sent++;
        ws.send(feedMessage(seq++));
      }, s.intervalMs) as unknown as NodeJS.Timeout;
    }, (i * s.intervalMs) / clients.length),
  );
  await sleep(s.warmup * 1000);
  const read0 = clients.reduce((a, ws) => a + socketOf(ws).bytesRead, 0);
  const written0 = clients.reduce((a, ws) => a + socketOf(ws).bytesWritten, 0);
  const pids = processTree(proxyPid);
  const cpu0 = cpuMicros(pids);
  measuring = true;
  await sleep(s.duration * 1000);
  measuring = false;
  const cpu = cpuMicros(pids) - cpu0;
  const read = clients.reduce((a, ws) => a + socketOf(ws).bytesRead, 0) - read0;
  const written = clients.reduce((a, ws) => a + socketOf(ws).bytesWritten, 0) - written0;
  for (const t of timers) clearInterval(t);
  await sleep(1000);
  const lost = seq - receivedAll;
  await closeClients(clients);
  return {
    bytesToClient: received > 0 ? read / received : null,
    bytesFromClient: sent > 0 ? written / sent : null,
    cpuPerRoundTrip: received > 0 ? cpu / received : null,
    lost,
  };
}

/** One run of every case. */
export async function measureCompression(s: CompressionSettings, pin: Pinning, sluiceRoot: string, haproxyInstalled: boolean, log: (line: string) => void): Promise<CompressionFigures[]> {
  const rows: CompressionFigures[] = [];
  for (const c of COMPRESSION_CASES) {
    const empty = { label: c.label, bytesToClient: null, bytesFromClient: null, cpuPerRoundTrip: null, rssPerConnection: null, lost: 0 };
    if (c.proxy === 'haproxy' && !haproxyInstalled) {
      rows.push({ ...empty, error: 'haproxy is not installed' });
      continue;
    }
    log(`  compression · ${c.label}`);
    let backends: { ports: number[]; child: ChildProcess } | null = null;
    let proxy: { port: number; child: ChildProcess; dir: string } | null = null;
    try {
      backends = await startBackends(c.backendMode, pin);
      proxy = await startProxy(c, backends.ports, pin, sluiceRoot);
      const url = `ws://127.0.0.1:${proxy.port}/`;
      const rssPerConnection = await measureIdle(url, proxy.child.pid!, s.held);
      const echo = await measureEcho(url, proxy.child.pid!, s);
      log(`    ${Math.round(echo.bytesToClient ?? 0)} B to the client per message, proxy ${echo.cpuPerRoundTrip?.toFixed(1)} µs per round trip, ${Math.round(rssPerConnection)} B per idle connection`);
      rows.push({ label: c.label, ...echo, rssPerConnection, error: null });
    } catch (err) {
      rows.push({ ...empty, error: (err as Error).message });
      log(`    failed: ${(err as Error).message}`);
    } finally {
      if (proxy) {
        await stopProcess(proxy.child);
        rmSync(proxy.dir, { recursive: true, force: true });
      }
      if (backends) await stopProcess(backends.child);
    }
  }
  return rows;
}

export async function runCompressionBench(s: CompressionSettings, runs: number, pin: Pinning, sluiceRoot: string | null, haproxyInstalled: boolean, log: (line: string) => void): Promise<CompressionResults> {
  const all: CompressionFigures[][] = [];
  for (let run = 1; run <= runs; run++) {
    log(`compression run ${run}/${runs}`);
    all.push(await measureCompression(s, pin, sluiceRoot ?? REPO_ROOT, haproxyInstalled, log));
  }
  log('compression · uWS pub/sub fan-out');
  const fanout = await measureFanout(s.fanoutSubscribers, s.fanoutMessages, log);
  return { settings: s, runs: all, fanout };
}

function median(values: number[]): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** The Markdown section of the results file. */
export function renderCompression(results: CompressionResults): string[] {
  const s = results.settings;
  const lines = [
    `## Compression: 2 KiB JSON message (median of ${results.runs.length} run${results.runs.length === 1 ? '' : 's'})`,
    '',
    `Clients: \`ws\` with its default permessage-deflate offer; echo at ${s.connections} connections × 1 message / ${s.intervalMs} ms, ` +
      `${s.warmup} s warm-up, ${s.duration} s measured; ${s.held} idle connections for memory. Sluice runs 1 worker with the backend leg plain; ` +
      'HAProxy passes the backend\'s compression through.',
    '',
    '| Case | bytes to client / msg | bytes from client / msg | proxy CPU / round trip (µs) | RSS / idle connection (B) | lost |',
    '|---|---:|---:|---:|---:|---:|',
  ];
  const fmt = (n: number | null, digits = 0): string => (n === null ? '—' : n.toFixed(digits));
  for (const c of COMPRESSION_CASES) {
    const rows = results.runs.map((run) => run.find((r) => r.label === c.label)).filter((r): r is CompressionFigures => r !== undefined);
    const error = rows.find((r) => r.error !== null)?.error;
    const pick = (key: 'bytesToClient' | 'bytesFromClient' | 'cpuPerRoundTrip' | 'rssPerConnection'): number | null =>
      median(rows.flatMap((r) => (r[key] === null ? [] : [r[key] as number])));
    lines.push(
      `| ${c.label}${error ? ` (${error})` : ''} | ${fmt(pick('bytesToClient'))} | ${fmt(pick('bytesFromClient'))} | ${fmt(pick('cpuPerRoundTrip'), 1)} | ${fmt(pick('rssPerConnection'))} | ${rows.reduce((a, r) => a + r.lost, 0)} |`,
    );
  }
  lines.push('', `### uWS pub/sub: ${s.fanoutSubscribers} subscribers, ${s.fanoutMessages} publishes (bench/compression-fanout.ts)`, '');
  lines.push('| Message | compression | compress flag | publisher CPU / delivery (µs) | bytes / message on the wire |', '|---|---|---|---:|---:|');
  for (const r of results.fanout) {
    lines.push(`| ${r.size} B | ${r.mode} | ${r.mode === 'off' ? '—' : r.compress ? 'set' : 'clear'} | ${r.usPerDelivery.toFixed(2)} | ${r.wireBytesPerMessage.toFixed(0)} |`);
  }
  lines.push('');
  return lines;
}

/** Sluice's compressor and decompressor sizes, for the memory table of the README. */
const MEMORY_CASES: readonly CompressionCase[] = [
  ...COMPRESSION_CASES.filter((c) => c.proxy === 'sluice'),
  { label: 'Sluice, dedicated (3KB)', proxy: 'sluice', proxyMode: 'dedicated', backendMode: 'off', sluiceKeys: '  dedicatedCompressor: 3KB' },
  { label: 'Sluice, dedicated (256KB)', proxy: 'sluice', proxyMode: 'dedicated', backendMode: 'off', sluiceKeys: '  dedicatedCompressor: 256KB' },
  { label: 'Sluice, shared, decompressor 32KB', proxy: 'sluice', proxyMode: 'shared', backendMode: 'off', sluiceKeys: '  decompressor: 32KB' },
];

/** Memory only: `node dist/bench/compression.js --memory N [M]` (N idle connections per Sluice setting, each
 *  after M messages each way, 1 by default). */
async function memoryOnly(n: number, messages: number): Promise<void> {
  const pin: Pinning = { proxyCpu: null, loadCpu: null };
  for (const c of MEMORY_CASES) {
    const backends = await startBackends(c.backendMode, pin);
    const proxy = await startProxy(c, backends.ports, pin, REPO_ROOT);
    try {
      const perConnection = await measureIdle(`ws://127.0.0.1:${proxy.port}/`, proxy.child.pid!, n, messages);
      process.stdout.write(`${c.label}: ${Math.round(perConnection)} B per idle connection (${n} held, after ${messages} message(s) each)\n`);
    } finally {
      await stopProcess(proxy.child);
      rmSync(proxy.dir, { recursive: true, force: true });
      await stopProcess(backends.child);
    }
  }
}

const invoked = process.argv[1] === fileURLToPath(import.meta.url);
if (invoked && process.argv[2] === '--backend') {
  runBackends(process.argv[3] as Mode, (process.argv[5] ?? '').split(',').map(Number));
} else if (invoked && process.argv[2] === '--memory') {
  memoryOnly(Number(process.argv[3] ?? 2000), Number(process.argv[4] ?? 1)).then(
    () => process.exit(0),
    (err: Error) => {
      process.stderr.write(`${err.stack ?? err.message}\n`);
      process.exit(1);
    },
  );
}
