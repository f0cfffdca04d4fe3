/**
 * The fan-out row of `npm run bench`: one channel, N subscribers (8,000 full, 2,000 --quick), publications
 * of 64 B at increasing rates, through three shapes of the same system:
 *  - **Sluice** (2 workers): a GRIP backend subscribes every client, publications go to Sluice's publish
 *    listener and uWebSockets.js fans them out;
 *  - **Pushpin** (Debian's package, its runner also starting zurl, which gets loopback allowed in its deny
 *    list and room for every connection; message_rate and message_hwm lifted): the same GRIP backend and
 *    publish API;
 *  - **classic**: no fan-out proxy; the backend (`ws`) sends each message to each of its WebSockets
 *    itself, through HAProxy;
 *  - **floor** (fanout-floor.ts): no proxy, a C program writing to every socket, the kernel's share alone.
 * For each rate: deliveries per second as received, proxy CPU per delivery (for classic, HAProxy and the
 * backend together, since the backend does the fan-out), and publish-to-receive latency (the publish time
 * travels in the message). The receiver (fanout-peer.ts, on the C client when built) runs on the load core with the backends and the
 * publisher, so at high rates it is the limit; its own CPU is reported.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { cpuMicros, processTree } from './procstat.js';
import { runFanoutFloor } from './fanout-floor.js';
import { commandExists, freePort, haproxyConfig, pinned, REPO_ROOT, stopProcess, waitForPort, type Pinning } from './targets.js';

export type FanoutTargetName = 'sluice' | 'pushpin' | 'classic' | 'floor';
export const FANOUT_TARGETS: readonly FanoutTargetName[] = ['sluice', 'pushpin', 'classic', 'floor'];
const LABELS: Record<FanoutTargetName, string> = {
  sluice: 'Sluice 2w (GRIP)',
  pushpin: 'Pushpin (GRIP)',
  classic: 'classic: backend sends each, via HAProxy',
  floor: 'floor: write(2) to each socket, no proxy (C)',
};

export interface FanoutSettings {
  readonly subscribers: number;
  /** Publications per second, in order. */
  readonly rates: readonly number[];
  readonly warmupSeconds: number;
  readonly seconds: number;
}
export const FANOUT_FULL: FanoutSettings = { subscribers: 8000, rates: [5, 10, 25, 50, 100, 200], warmupSeconds: 1, seconds: 5 };
export const FANOUT_QUICK: FanoutSettings = { subscribers: 2000, rates: [5, 25], warmupSeconds: 1, seconds: 2 };

export interface FanoutStep {
  readonly rate: number;
  readonly published: number;
  readonly expected: number;
  readonly received: number;
  readonly deliveriesPerSecond: number;
  /** CPU µs of the proxy (classic: proxy + backend) per delivery received. */
  readonly cpuPerDelivery: number;
  /** Of that, the backend's (classic: its share; GRIP: ~0, it only subscribed). */
  readonly backendCpuPerDelivery: number;
  /** Proxy CPU over the window, % of one core. */
  readonly proxyCpuPercent: number;
  readonly receiverCpuPercent: number;
  /** Publish-to-receive, ms. */
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Sluice: the p99 of its own publish-to-send time, as a histogram bucket bound (ms); null for others. */
  readonly internalP99Ms: number | null;
  /** Share of the proxy's CPU spent in the kernel (sends to every subscriber are system calls). */
  readonly systemShare: number;
}

export interface FanoutResult {
  readonly target: FanoutTargetName;
  readonly steps: FanoutStep[];
  readonly error: string | null;
}

const PAYLOAD_BYTES = 64;
const CLOCK_TICK_MICROS = 1e6 / 100;

/** System (kernel) CPU µs of `pids`, from /proc/PID/stat field 15. */
function systemMicros(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      ticks += Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[12]);
    } catch {
      // gone
    }
  }
  return ticks * CLOCK_TICK_MICROS;
}

interface Proc {
  readonly child: ChildProcess;
  stop(): Promise<void>;
}

function start(cpu: string | null, command: string, args: string[], cwd?: string): Proc {
  const [cmd, a] = pinned(cpu, command, args);
  const child = spawn(cmd, a, { stdio: ['pipe', 'pipe', 'pipe'], cwd });
  child.stderr?.resume();
  return { child, stop: () => stopProcess(child) };
}

/** The stdout lines of a helper process, read once: `next(prefix)` waits for the next line starting with
 *  `prefix` (a `failed …` line rejects), skipping others. */
class Lines {
  private readonly queue: string[] = [];
  private waiter: ((line: string) => void) | null = null;

