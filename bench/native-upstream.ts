/**
 * The native upstream addon (native/) against the JavaScript upstream leg it would replace, on the
 * same workload: Sluice's side of backend connections (TCP + WebSocket client framing), without
 * the client side. Two figures, each measured in a fresh child process per path:
 *
 *  - RSS per idle upstream connection: 8,000 connections upgraded and held (local addresses spread
 *    over 127.0.0.x), RSS after a GC minus RSS before the first connect, over the connections. Once
 *    with V8's defaults, once with a 1 MB young generation (--max-semi-space-size=1): V8 grows the
 *    young generation to 16 MB during the burst of handshakes and keeps it, 2-3 KB per connection
 *    at 8,000 that belong to no connection, in either path.
 *  - CPU µs per echo round trip: 2,000 connections × 10 messages/s of 64 B against a uWS echo
 *    backend, 2 s warm-up then 10 s measured; process CPU (user + system, every thread) over echoes.
 *    Three runs per path, interleaved so drift on the machine spreads over both; the median is shown.
 *
 * The JS path is the one tunnel.ts uses: net.Socket with `onread` into one static buffer, frames
 * parsed in place, frame-codec.ts's masked encoder, writes corked until the end of the turn. Each
 * path keeps one small JS object per connection, as a tunnel would. The echo backend runs in its
 * own process so its CPU is not counted; with taskset, the measured process is pinned to CPU 0 and
 * the backend to CPU 1.
 *
 *   npx tsc -p . && node dist/bench/native-upstream.js [--idle 8000] [--connections 2000]
 *     [--rate 10] [--seconds 10] [--warmup 2] [--size 64] [--runs 3] [--only js,native] [--json FILE]
 */
