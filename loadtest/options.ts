/**
 * Command-line options of the load generator: their defaults, the help text that documents them,
 * and the validation that turns a bad option into one clear sentence (and exit status 2) before
 * any socket is opened. The parsed, frozen `LoadOptions` is what every thread receives.
 */
import { availableParallelism } from 'node:os';
import { readFileSync } from 'node:fs';
import { isIpAddress } from './client.js';

export const SCENARIOS = ['connect', 'echo', 'throughput', 'churn', 'slow-consumer', 'receive'] as const;
export type Scenario = (typeof SCENARIOS)[number];

export interface LoadOptions {
  readonly scenario: Scenario;
  /** Target URLs; connection i goes to urls[i % urls.length] (several URLs let `direct` spread over a pool). */
  readonly urls: readonly string[];
  readonly connections: number;
  /** Seconds measured; connection ramp-up, warm-up and drain come on top and are bounded separately. */
  readonly duration: number;
  readonly warmup: number;
  /** New connections per second while ramping up (all threads together). */
  readonly rate: number;
  readonly connectTimeoutMs: number;
  /** Seconds to wait for outstanding replies after the last send before counting them lost. */
  readonly drain: number;
  readonly intervalMs: number;
  readonly size: number;
  readonly inFlight: number;
  readonly concurrency: number;
  readonly slow: number;
  readonly slowSize: number;
  readonly threads: number;
  /** Client source addresses, used round-robin so that no single address runs out of ephemeral ports. */
  readonly localAddresses: readonly string[];
  /** Host header of every upgrade instead of the URL's host (a host-routed router behind an address). */
  readonly hostHeader: string | undefined;
  /** TLS server name (SNI) instead of the Host header's name; for wss:// targets. */
  readonly servername: string | undefined;
  readonly insecure: boolean;
  /** node: LeanWebSocket in JavaScript; native: the addon's C client (native-client.ts). */
  readonly client: 'node' | 'native';
  readonly json: boolean;
  readonly progress: boolean;
}

/** A user mistake on the command line; the CLI prints the message and exits 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** Open files kept back for the runtime, worker threads, stdio and the pool's own pipes. */
export const FD_RESERVE = 100;

const DEFAULT_CONNECTIONS: Record<Scenario, number> = {
  connect: 1000,
  echo: 100,
  throughput: 50,
  churn: 0,
  'slow-consumer': 100,
  receive: 100,
};

export const HELP = `usage: npm run loadtest -- <scenario> [options]

scenarios
  connect         open --connections at --rate per second, hold them for --duration s;
                  reports upgrade latency, failures by reason and the peak reached
  echo            every connection sends --size bytes every --interval ms (open loop: sends
                  never wait for replies); round-trip latency, sent, received, lost
  throughput      every connection keeps --in-flight messages outstanding (closed loop);
                  messages/s and bytes/s
  churn           open, upgrade and close as fast as possible, --concurrency at a time;
                  upgrades/s, upgrade latency and failures
  slow-consumer   like echo, but --slow connections stop reading and send --slow-size
                  messages; reports how the other connections fare and what happened
                  to the slow ones
  receive         open --connections and only listen for --duration s: counts what the
                  server pushes (fan-out, broadcast), with push-to-receive latency for
                  messages that start with {"sentAt":<Unix ms>  (see loadtest/README.md)

common options (default in brackets)
  --url URL[,URL...]     target(s), ws:// or wss://; connections go round-robin
                         [ws://127.0.0.1:9001/]
  --connections N        connections to open [connect 1000, echo 100, throughput 50,
                         slow-consumer 100, receive 100]
  --duration S           seconds measured, after ramp-up and warm-up [10]
  --warmup S             seconds of load before measuring starts [0]
  --rate N               connections opened per second while ramping up [1000]
  --connect-timeout MS   TCP connect + upgrade must finish within this [10000]
  --drain S              after the last send, wait this long for replies before
                         counting the rest lost [2]
  --threads N            worker threads the connections are spread over
                         [available cores, at most one per connection]
  --local-address LIST   client source addresses: 127.0.0.1-127.0.0.250, a comma list,
                         or "none" for the OS choice [127.0.0.1-127.0.0.250 for a
                         loopback target, else none]
  --host-header HOST     Host header of the upgrade requests [the URL's host:port]
  --servername NAME      TLS server name (SNI) for wss:// [the Host header's name; none
                         for an IP address]
  --insecure             accept any TLS certificate for wss:// targets (self-signed)
  --client node|native   the WebSocket client: node (JavaScript, every scenario) or
                         native (the addon's C client: ws://, connect/echo/throughput) [node]
  --json                 print one JSON document instead of the table
  --no-progress          no progress line, even on a terminal
  -h, --help             this text

echo, throughput and slow-consumer
  --size BYTES           message size, at least 8 (the send time rides in the first 8) [64]
  --interval MS          echo, slow-consumer: milliseconds between sends per connection [100]
  --in-flight N          throughput: messages outstanding per connection [4]

churn
  --concurrency N        connections being opened or closed at once [50]

slow-consumer
  --slow N               connections that stop reading [10]
  --slow-size BYTES      message size the slow connections send [65536]

exit status: 0 run finished, 1 no connection could be opened or the run failed, 2 bad options.
Ctrl-C stops the run early and prints the partial summary.`;

