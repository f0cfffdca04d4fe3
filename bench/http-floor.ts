/**
 * How little a plain HTTP proxy of Sluice's design can spend per request, measured against Sluice and
 * HAProxy in the same invocation. "Sluice's design": clients are terminated by uWebSockets.js with a
 * JavaScript handler per request, backends are reached through the native addon (native/), and every
 * answer goes back through uWS inside a cork. The floor proxy below (`--serve`) does only what no
 * transparent proxy of that shape can skip, and cuts every corner Sluice may not:
 *  - per request: the request line, every header (req.forEach), the client's address (for
 *    X-Forwarded-For), one latin1 head written to a kept-alive backend connection, an onAborted handler;
 *  - per answer: one call from the addon, the head found and Content-Length read, status and headers
 *    written in ONE writeStatus call (uWS writes that string as it is), the body with res.end, in a cork.
 *  It has no routing, balancing, middlewares, metrics, timeouts, retries, health or access log, expects
 *  the whole answer in one read and a Content-Length, and serves only GETs without a body: a floor, not a
 *  proxy. What it costs above uWS.js answering the request itself is the backend leg plus the unavoidable
 *  calls between C++ and JavaScript.
 *
 *   npx tsc -p . && node dist/bench/http-floor.js [--runs 3] [--seconds 5] [--connections 50]
 *   (the floor proxy alone: node dist/bench/http-floor.js --serve PORT BACKEND_PORT[,PORT...])
 */