  constructor(child: ChildProcess) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (this.waiter !== null) this.waiter(line);
      else this.queue.push(line);
    });
  }

  next(prefix: string, timeoutMs: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        reject(new Error(`no '${prefix}' line within ${timeoutMs} ms`));
      }, timeoutMs);
      const take = (line: string): boolean => {
        if (line.startsWith('failed')) {
          clearTimeout(timer);
          this.waiter = null;
          reject(new Error(line));
          return true;
        }
        if (!line.startsWith(prefix)) return false;
        clearTimeout(timer);
        this.waiter = null;
        resolve(line);
        return true;
      };
      while (this.queue.length > 0) if (take(this.queue.shift()!)) return;
      this.waiter = (line) => void take(line);
    });
  }
}

const PEER = join(REPO_ROOT, 'dist/bench/fanout-peer.js');

interface Stack {
  /** Where subscribers connect (the channel's subscribe URL). */
  readonly url: string;
  /** Publish one 64 B message: resolves when the proxy (or backend) took it. */
  readonly publish: (payload: Buffer) => void;
  /** Processes whose CPU counts as the fan-out's cost, and which of them is the backend. */
  readonly proxyPids: () => number[];
  readonly backendPid: number;
  /** Sluice only: its own publish-to-send histogram, cumulative bucket counts by upper bound (s). */
  readonly internalLatency?: () => Promise<Map<string, number>>;
  stop(): Promise<void>;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });

function post(port: number, path: string, body: Buffer | string, type: string): void {
  const req = http.request({ host: '127.0.0.1', port, path, method: 'POST', agent, headers: { 'content-type': type, 'content-length': Buffer.byteLength(body) } }, (res) => res.resume());
  req.on('error', () => undefined);
  req.end(body);
}

function gripPublish(port: number): (payload: Buffer) => void {
  return (payload) => post(port, '/publish/', `{"items":[{"channel":"bench","formats":{"ws-message":{"content-bin":"${payload.toString('base64')}"}}}]}`, 'application/json');
}

async function startBackend(mode: 'grip' | 'classic', pin: Pinning): Promise<{ proc: Proc; port: number }> {
  const port = await freePort();
  const proc = start(pin.loadCpu, process.execPath, [PEER, '--role', 'backend', '--mode', mode, '--port', String(port)]);
  await new Lines(proc.child).next('ready', 10_000);
  return { proc, port };
}