import { fork, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type { NativeUpstream } from '../native/index.js';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const self = fileURLToPath(import.meta.url);

type Path = 'js' | 'native';

interface Options {
  idle: number;
  connections: number;
  rate: number;
  seconds: number;
  warmup: number;
  size: number;
  /** Echo runs per path, interleaved (js, native, js, native…); the table shows the median. */
  runs: number;
  only: Path[];
  json: string;
}

interface IdleResult {
  path: Path;
  youngGeneration?: 'default' | '1 MB';
  connections: number;
  rssBefore: number;
  rssAfter: number;
  rssPerConnection: number;
  /** Anonymous RSS only: RSS also counts code pages of node faulted in while connecting. */
  anonPerConnection: number;
  heapPerConnection: number;
  openSeconds: number;
}

interface EchoResult {
  path: Path;
  connections: number;
  sent: number;
  echoed: number;
  cpuMicros: number;
  microsPerRoundTrip: number;
  /** The same split into user (JS, V8, libuv, the addon) and system (the kernel's TCP work) time. */
  userMicrosPerRoundTrip: number;
  systemMicrosPerRoundTrip: number;
  seconds: number;
}

// ---- one upstream path behind a common face ---------------------------------------------------

/** What the load loop needs from a path: open N upgraded connections, send on one, count echoes. */
interface UpstreamPath {
  open(count: number, port: number, deadline: number): Promise<void>;
  send(index: number, payload: Buffer): void;
  readonly echoed: number;
  close(): void;
}

function upgradeRequest(port: number): { request: Buffer; accept: string } {
  const key = randomBytes(16).toString('base64');
  return {
    request: Buffer.from(`GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`),
    accept: createHash('sha1').update(key + GUID).digest('base64'),
  };
}

/** Spread connections over 127.0.0.1-127.0.0.32 so no single source address runs out of ports. */
function localAddressFor(index: number): string {
  return `127.0.0.${1 + (index % 32)}`;
}

/** Open `count` connections, at most `window` handshakes in flight, failing past `deadline`. */
async function openAll(count: number, deadline: number, start: (index: number, done: (error?: Error) => void) => void): Promise<void> {
  const window = 256;
  let next = 0;
  let finished = 0;
  await new Promise<void>((resolve, reject) => {
    const timer = setInterval(() => {
      if (Date.now() > deadline) {
        clearInterval(timer);
        reject(new Error(`opened only ${finished} of ${count} connections in time`));
      }
    }, 100);
    const done = (error?: Error): void => {
      if (error !== undefined) {
        clearInterval(timer);
        reject(error);
        return;
      }
      finished++;
      if (finished === count) {
        clearInterval(timer);
        resolve();
      } else if (next < count) start(next++, done);
    };
    for (; next < Math.min(window, count); ) start(next++, done);
  });
}

// -- the JS path (as tunnel.ts + upgrade.ts do it) --

type JsSocket = net.Socket & { conn: JsConn };
interface JsConn {
  socket: JsSocket;
  upgraded: boolean;
  head: string;
  corked: boolean;
  partial: Buffer | null;
  done: ((error?: Error) => void) | null;
  accept: string;
}

async function jsPath(): Promise<UpstreamPath> {
  const { encodeMaskedFrame } = await import('../src/worker/frame-codec.js');
  const readBuffer = Buffer.allocUnsafe(64 * 1024);
  const conns: JsConn[] = [];
  let echoed = 0;
  const corked: JsConn[] = [];
  let uncorkScheduled = false;
  const uncorkAll = (): void => {
    uncorkScheduled = false;
    for (const c of corked) {
      c.corked = false;
      c.socket.uncork();
    }
    corked.length = 0;
  };

  function parseFrames(c: JsConn, buf: Buffer, end: number): void {
    let offset = 0;
    if (c.partial !== null) {
      buf = Buffer.concat([c.partial, buf.subarray(0, end)]);
      end = buf.length;
      c.partial = null;
    }
    while (offset < end) {
      const available = end - offset;
      if (available < 2) break;
      const len7 = buf[offset + 1]! & 0x7f;
      const header = len7 < 126 ? 2 : len7 === 126 ? 4 : 10;
      if (available < header) break;
      const length = len7 < 126 ? len7 : len7 === 126 ? buf.readUInt16BE(offset + 2) : Number(buf.readBigUInt64BE(offset + 2));
      if (available < header + length) break;
      const opcode = buf[offset]! & 0x0f;
      if (opcode === 1 || opcode === 2) echoed++;
      offset += header + length;
    }
    if (offset < end) c.partial = Buffer.from(buf.subarray(offset, end));
  }

  function onRead(this: JsSocket, length: number, buf: Buffer): boolean {
    const c = this.conn;
    if (c.upgraded) {
      parseFrames(c, buf, length);
      return true;
    }
    c.head += buf.toString('latin1', 0, length);
    const end = c.head.indexOf('\r\n\r\n');
    if (end < 0) return true;
    const ok = c.head.startsWith('HTTP/1.1 101') && c.head.includes(c.accept);
    c.head = '';
    c.upgraded = true;
    const done = c.done!;
    c.done = null;
    done(ok ? undefined : new Error('backend did not answer 101'));
    return true;
  }

  return {
    async open(count, port, deadline) {
      await openAll(count, deadline, (index, done) => {
        const { request, accept } = upgradeRequest(port);
        const socket = net.connect({ host: '127.0.0.1', port, localAddress: localAddressFor(index), onread: { buffer: readBuffer, callback: onRead } }) as JsSocket;
        const c: JsConn = { socket, upgraded: false, head: '', corked: false, partial: null, done, accept };
        socket.conn = c;
        socket.setNoDelay(true);
        socket.on('error', (error) => {
          if (c.done !== null) c.done(error);
        });
        socket.write(request);
        conns[index] = c;
      });
    },
    send(index, payload) {
      const c = conns[index]!;
      if (!c.corked) {
        c.corked = true;
        c.socket.cork();
        corked.push(c);
        if (!uncorkScheduled) {
          uncorkScheduled = true;
          setImmediate(uncorkAll);
        }
      }
      c.socket.write(encodeMaskedFrame(2, payload));
    },
    get echoed() {
      return echoed;
    },
    close() {
      for (const c of conns) c.socket.destroy();
    },
  };
}

// -- the native path --

interface NativeConn {
  id: number;
  head: string;
  done: ((error?: Error) => void) | null;
  accept: string;
  port: number;
}

async function nativePath(): Promise<UpstreamPath> {
  const loaded = (await import(new URL('../../native/index.js', import.meta.url).href)) as { default: NativeUpstream | null; loadError: Error | null };
  const native = loaded.default;
  if (native === null) throw new Error(`native addon not available: ${loaded.loadError?.message ?? 'unknown'}`);
  // Connection ids carry their slot in the low 20 bits: a dense array finds the JS object.
  const bySlot: (NativeConn | undefined)[] = [];
  const conns: NativeConn[] = [];
  let echoed = 0;
  const views = native.init({
    onOpen(id, status) {
      const c = bySlot[id & 0xfffff]!;
      if (status !== 0) {
        c.done!(new Error(`connect failed: ${status}`));
        return;
      }
      const { request, accept } = upgradeRequest(c.port);
      c.accept = accept;
      native.writeRaw(id, request);
    },
    onRaw(id, length) {
      const c = bySlot[id & 0xfffff]!;
      c.head += Buffer.from(views.readBuffer.buffer, views.readBuffer.byteOffset, length).toString('latin1');
      const end = c.head.indexOf('\r\n\r\n');
      if (end < 0) return;
      const ok = c.head.startsWith('HTTP/1.1 101') && c.head.includes(c.accept);
      c.head = '';
      native.startFraming(id, 16 * 1024 * 1024);
      const done = c.done!;
      c.done = null;
      done(ok ? undefined : new Error('backend did not answer 101'));
    },
    onFrames(_id, count) {
      for (let i = 0; i < count * 3; i += 3) if ((views.frames[i]! & 0x10) !== 0) echoed++;
    },
    onClose(id, code, reason) {
      const c = bySlot[id & 0xfffff];
      if (c?.done) c.done(new Error(`closed during the upgrade: ${code} ${reason.toString()}`));
    },
  });
  return {
    async open(count, port, deadline) {
      await openAll(count, deadline, (index, done) => {
        const id = native.connect('127.0.0.1', port, 5000, localAddressFor(index));
        if (id < 0) {
          done(new Error(`connect could not start: ${id}`));
          return;
        }
        const c: NativeConn = { id, head: '', done, accept: '', port };
        bySlot[id & 0xfffff] = c;
        conns[index] = c;
      });
    },
    send(index, payload) {
      native.sendMessage(conns[index]!.id, 2, payload);
    },
    get echoed() {
      return echoed;
    },
    close() {
      for (const c of conns) native.destroy(c.id);
    },
  };
}

// ---- the measurements (in a child process per path) -------------------------------------------

const gc = (globalThis as { gc?: () => void }).gc ?? ((): void => {});
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    gc();
    await sleep(200);
  }
}