const BOOLEAN_FLAGS = new Set(['--json', '--insecure', '--no-progress', '--help', '-h']);
const VALUE_FLAGS = new Set([
  '--url',
  '--connections',
  '--duration',
  '--warmup',
  '--rate',
  '--connect-timeout',
  '--drain',
  '--threads',
  '--local-address',
  '--host-header',
  '--servername',
  '--size',
  '--interval',
  '--in-flight',
  '--concurrency',
  '--slow',
  '--slow-size',
  '--client',
]);

/** Returns null when --help was asked for. Throws UsageError for anything it cannot run. */
export function parseOptions(argv: readonly string[]): LoadOptions | null {
  const values = new Map<string, string>();
  const flags = new Set<string>();
  let scenario: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    if (BOOLEAN_FLAGS.has(name)) {
      if (eq > 0) throw new UsageError(`option '${name}' takes no value`);
      flags.add(name);
    } else if (VALUE_FLAGS.has(name)) {
      const value = eq > 0 ? arg.slice(eq + 1) : argv[++i];
      if (value === undefined || value === '') throw new UsageError(`option '${name}' needs a value`);
      values.set(name, value);
    } else if (arg.startsWith('-')) {
      throw new UsageError(`unknown option '${arg}' (see --help)`);
    } else if (scenario === undefined) {
      scenario = arg;
    } else {
      throw new UsageError(`unexpected argument '${arg}': only one scenario may be given`);
    }
  }
  if (flags.has('--help') || flags.has('-h')) return null;
  if (scenario === undefined) throw new UsageError(`missing scenario: one of ${SCENARIOS.join(', ')}`);
  if (!(SCENARIOS as readonly string[]).includes(scenario)) {
    throw new UsageError(`unknown scenario '${scenario}': expected one of ${SCENARIOS.join(', ')}`);
  }
  return buildOptions(scenario as Scenario, values, flags);
}

function buildOptions(scenario: Scenario, values: Map<string, string>, flags: Set<string>): LoadOptions {
  const int = (name: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number => {
    const raw = values.get(name);
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!/^\d+$/.test(raw) || !Number.isSafeInteger(n)) {
      throw new UsageError(`invalid ${name} '${raw}': expected a whole number`);
    }
    if (n < min || n > max) {
      throw new UsageError(`invalid ${name} '${raw}': must be between ${min} and ${max}`);
    }
    return n;
  };
  const seconds = (name: string, fallback: number, min: number, max = 86_400): number => {
    const raw = values.get(name);
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!/^\d*\.?\d+$/.test(raw) || !Number.isFinite(n)) {
      throw new UsageError(`invalid ${name} '${raw}': expected a number of seconds`);
    }
    if (n < min || n > max) throw new UsageError(`invalid ${name} '${raw}': must be between ${min} and ${max}`);
    return n;
  };

  const urls = (values.get('--url') ?? 'ws://127.0.0.1:9001/').split(',').map((u) => u.trim());
  for (const u of urls) checkUrl(u);

  const connections =
    scenario === 'churn' ? 0 : int('--connections', DEFAULT_CONNECTIONS[scenario], 1, 1_000_000);
  if (scenario === 'churn' && values.has('--connections')) {
    throw new UsageError(`option '--connections' does not apply to churn: use --concurrency`);
  }
  const concurrency = int('--concurrency', 50, 1, 100_000);
  const size = int('--size', 64, 8, 64 * 1024 * 1024);
  const slow = int('--slow', 10, 1, 1_000_000);
  if (scenario === 'slow-consumer' && slow >= connections) {
    throw new UsageError(`invalid --slow '${slow}': must be less than --connections (${connections}) so some connections stay fast`);
  }
  const held = scenario === 'churn' ? concurrency : connections;
  const threads = int('--threads', Math.max(1, Math.min(availableParallelism(), held)), 1, 256);
  const localAddresses = parseLocalAddresses(values.get('--local-address') ?? 'auto', urls);
  const hostHeader = values.get('--host-header');
  if (hostHeader !== undefined && !/^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(:\d{1,5})?$/.test(hostHeader)) {
    throw new UsageError(`invalid --host-header '${hostHeader}': expected a host name, optionally with :port`);
  }
  if (flags.has('--insecure') && !urls.some((u) => u.startsWith('wss:'))) {
    throw new UsageError(`option '--insecure' applies to wss:// targets only`);
  }
  const servername = values.get('--servername');
  if (servername !== undefined) {
    if (!urls.some((u) => u.startsWith('wss:'))) throw new UsageError(`option '--servername' applies to wss:// targets only`);
    if (isIpAddress(servername) || !/^[A-Za-z0-9._-]+$/.test(servername)) {
      throw new UsageError(`invalid --servername '${servername}': expected a DNS name (TLS sends no IP address as a server name)`);
    }
  }
  checkFileLimit(held, scenario === 'churn' ? '--concurrency' : '--connections');
  const client = values.get('--client') ?? 'node';
  if (client !== 'node' && client !== 'native') throw new UsageError(`invalid --client '${client}': expected node or native`);
  if (client === 'native') {
    if (!['connect', 'echo', 'throughput'].includes(scenario)) {
      throw new UsageError(`--client native does not run ${scenario} (expected connect, echo or throughput; use --client node)`);
    }
    const secure = urls.find((u) => u.startsWith('wss:'));
    if (secure !== undefined) throw new UsageError(`--client native speaks ws:// only, not '${secure}' (use --client node for wss://)`);
  }

  return Object.freeze({
    scenario,
    urls: Object.freeze(urls),
    connections,
    duration: seconds('--duration', 10, 0.1),
    warmup: seconds('--warmup', 0, 0),
    rate: int('--rate', 1000, 1, 10_000_000),
    connectTimeoutMs: int('--connect-timeout', 10_000, 1, 3_600_000),
    drain: seconds('--drain', 2, 0, 600),
    intervalMs: int('--interval', 100, 1, 3_600_000),
    size,
    inFlight: int('--in-flight', 4, 1, 100_000),
    concurrency,
    slow,
    slowSize: int('--slow-size', 65_536, 8, 64 * 1024 * 1024),
    threads: Math.min(threads, held),
    localAddresses: Object.freeze(localAddresses),
    hostHeader,
    servername,
    insecure: flags.has('--insecure'),
    client,
    json: flags.has('--json'),
    progress: !flags.has('--no-progress'),
  });
}