async function sluiceStack(pin: Pinning, sluiceRoot: string): Promise<Stack> {
  const backend = await startBackend('grip', pin);
  const [port, adminPort, publishPort] = [await freePort(), await freePort(), await freePort()];
  const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-fanout-'));
  const file = join(dir, 'sluice.yaml');
  writeFileSync(
    file,
    `# Generated by bench/fanout.ts: Sluice fanning out for a GRIP backend.
admin: { address: "127.0.0.1:${adminPort}" }
entryPoints:
  web: { address: "127.0.0.1:${port}" }
http:
  routers:
    grip: { rule: "PathPrefix(\`/\`)", service: grip }
  services:
    grip:
      loadBalancer:
        servers: [ { url: "ws://127.0.0.1:${backend.port}" } ]
fanout:
  publish: { address: "127.0.0.1:${publishPort}" }
`,
  );
  const proc = start(pin.proxyCpu, process.execPath, [join(sluiceRoot, 'bin/sluice.js'), 'run', '--config', file, '--workers', '2'], sluiceRoot);
  await waitForPort(port, 20_000, proc.child);
  await waitForPort(publishPort, 10_000, proc.child);
  return {
    url: `ws://127.0.0.1:${port}/?channel=bench`,
    publish: gripPublish(publishPort),
    proxyPids: () => processTree(proc.child.pid!),
    backendPid: backend.proc.child.pid!,
    internalLatency: () => sluiceLatencyBuckets(adminPort),
    async stop() {
      await proc.stop();
      await backend.proc.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Sluice's sluice_fanout_publish_to_send_seconds buckets (cumulative), from its /metrics. */
async function sluiceLatencyBuckets(adminPort: number): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  const buckets = new Map<string, number>();
  for (const match of text.matchAll(/^sluice_fanout_publish_to_send_seconds_bucket\{le="([^"]+)"\} (\S+)$/gm)) buckets.set(match[1]!, Number(match[2]));
  return buckets;
}

/** The upper bound (ms) of the bucket holding the 99th percentile of what was observed between two reads. */
function p99Bound(before: Map<string, number>, after: Map<string, number>): number {
  const total = (after.get('+Inf') ?? 0) - (before.get('+Inf') ?? 0);
  if (total <= 0) return 0;
  for (const [le, count] of after) {
    if (count - (before.get(le) ?? 0) >= total * 0.99) return le === '+Inf' ? Infinity : Number(le) * 1000;
  }
  return Infinity;
}

/** Pushpin from its Debian package, in a private directory: its own ports, zurl started by its runner and
 *  allowed to reach loopback (zurl denies 127.* by default), and its publish rate limits lifted. */
async function pushpinStack(pin: Pinning): Promise<Stack> {
  const backend = await startBackend('grip', pin);
  const dir = mkdtempSync(join(tmpdir(), 'pushpin-bench-'));
  const libdir = join(dir, 'lib');
  cpSync('/usr/lib/pushpin', libdir, { recursive: true });
  // zurl: loopback allowed (its template denies 127.*), and room for every subscriber's backend connection.
  const zurlTemplate = join(libdir, 'runner/zurl.conf.template');
  writeFileSync(
    zurlTemplate,
    readFileSync(zurlTemplate, 'utf8')
      .replace(/^deny=.*$/m, 'deny=*.local')
      .replace(/^max_open_requests=.*$/m, 'max_open_requests=20000')
      .replace(/^in_hwm=.*$/m, 'in_hwm=100000')
      .replace(/^out_hwm=.*$/m, 'out_hwm=100000'),
  );
  // Debian's internal.conf points the proxy at the system zurl (/var/run/zurl); use the runner's own.
  const internal = join(libdir, 'internal.conf');
  writeFileSync(
    internal,
    readFileSync(internal, 'utf8')
      .replace(/^zurl_out_specs=.*$/m, 'zurl_out_specs=ipc://{rundir}/{ipc_prefix}zurl-in')
      .replace(/^zurl_out_stream_specs=.*$/m, 'zurl_out_stream_specs=ipc://{rundir}/{ipc_prefix}zurl-in-stream')
      .replace(/^zurl_in_specs=.*$/m, 'zurl_in_specs=ipc://{rundir}/{ipc_prefix}zurl-out'),
  );
  for (const d of ['run', 'log']) mkdirSync(join(dir, d));
  const [httpPort, publishPort, pushIn, pushSub, command] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
  const conf = readFileSync('/etc/pushpin/pushpin.conf', 'utf8')
    .replace(/^include=.*$/m, `include=${libdir}/internal.conf`)
    .replace(/^rundir=.*$/m, `rundir=${dir}/run\nlibdir=${libdir}`)
    .replace(/^ipc_prefix=.*$/m, `ipc_prefix=bench${process.pid}-`)
    .replace(/^services=.*$/m, 'services=condure,zurl,pushpin-proxy,pushpin-handler')
    .replace(/^http_port=.*$/m, `http_port=${httpPort}`)
    .replace(/^logdir=.*$/m, `logdir=${dir}/log`)
    .replace(/^log_level=.*$/m, process.env.FANOUT_BENCH_KEEP === '1' ? 'log_level=3' : 'log_level=1')
    .replace(/^routesfile=.*$/m, `routesfile=${dir}/routes`)
    .replace(/^push_in_spec=.*$/m, `push_in_spec=tcp://127.0.0.1:${pushIn}`)
    .replace(/^push_in_sub_specs=.*$/m, `push_in_sub_specs=tcp://127.0.0.1:${pushSub}`)
    .replace(/^push_in_http_port=.*$/m, `push_in_http_port=${publishPort}`)
    .replace(/^command_spec=.*$/m, `command_spec=tcp://127.0.0.1:${command}`)
    .replace(/^message_rate=.*$/m, 'message_rate=100000000')
    .replace(/^message_hwm=.*$/m, 'message_hwm=100000000');
  writeFileSync(join(dir, 'pushpin.conf'), conf);
  writeFileSync(join(dir, 'routes'), `* 127.0.0.1:${backend.port}\n`);
  const proc = start(pin.proxyCpu, 'pushpin', ['--config', join(dir, 'pushpin.conf')], dir);
  await waitForPort(httpPort, 20_000, proc.child);
  await waitForPort(publishPort, 20_000, proc.child);
  return {
    url: `ws://127.0.0.1:${httpPort}/?channel=bench`,
    publish: gripPublish(publishPort),
    proxyPids: () => processTree(proc.child.pid!),
    backendPid: backend.proc.child.pid!,
    async stop() {
      await proc.stop();
      await backend.proc.stop();
      // FANOUT_BENCH_KEEP=1 keeps Pushpin's logs and generated config, to see why it refused something.
      if (process.env.FANOUT_BENCH_KEEP === '1') process.stderr.write(`    Pushpin's files: ${dir}\n`);
      else rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function classicStack(pin: Pinning): Promise<Stack> {
  const backend = await startBackend('classic', pin);
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'haproxy-bench-fanout-'));
  writeFileSync(join(dir, 'haproxy.cfg'), haproxyConfig(port, [backend.port]));
  const proc = start(pin.proxyCpu, 'haproxy', ['-db', '-f', join(dir, 'haproxy.cfg')]);
  await waitForPort(port, 10_000, proc.child);
  return {
    url: `ws://127.0.0.1:${port}/`,
    publish: (payload) => post(backend.port, '/publish', payload, 'application/octet-stream'),
    proxyPids: () => [...processTree(proc.child.pid!), backend.proc.child.pid!],
    backendPid: backend.proc.child.pid!,
    async stop() {
      await proc.stop();
      await backend.proc.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Publish `count` messages at `rate`/s, each stamped with its publish time; resolves after the last. */
function publishAt(stack: Stack, rate: number, count: number): Promise<void> {
  return new Promise((resolve) => {
    const started = performance.now();
    let sent = 0;
    const tick = (): void => {
      const due = Math.min(count, Math.floor(((performance.now() - started) / 1000) * rate) + 1);
      while (sent < due) {
        const payload = Buffer.alloc(PAYLOAD_BYTES);
        payload.writeDoubleLE(performance.timeOrigin + performance.now(), 0);
        stack.publish(payload);
        sent++;
      }
      if (sent >= count) {
        clearInterval(timer);
        resolve();
      }
    };
    const timer = setInterval(tick, 2);
    tick();
  });
}

interface Report {
  received: number;
  p50: number;
  p99: number;
}

async function measureTarget(name: FanoutTargetName, s: FanoutSettings, pin: Pinning, sluiceRoot: string, log: (line: string) => void): Promise<FanoutStep[]> {
  const stack = name === 'sluice' ? await sluiceStack(pin, sluiceRoot) : name === 'pushpin' ? await pushpinStack(pin) : await classicStack(pin);
  const receiver = start(pin.loadCpu, process.execPath, [PEER, '--role', 'receiver', '--url', stack.url, '--connections', String(s.subscribers), '--signal', name === 'classic' ? 'no' : 'yes']);
  const steps: FanoutStep[] = [];
  const lines = new Lines(receiver.child);
  try {
    const ready = await lines.next('ready', 120_000);
    if (Number(ready.split(' ')[1]) !== s.subscribers) throw new Error(`only ${ready.split(' ')[1]} of ${s.subscribers} subscribers ready`);
    const report = async (): Promise<Report> => {
      const line = lines.next('{', 5000);
      receiver.child.stdin!.write('report\n');
      return JSON.parse(await line) as Report;
    };
    /** Until deliveries stop arriving (300 ms without one), or `maxMs`; returns the last report. */
    const drain = async (target: number, maxMs: number): Promise<Report> => {
      let last = await report();
      const deadline = Date.now() + maxMs;
      for (let quiet = 0; last.received < target && quiet < 3 && Date.now() < deadline; ) {
        await new Promise((r) => setTimeout(r, 100));
        const next = await report();
        quiet = next.received === last.received ? quiet + 1 : 0;
        last = next;
      }
      return last;
    };
    for (const rate of s.rates) {
      // Warm up, and let everything of the warm-up arrive before the window opens.
      receiver.child.stdin!.write('reset\n');
      const warmup = Math.max(1, Math.round(rate * s.warmupSeconds));
      await publishAt(stack, rate, warmup);
      await drain(warmup * s.subscribers, 10_000);
      receiver.child.stdin!.write('reset\n');
      const count = Math.max(1, Math.round(rate * s.seconds));
      const expected = count * s.subscribers;
      const pids = stack.proxyPids();
      const internal0 = (await stack.internalLatency?.()) ?? null;
      const system0 = systemMicros(pids);
      const cpu0 = cpuMicros(pids);
      const backend0 = cpuMicros([stack.backendPid]);
      const receiver0 = cpuMicros([receiver.child.pid!]);
      const t0 = performance.now();
      await publishAt(stack, rate, count);
      const last = await drain(expected, 30_000);
      const elapsed = (performance.now() - t0) / 1000;
      const cpu = cpuMicros(pids) - cpu0;
      const system = systemMicros(pids) - system0;
      const internal1 = internal0 === null ? null : await stack.internalLatency!();
      const backendCpu = cpuMicros([stack.backendPid]) - backend0;
      const step: FanoutStep = {
        rate,
        published: count,
        expected,
        received: last.received,
        deliveriesPerSecond: last.received / elapsed,
        cpuPerDelivery: last.received > 0 ? cpu / last.received : 0,
        backendCpuPerDelivery: last.received > 0 && name === 'classic' ? backendCpu / last.received : 0,
        proxyCpuPercent: (cpu / (elapsed * 1e6)) * 100,
        receiverCpuPercent: ((cpuMicros([receiver.child.pid!]) - receiver0) / (elapsed * 1e6)) * 100,
        p50Ms: last.p50 / 1000,
        p99Ms: last.p99 / 1000,
        internalP99Ms: internal0 === null || internal1 === null ? null : p99Bound(internal0, internal1),
        systemShare: cpu > 0 ? system / cpu : 0,
      };
      steps.push(step);
      log(`    ${rate}/s: ${Math.round(step.deliveriesPerSecond)} deliveries/s, ${step.cpuPerDelivery.toFixed(2)} µs CPU each (${Math.round(step.systemShare * 100)} % kernel), p99 ${step.p99Ms.toFixed(1)} ms${step.internalP99Ms === null ? '' : ` (Sluice's own ≤ ${step.internalP99Ms} ms)`}, ${step.received}/${expected} received`);
    }
  } finally {
    receiver.child.stdin!.write('quit\n');
    await receiver.stop();
    await stack.stop();
  }
  return steps;
}

/** Run the fan-out row for every target available here. */
export async function runFanoutBench(s: FanoutSettings, pin: Pinning, sluiceRoot: string, log: (line: string) => void, only: readonly FanoutTargetName[] = FANOUT_TARGETS): Promise<FanoutResult[]> {
  const results: FanoutResult[] = [];
  for (const target of only) {
    const missing = target === 'pushpin' ? ['pushpin', 'zurl', 'condure'].find((c) => !commandExists(c)) : target === 'classic' && !commandExists('haproxy') ? 'haproxy' : undefined;
    if (missing !== undefined) {
      results.push({ target, steps: [], error: `${missing} is not installed (apt-get install pushpin zurl haproxy)` });
      continue;
    }
    log(`fan-out · ${LABELS[target]} · ${s.subscribers} subscribers`);
    try {
      results.push({ target, steps: target === 'floor' ? runFanoutFloor(s, pin, log) : await measureTarget(target, s, pin, sluiceRoot, log), error: null });
    } catch (error) {
      log(`    ${LABELS[target]} failed: ${(error as Error).message}`);
      results.push({ target, steps: [], error: (error as Error).message });
    }
  }
  return results;
}

export function renderFanoutMarkdown(results: readonly FanoutResult[], s: FanoutSettings): string {
  const lines = [
    `## Fan-out: one channel, ${s.subscribers.toLocaleString('en')} subscribers, ${PAYLOAD_BYTES} B publications`,
    '',
    `${s.seconds} s per rate after ${s.warmupSeconds} s of warm-up. CPU per delivery: the proxy's process tree (Sluice with its workers; Pushpin's condure, zurl, proxy and handler); for the classic shape HAProxy **and** the backend, which does the fan-out (its share in brackets); for the floor, a C program writing each publication to every socket with write(2) and no proxy (native/tools/fanout-floor.c): the kernel's own cost of loopback fan-out on this machine, under every proxy's. Latency: publish to receive, read by the load generator's C client (the floor: its own C reader).`,
    '',
    '| Target | Rate (pub/s) | Deliveries/s | CPU per delivery (µs) | of it in the kernel | Proxy CPU (% core) | p50 (ms) | p99 (ms) | Sluice\'s own p99 (ms) | Received / expected | Receiver CPU (% core) |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of results) {
    if (r.error !== null) {
      lines.push(`| ${LABELS[r.target]} | | | | | | | | | ${r.error} | |`);
      continue;
    }
    for (const st of r.steps) {
      const cpu = r.target === 'classic' ? `${st.cpuPerDelivery.toFixed(2)} (${st.backendCpuPerDelivery.toFixed(2)})` : st.cpuPerDelivery.toFixed(3);
      lines.push(
        `| ${LABELS[r.target]} | ${st.rate} | ${Math.round(st.deliveriesPerSecond).toLocaleString('en')} | ${cpu} | ${Math.round(st.systemShare * 100)} % | ${st.proxyCpuPercent.toFixed(0)} | ${st.p50Ms.toFixed(1)} | ${st.p99Ms.toFixed(1)} | ${st.internalP99Ms === null ? '' : `≤ ${st.internalP99Ms}`} | ${st.received}/${st.expected} | ${st.receiverCpuPercent.toFixed(0)} |`,
      );
    }
  }
  return `${lines.join('\n')}\n`;
}