/** RssAnon from /proc/self/status, bytes (0 where there is no /proc). */
function anonymousRss(): number {
  try {
    const kb = /RssAnon:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
    return kb === undefined ? 0 : Number(kb) * 1024;
  } catch {
    return 0;
  }
}

async function measureIdle(path: Path, port: number, count: number): Promise<IdleResult> {
  const upstream = path === 'js' ? await jsPath() : await nativePath();
  // Warm up: code paths, static buffers and the id table exist before the baseline.
  await upstream.open(16, port, Date.now() + 10_000);
  upstream.close();
  const fresh = path === 'js' ? await jsPath() : await nativePath();
  await settle();
  const before = process.memoryUsage();
  const anonBefore = anonymousRss();
  const started = Date.now();
  await fresh.open(count, port, started + 120_000);
  const openSeconds = (Date.now() - started) / 1000;
  await settle();
  await sleep(1000);
  gc();
  const after = process.memoryUsage();
  const anonAfter = anonymousRss();
  fresh.close();
  return {
    path,
    connections: count,
    rssBefore: before.rss,
    rssAfter: after.rss,
    rssPerConnection: (after.rss - before.rss) / count,
    anonPerConnection: (anonAfter - anonBefore) / count,
    heapPerConnection: (after.heapUsed - before.heapUsed) / count,
    openSeconds,
  };
}