import { execFileSync, spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import uWS from 'uWebSockets.js';
import nativeUpstream from '#native';
import { httpWindow } from './measure.js';
import { summarize } from './report.js';
import { REPO_ROOT, commandExists, freePort, pinned, startHttpBackends, startTarget, stopProcess, versions, waitForPort, type Pinning, type Running } from './targets.js';

// ---- the floor proxy (--serve) -------------------------------------------------------------------

const ID_MASK = 0xfffff;
const CRLF2 = Buffer.from('\r\n\r\n');

function serve(port: number, backendPorts: number[]): void {
  const up = nativeUpstream;
  if (up === null) throw new Error('the native addon is not built (npm run build:native)');
  const idle: number[] = [];
  const waiting: (uWS.HttpResponse | null)[] = [];
  let nextBackend = 0;
  let headers = '';
  // One answer's parts for the cork callback (module-level: no closure per answer).
  let corkRes: uWS.HttpResponse | null = null;
  let corkStatus = '';
  let corkBody: Buffer | null = null;
  const collect = (name: string, value: string): void => {
    headers += `${name}: ${value}\r\n`;
  };
  const corked = (): void => {
    corkRes!.writeStatus(corkStatus);
    corkRes!.end(corkBody!);
  };
  const views = up.init({
    onOpen(id, status) {
      if (status === 0) return;
      const res = waiting[id & ID_MASK];
      waiting[id & ID_MASK] = null;
      res?.cork(() => res.writeStatus('502 Bad Gateway').end());
    },
    onRaw(id, length) {
      const res = waiting[id & ID_MASK];
      if (res === undefined || res === null) {
        idle.push(id); // its client went away: the answer (whole, in this read) is dropped
        return;
      }
      const b = read;
      const headEnd = b.indexOf(CRLF2, 0);
      if (headEnd < 0 || headEnd > length) throw new Error('floor proxy: the answer did not come in one read');
      // Status line minus "HTTP/1.1 ", then the header lines uWS does not write itself, as one string.
      const lineEnd = b.indexOf(13, 9);
      let status = b.toString('latin1', 9, lineEnd);
      let contentLength = -1;
      let p = lineEnd + 2;
      while (p < headEnd) {
        const eol = b.indexOf(13, p);
        const colon = b.indexOf(58, p);
        const c0 = b[p]! | 0x20;
        const n = colon - p;
        // By length and first letter: content-length; then connection, keep-alive, transfer-encoding and date,
        // which uWS writes itself or which describe the hop.
        if (n === 14 && c0 === 0x63) contentLength = Number(b.toString('latin1', colon + 1, eol).trim());
        else if (!((n === 10 && (c0 === 0x63 || c0 === 0x6b)) || (n === 17 && c0 === 0x74) || (n === 4 && c0 === 0x64))) status += `\r\n${b.toString('latin1', p, eol)}`;
        p = eol + 2;
      }
      if (contentLength < 0 || headEnd + 4 + contentLength > length) throw new Error('floor proxy: expected the whole body, with a Content-Length, in one read');
      waiting[id & ID_MASK] = null;
      idle.push(id);
      corkRes = res;
      corkStatus = status;
      corkBody = b.subarray(headEnd + 4, headEnd + 4 + contentLength);
      res.cork(corked);
      corkRes = null;
      corkBody = null;
    },
    onFrames() {},
    onClose(id) {
      const at = idle.indexOf(id);
      if (at >= 0) idle.splice(at, 1);
    },
  });
  const read = Buffer.from(views.readBuffer.buffer, views.readBuffer.byteOffset, views.readBuffer.byteLength);
  const app = uWS.App();
  app.any('/*', (res, req) => {
    const query = req.getQuery();
    headers = `${req.getCaseSensitiveMethod()} ${req.getUrl()}${query ? `?${query}` : ''} HTTP/1.1\r\n`;
    req.forEach(collect);
    const a = new Uint8Array(res.getRemoteAddress());
    headers += `x-forwarded-for: ${a[12]}.${a[13]}.${a[14]}.${a[15]}\r\n\r\n`;
    let id = idle.pop();
    if (id === undefined) id = up.connect('127.0.0.1', backendPorts[nextBackend++ % backendPorts.length]!, 0);
    const slot = id & ID_MASK;
    // uWS calls onAborted without arguments: a closure per request, as in Sluice.
    res.onAborted(() => {
      if (waiting[slot] === res) waiting[slot] = null;
    });
    waiting[slot] = res;
    up.writeRaw(id, headers);
  });
  app.listen('127.0.0.1', port, (socket) => {
    if (!socket) throw new Error(`floor proxy: cannot listen on ${port}`);
    process.stdout.write(`floor proxy listening on ${port}\n`);
  });
}

// ---- the comparison -------------------------------------------------------------------------------

interface Row {
  readonly label: string;
  readonly rps: number[];
  readonly cpu: number[];
}

async function startFloor(backends: readonly number[], pin: Pinning): Promise<Running> {
  const port = await freePort();
  const [cmd, args] = pinned(pin.proxyCpu, process.execPath, [join(REPO_ROOT, 'dist/bench/http-floor.js'), '--serve', String(port), backends.join(',')]);
  const child = spawn(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  await waitForPort(port, 10_000, child);
  return { urls: [], throughputUrls: null, httpUrl: `http://127.0.0.1:${port}`, pid: child.pid as number, stop: () => stopProcess(child) };
}

async function measure(target: Running, seconds: number, connections: number): Promise<[rps: number, cpuPerRequest: number]> {
  const url = `${target.httpUrl}/http/small`;
  const { result, requestsPerSecond, cpuPerRequest } = await httpWindow(target, url, connections, 1, seconds);
  if (result.non2xx + result.errors + result.timeouts > 0) throw new Error(`${url}: ${result.non2xx} non-2xx, ${result.errors} errors, ${result.timeouts} timeouts`);
  return [requestsPerSecond, cpuPerRequest!];
}

const median = (values: number[]): number => summarize(values)!.median;

async function compare(runs: number, seconds: number, connections: number): Promise<void> {
  const canPin = availableParallelism() >= 2 && commandExists('taskset');
  const pin: Pinning = canPin ? { proxyCpu: '0', loadCpu: '1' } : { proxyCpu: null, loadCpu: null };
  if (canPin) execFileSync('taskset', ['-a', '-p', '-c', '1', String(process.pid)], { stdio: 'ignore' });
  const started = Date.now();
  const http = await startHttpBackends(pin);
  const rows: Row[] = [
    { label: 'floor proxy (uWS.js + addon, nothing else)', rps: [], cpu: [] },
    { label: 'Sluice 1w', rps: [], cpu: [] },
    { label: 'HAProxy', rps: [], cpu: [] },
  ];
  const starters = [
    () => startFloor(http.ports, pin),
    () => startTarget('sluice-1', http.ports, pin, REPO_ROOT, http.ports, []),
    () => startTarget('haproxy', http.ports, pin, REPO_ROOT, http.ports, []),
  ];
  try {
    for (let run = 1; run <= runs; run++) {
      for (let i = 0; i < rows.length; i++) {
        const target = await starters[i]!();
        try {
          const [rps, cpu] = await measure(target, seconds, connections);
          rows[i]!.rps.push(rps);
          rows[i]!.cpu.push(cpu);
          process.stdout.write(`run ${run}/${runs} · ${rows[i]!.label}: ${Math.round(rps)} req/s, ${cpu.toFixed(1)} µs of proxy CPU per request\n`);
        } finally {
          await target.stop();
        }
      }
    }
  } finally {
    await http.stop();
  }
  const haproxy = median(rows[2]!.cpu);
  const lines = [
    `# HTTP floor — ${new Date().toISOString()}`,
    '',
    `- Command: \`node dist/bench/http-floor.js --runs ${runs} --seconds ${seconds} --connections ${connections}\` (${Math.round((Date.now() - started) / 1000)} s)`,
    `- Versions: ${Object.entries(versions()).map(([k, v]) => `${k} ${v}`).join('; ')}`,
    `- Pinning: ${canPin ? 'proxy on CPU 0; autocannon and the HTTP backends on CPU 1' : 'none (fewer than 2 cores or no taskset)'}`,
    `- Load: autocannon, ${connections} keep-alive connections, GET /http/small (13 bytes), ${seconds} s after 1 s of warm-up; median of ${runs}`,
    '',
    '| target | requests/s | proxy CPU per request | ÷ HAProxy |',
    '|---|---:|---:|---:|',
    ...rows.map((r) => `| ${r.label} | ${Math.round(median(r.rps)).toLocaleString('en-US')} | ${median(r.cpu).toFixed(1)} µs (${r.cpu.map((c) => c.toFixed(1)).join(', ')}) | ${(median(r.cpu) / haproxy).toFixed(2)}× |`),
    '',
  ];
  const stamp = new Date(started).toISOString().slice(0, 16).replace('T', '-').replace(':', '');
  const file = join(REPO_ROOT, 'bench/results', `${stamp}-http-floor.md`);
  writeFileSync(file, lines.join('\n'));
  process.stdout.write(`${lines.join('\n')}\nwritten: ${file}\n`);
}

const argv = process.argv.slice(2);
const option = (name: string, fallback: number): number => {
  const at = argv.indexOf(name);
  return at < 0 ? fallback : Number(argv[at + 1]);
};
if (argv[0] === '--serve') serve(Number(argv[1]), (argv[2] ?? '').split(',').map(Number));
else await compare(option('--runs', 3), option('--seconds', 5), option('--connections', 50));