function checkUrl(u: string): void {
  let url: URL;
  try {
    url = new URL(u);
  } catch {
    throw new UsageError(`invalid --url '${u}': not a URL (expected e.g. ws://127.0.0.1:9001/)`);
  }
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') {
    throw new UsageError(`invalid --url '${u}': scheme must be ws:// or wss://`);
  }
}

/** "a.b.c.x-a.b.c.y" expands over the last octet; "none" lets the OS choose. */
export function parseLocalAddresses(spec: string, urls: readonly string[]): string[] {
  if (spec === 'none') return [];
  if (spec === 'auto') {
    const loopback = urls.every((u) => /^127\./.test(new URL(u).hostname) || new URL(u).hostname === 'localhost');
    return loopback ? expandRange('127.0.0.1-127.0.0.250') : [];
  }
  const out: string[] = [];
  for (const part of spec.split(',')) out.push(...expandRange(part.trim()));
  return out;
}

function expandRange(part: string): string[] {
  const ipv4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
  const [from, to] = part.split('-');
  const a = ipv4.exec(from ?? '');
  if (!a || a.slice(1).some((o) => Number(o) > 255)) {
    throw new UsageError(`invalid --local-address '${part}': expected an IPv4 address or range like 127.0.0.1-127.0.0.250`);
  }
  if (to === undefined) return [part];
  const b = ipv4.exec(to);
  if (!b || b.slice(1, 4).join('.') !== a.slice(1, 4).join('.') || Number(b[4]) < Number(a[4]) || Number(b[4]) > 255) {
    throw new UsageError(`invalid --local-address '${part}': a range must stay within one /24 and go upwards, like 127.0.0.1-127.0.0.250`);
  }
  const out: string[] = [];
  for (let o = Number(a[4]); o <= Number(b[4]); o++) out.push(`${a[1]}.${a[2]}.${a[3]}.${o}`);
  return out;
}

/** The soft RLIMIT_NOFILE of this process, from /proc (Node has no API for it); Infinity if unknown. */
export function openFileLimit(): number {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const soft = line?.split(/\s{2,}/)[1];
    return soft === undefined || soft === 'unlimited' ? Infinity : Number(soft);
  } catch {
    return Infinity;
  }
}

/** Every connection is one descriptor in this process; refuse up front instead of failing with EMFILE midway. */
function checkFileLimit(held: number, option: string): void {
  const limit = openFileLimit();
  if (held + FD_RESERVE > limit) {
    throw new UsageError(
      `invalid ${option} '${held}': this process may hold ${limit} open files (ulimit -n) and needs about ` +
        `${held + FD_RESERVE} (one per connection plus ${FD_RESERVE}); use at most ${limit - FD_RESERVE}, ` +
        `or run several generators`,
    );
  }
}