async function measureEcho(path: Path, port: number, options: Options): Promise<EchoResult> {
  const upstream = path === 'js' ? await jsPath() : await nativePath();
  const count = options.connections;
  await upstream.open(count, port, Date.now() + 60_000);
  const payload = randomBytes(options.size);
  // Open loop at a fixed rate: every 10 ms timer tick sends what is due by the clock (a late tick
  // sends more), one message each on the next connections in turn; a burst is capped at one per
  // connection so a stall is not made up all at once.
  const started = performance.now();
  const perMs = (count * options.rate) / 1000;
  let cursor = 0;
  let sent = 0;
  const timer = setInterval(() => {
    const due = Math.min(count, Math.floor((performance.now() - started) * perMs) - sent);
    for (let i = 0; i < due; i++) {
      upstream.send(cursor, payload);
      cursor = (cursor + 1) % count;
    }
    if (due > 0) sent += due;
  }, 10);
  await sleep(options.warmup * 1000);
  const sent0 = sent;
  const echoed0 = upstream.echoed;
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await sleep(options.seconds * 1000);
  const cpu = process.cpuUsage(cpu0);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const echoed = upstream.echoed - echoed0;
  clearInterval(timer);
  const sentInWindow = sent - sent0;
  await sleep(500);
  upstream.close();
  const cpuMicros = cpu.user + cpu.system;
  const perRoundTrip = (micros: number): number => micros / Math.max(1, echoed);
  return {
    path,
    connections: count,
    sent: sentInWindow,
    echoed,
    cpuMicros,
    microsPerRoundTrip: perRoundTrip(cpuMicros),
    userMicrosPerRoundTrip: perRoundTrip(cpu.user),
    systemMicrosPerRoundTrip: perRoundTrip(cpu.system),
    seconds,
  };
}

// ---- orchestration --------------------------------------------------------------------------

function parseOptions(argv: readonly string[]): Options {
  const o: Options = { idle: 8000, connections: 2000, rate: 10, seconds: 10, warmup: 2, size: 64, runs: 3, only: ['js', 'native'], json: '' };
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i]!;
    const value = argv[i + 1] ?? '';
    const numeric = (): number => {
      const n = Number(value);
      if (!Number.isFinite(n) || n < 0) throw new Error(`native-upstream bench: invalid value '${value}' for ${name}: expected a non-negative number`);
      i++;
      return n;
    };
    if (name === '--idle') o.idle = numeric();
    else if (name === '--connections') o.connections = numeric();
    else if (name === '--rate') o.rate = numeric();
    else if (name === '--seconds') o.seconds = numeric();
    else if (name === '--warmup') o.warmup = numeric();
    else if (name === '--size') o.size = numeric();
    else if (name === '--runs') o.runs = Math.max(1, Math.floor(numeric()));
    else if (name === '--only') {
      o.only = value.split(',') as Path[];
      i++;
    } else if (name === '--json') {
      o.json = value;
      i++;
    } else if (name === '--role' || name === '--path' || name === '--port' || name === '--phase') i++;
    else throw new Error(`native-upstream bench: unknown option '${name}'`);
  }
  if (o.idle > 9000) throw new Error(`native-upstream bench: --idle ${o.idle} is over 9000 (20,000 open files, the backend holds one per connection too)`);
  return o;
}

function argOf(name: string): string {
  const at = process.argv.indexOf(name);
  return at < 0 ? '' : (process.argv[at + 1] ?? '');
}

const hasTaskset = ((): boolean => {
  try {
    execFileSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

/** Start this file in another role, pinned to `cpu` when taskset exists; resolves its one reply. */
function child(args: string[], cpu: number, keep = false, nodeFlags: string[] = []): { process: ChildProcess; reply: Promise<unknown> } {
  const nodeArgs = ['--expose-gc', ...nodeFlags, self, ...args];
  const proc = hasTaskset
    ? spawn('taskset', ['-c', String(cpu), process.execPath, ...nodeArgs], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    : fork(self, args, { execArgv: ['--expose-gc', ...nodeFlags], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const reply = new Promise<unknown>((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill();
      reject(new Error(`bench child ${args.join(' ')} gave no answer in 5 minutes`));
    }, 300_000);
    proc.once('message', (m) => {
      clearTimeout(timer);
      if (!keep) proc.disconnect();
      const error = (m as { error?: string }).error;
      if (error !== undefined) reject(new Error(error));
      else resolve(m);
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`bench child ${args.join(' ')} exited with ${code}`));
    });
  });
  return { process: proc, reply };
}

async function runChild(): Promise<void> {
  const role = argOf('--role');
  try {
    if (role === 'backend') {
      const { startEchoBackends } = await import('../loadtest/echo-backend.js');
      const backend = await startEchoBackends([0]);
      process.send!({ port: backend.ports[0] });
      process.on('disconnect', () => {
        backend.close();
        process.exit(0);
      });
      return;
    }
    const options = parseOptions(process.argv.slice(2));
    const path = argOf('--path') as Path;
    const port = Number(argOf('--port'));
    const result = argOf('--phase') === 'idle' ? await measureIdle(path, port, options.idle) : await measureEcho(path, port, options);
    process.send!(result, () => process.exit(0));
  } catch (error) {
    process.send!({ error: (error as Error).stack ?? String(error) }, () => process.exit(1));
  }
}

const KB = (bytes: number): string => (bytes / 1024).toFixed(2);

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const backend = child(['--role', 'backend'], 1, true);
  const { port } = (await backend.reply) as { port: number };
  const idle: IdleResult[] = [];
  const echo: EchoResult[] = [];
  const passthrough = process.argv.slice(2);
  try {
    // Idle memory twice per path: with V8's default young generation, which V8 grows to 16 MB during
    // the burst of handshakes and keeps (what a freshly loaded Sluice shows), and with a 1 MB one,
    // which leaves the memory that really belongs to the connections.
    for (const young of ['default', '1 MB'] as const) {
      for (const path of options.only) {
        process.stderr.write(`native-upstream bench: ${path}: holding ${options.idle} idle connections (young generation ${young})…\n`);
        const flags = young === 'default' ? [] : ['--max-semi-space-size=1'];
        const result = (await child(['--role', 'client', '--phase', 'idle', '--path', path, '--port', String(port), ...passthrough], 0, false, flags).reply) as IdleResult;
        idle.push({ ...result, youngGeneration: young });
        await sleep(1000);
      }
    }
    for (let run = 1; run <= options.runs; run++) {
      for (const path of options.only) {
        process.stderr.write(`native-upstream bench: run ${run}/${options.runs}: ${path}: ${options.connections} connections × ${options.rate} msg/s for ${options.seconds} s…\n`);
        echo.push((await child(['--role', 'client', '--phase', 'echo', '--path', path, '--port', String(port), ...passthrough], 0).reply) as EchoResult);
        await sleep(1000);
      }
    }
  } finally {
    backend.process.disconnect();
  }
  const lines = [
    `## Upstream leg: JS (net.Socket) vs native addon`,
    '',
    `${options.idle} idle upgraded connections; echo: ${options.connections} connections × ${options.rate} msg/s × ${options.size} B, ${options.seconds} s measured${hasTaskset ? ' (client on CPU 0, backend on CPU 1)' : ''}.`,
    '',
    '| Path | RSS / idle connection | anonymous RSS / connection | JS heap / connection | same with a 1 MB young generation: RSS / anonymous | CPU µs / round trip, median (runs) | of which user / system (median) | Echoed / sent in windows |',
    '|---|---|---|---|---|---|---|---|',
    ...options.only.map((path) => {
      const i = idle.find((r) => r.path === path && r.youngGeneration === 'default')!;
      const small = idle.find((r) => r.path === path && r.youngGeneration === '1 MB')!;
      const runs = echo.filter((r) => r.path === path);
      const m = median(runs.map((r) => r.microsPerRoundTrip));
      const all = runs.map((r) => r.microsPerRoundTrip.toFixed(2)).join(', ');
      const echoed = runs.reduce((n, r) => n + r.echoed, 0);
      const sent = runs.reduce((n, r) => n + r.sent, 0);
      const user = median(runs.map((r) => r.userMicrosPerRoundTrip)).toFixed(2);
      const system = median(runs.map((r) => r.systemMicrosPerRoundTrip)).toFixed(2);
      return `| ${path} | ${KB(i.rssPerConnection)} KB | ${KB(i.anonPerConnection)} KB | ${KB(i.heapPerConnection)} KB | ${KB(small.rssPerConnection)} KB / ${KB(small.anonPerConnection)} KB | ${m.toFixed(2)} (${all}) | ${user} / ${system} | ${echoed} / ${sent} |`;
    }),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  if (options.json !== '') writeFileSync(options.json, JSON.stringify({ options, idle, echo, date: new Date().toISOString() }, null, 2));
}

if (argOf('--role') !== '') void runChild();
else
  main().catch((error: Error) => {
    process.stderr.write(`${error.message}\n`);
    process.exit(1);
  });
