/**
 * Tests of the load generator itself, against the uWS echo backend on free ports: counts add up,
 * latency is plausible, runs stop on time, Ctrl-C still prints a summary, and bad options fail with
 * one clear sentence and exit status 2. `receive` against a backend that pushes, and every scenario's
 * --host-header, --servername and --insecure through a real Sluice with a Host-routed, SNI-selected wss://
 * router. Whole file: about 30 s.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { decodePushStamp, parseTarget } from '../loadtest/client.js';
import { pushMessage, startEchoBackends, type EchoBackend } from '../loadtest/echo-backend.js';
import { parseOptions } from '../loadtest/options.js';
import { runLoad, type LoadReport } from '../loadtest/run.js';
import { CertificateFactory } from './helpers/certificates.js';
import { startBackend, startSluice, type SluiceProcess, type TestBackend } from './helpers/sluice.js';

const CLI = fileURLToPath(new URL('../loadtest/cli.js', import.meta.url));

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  seconds: number;
}

function runCli(args: string[], interruptAfterMs?: number): Promise<CliResult> {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    if (interruptAfterMs !== undefined) setTimeout(() => child.kill('SIGINT'), interruptAfterMs);
    child.on('close', (code) => {
      clearTimeout(killer);
      resolve({ code, stdout, stderr, seconds: (Date.now() - started) / 1000 });
    });
  });
}

let backend: EchoBackend;
let urls: string;

before(async () => {
  backend = await startEchoBackends([0, 0]);
  urls = backend.ports.map((p) => `ws://127.0.0.1:${p}/`).join(',');
});

after(() => backend.close());

describe('echo', () => {
  test('counts add up, nothing is lost, latency is plausible, and a 2 s run stops on time', async () => {
    const r = await runCli(['echo', '--url', urls, '--connections', '40', '--interval', '20', '--duration', '2', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.seconds < 6, `took ${r.seconds} s`);
    const report = JSON.parse(r.stdout) as LoadReport;
    assert.equal(report.connections.opened, 40);
    assert.ok(report.sent > 2000, `sent ${report.sent}`);
    assert.equal(report.sent, report.received + report.lost);
    assert.equal(report.lost, 0);
    assert.equal(report.corrupt, 0);
    assert.ok(report.latencyUs.p50 > 0);
    assert.ok(report.latencyUs.p99 < 1_000_000, `p99 ${report.latencyUs.p99} µs`);
    assert.equal(report.latencyUs.count, report.received);
    assert.ok(report.cpu.userMs + report.cpu.systemMs > 0, 'reports its own CPU');
  });

  test('a warm-up is left out of the counts and the measured window is the duration', async () => {
    const report = await runLoad(parseOptions(['echo', '--url', urls, '--connections', '10', '--interval', '10', '--duration', '1', '--warmup', '0.5'])!);
    assert.ok(Math.abs(report.measuredSeconds - 1) < 0.2, `measured ${report.measuredSeconds} s`);
    // 10 connections × 100/s × 1 s, give or take a tick at each edge.
    assert.ok(report.sent >= 900 && report.sent <= 1100, `sent ${report.sent}`);
    assert.equal(report.lost, 0);
  });
});

test('throughput: closed loop carries many messages and loses none', async () => {
  const report = await runLoad(parseOptions(['throughput', '--url', urls, '--connections', '10', '--in-flight', '4', '--duration', '1', '--size', '512'])!);
  assert.ok(report.received > 1000, `received ${report.received}`);
  assert.equal(report.sent, report.received + report.lost);
  assert.equal(report.lost, 0);
  assert.ok(Math.abs(report.bytesPerSecond.received - report.messagesPerSecond * 512) <= 512, 'bytes/s = messages/s × size');
});

test('connect: holds every connection and reports upgrade latency', async () => {
  const report = await runLoad(parseOptions(['connect', '--url', urls, '--connections', '300', '--rate', '3000', '--duration', '0.5'])!);
  assert.equal(report.connections.opened, 300);
  assert.equal(report.connections.peak, 300);
  assert.equal(report.connections.failed, 0);
  assert.equal(report.upgradeLatencyUs.count, 300);
  assert.ok(report.upgradeLatencyUs.p50 > 0 && report.upgradeLatencyUs.p99 < 1_000_000);
});

test('connect: a refused target is reported by reason, and the CLI exits 1', async () => {
  const r = await runCli(['connect', '--url', 'ws://127.0.0.1:1/', '--connections', '4', '--duration', '0.2', '--json']);
  assert.equal(r.code, 1);
  const report = JSON.parse(r.stdout) as LoadReport;
  assert.deepEqual(report.connections.failures, { refused: 4 });
  assert.match(r.stderr, /no connection could be opened/);
});

test('connect: when nothing opened, the summary gives no CPU figure per upgrade', async () => {
  const r = await runCli(['connect', '--url', 'ws://127.0.0.1:1/', '--connections', '4', '--duration', '0.2']);
  assert.equal(r.code, 1);
  assert.match(r.stdout, /^generator CPU\s+[\d.]+% of one core \(no upgrade completed, so no per-upgrade figure\)/m);
  assert.doesNotMatch(r.stdout, /µs per upgrade/);
});

describe('receive: counts what the server pushes', () => {
  let pusher: EchoBackend;
  let ticker: TestBackend;
  before(async () => {
    pusher = await startEchoBackends([0], '127.0.0.1', { pushIntervalMs: 10, pushSize: 256 });
    // Pushes without a stamp: counted, but no latency.
    ticker = await startBackend((ws) => {
      const timer = setInterval(() => ws.send('tick'), 10);
      ws.on('close', () => clearInterval(timer));
    });
  });
  after(async () => {
    pusher.close();
    await ticker.close();
  });

  test('stamped pushes: every message counted, each with a push-to-receive latency', async () => {
    const before = pusher.pushes();
    const report = await runLoad(parseOptions(['receive', '--url', `ws://127.0.0.1:${pusher.ports[0]}/`, '--connections', '20', '--duration', '1'])!);
    const published = pusher.pushes() - before;
    assert.equal(report.connections.opened, 20);
    // Every push the backend published while the 20 connections were measured, give or take the edges of
    // the window (connecting and closing): on a busy machine its 10 ms timer fires less often, so count
    // what it did publish rather than what it was asked to.
    assert.ok(report.received <= 20 * published && report.received >= 20 * (published * 0.6 - 5), `received ${report.received} of ${published} pushes to 20 connections`);
    assert.equal(report.sent, 0);
    assert.equal(report.unstamped, 0);
    assert.equal(report.latencyUs.count, report.received);
    assert.ok(report.latencyUs.p50 > 0 && report.latencyUs.p99 < 1_000_000, `p99 ${report.latencyUs.p99} µs`);
    assert.ok(Math.abs(report.bytesPerSecond.received - report.messagesPerSecond * 256) <= 256, 'bytes/s = messages/s × 256');
  });

  test('pushes without a stamp are counted as unstamped, and the summary says there is no latency', async () => {
    const r = await runCli(['receive', '--url', ticker.url, '--connections', '5', '--duration', '0.5']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^messages\s+received (\d+) \(\1 without a sentAt stamp\)$/m);
    assert.match(r.stdout, /^push latency\s+no stamped messages/m);
  });

  test('the push stamp format: {"sentAt":<Unix ms> first, JSON spacing allowed, anything else is no stamp', () => {
    const stamp = (text: string): number => decodePushStamp(Buffer.from(text), 0, Buffer.byteLength(text));
    assert.equal(stamp('{"sentAt":1733060000123.456,"seq":1}'), 1733060000123.456);
    assert.equal(stamp('{"sentAt": 1733060000123}'), 1733060000123);
    assert.equal(stamp('{"sentAt":1.7e12}'), 1.7e12);
    assert.ok(Number.isNaN(stamp('{"seq":1,"sentAt":1733060000123}')));
    assert.ok(Number.isNaN(stamp('{"sentAt":"yesterday"}')));
    assert.ok(Number.isNaN(stamp('tick')));
    const pushed = pushMessage(7, 300);
    assert.equal(Buffer.byteLength(pushed), 300);
    assert.deepEqual(Object.keys(JSON.parse(pushed) as object), ['sentAt', 'seq', 'pad']);
  });
});

describe('through Sluice: a Host-routed, SNI-selected wss:// router with self-signed certificates', () => {
  let certificates: CertificateFactory;
  let echo: EchoBackend;
  let feed: EchoBackend;
  let sluice: SluiceProcess;
  let url = '';
  const reports: Record<string, LoadReport> = {};

  before(async () => {
    certificates = new CertificateFactory();
    // Self-signed, so nothing verifies them: --insecure is needed.
    const named = certificates.selfSigned('named', 'chat.test', ['DNS:chat.test', 'DNS:feed.test']);
    const wildcard = certificates.selfSigned('wild', 'wild.test', ['DNS:*.wild.test']);
    echo = await startEchoBackends([0]);
    feed = await startEchoBackends([0], '127.0.0.1', { pushIntervalMs: 20, pushSize: 128 });
    sluice = await startSluice(
      `entryPoints:
  websecure:
    address: "127.0.0.1:{PORT}"
    http:
      tls: {}
tls:
  certificates:
    - { certFile: "${named.certFile}", keyFile: "${named.keyFile}" }
    - { certFile: "${wildcard.certFile}", keyFile: "${wildcard.keyFile}" }
http:
  routers:
    chat:
      rule: "Host(\`chat.test\`) || HostRegexp(\`^[a-z]+\\\\.wild\\\\.test$\`)"
      service: echo
      tls: {}
    feed:
      rule: "Host(\`feed.test\`)"
      service: feed
      tls: {}
  services:
    echo:
      loadBalancer:
        servers: [ { url: "ws://127.0.0.1:${echo.ports[0]}" } ]
    feed:
      loadBalancer:
        servers: [ { url: "ws://127.0.0.1:${feed.ports[0]}" } ]
`,
      { workers: 2 },
    );
    url = `wss://127.0.0.1:${sluice.port}/`;
    const run = async (name: string, args: string[]): Promise<void> => {
      reports[name] = await runLoad(parseOptions([...args, '--url', url, '--threads', '2', '--connect-timeout', '3000'])!);
    };
    // One Sluice for all of them; its uWebSockets.js prints which SNI names it was asked for.
    await run('echo, SNI from the Host header', ['echo', '--host-header', 'a.wild.test', '--insecure', '--connections', '20', '--interval', '20', '--duration', '0.5']);
    await run('throughput', ['throughput', '--host-header', 'chat.test', '--insecure', '--connections', '10', '--duration', '0.5']);
    await run('churn', ['churn', '--host-header', 'chat.test', '--insecure', '--concurrency', '4', '--duration', '0.5']);
    await run('slow-consumer', ['slow-consumer', '--host-header', 'chat.test', '--insecure', '--connections', '6', '--slow', '2', '--duration', '0.5']);
    await run('connect, SNI given apart', ['connect', '--host-header', 'chat.test', '--servername', 'b.wild.test', '--insecure', '--connections', '20', '--duration', '0.3']);
    await run('receive', ['receive', '--host-header', 'feed.test', '--insecure', '--connections', '10', '--duration', '1']);
    await run('no Host header', ['connect', '--insecure', '--connections', '5', '--duration', '0.2']);
    await run('no --insecure', ['connect', '--host-header', 'chat.test', '--connections', '5', '--duration', '0.2']);
    assert.equal(await sluice.stop(), 0);
    await sluice.drained();
  });

  after(async () => {
    await sluice?.stop();
    echo?.close();
    feed?.close();
    certificates?.remove();
  });

  test('every scenario opens every connection and loses nothing', () => {
    for (const name of ['echo, SNI from the Host header', 'throughput', 'slow-consumer', 'connect, SNI given apart', 'receive']) {
      const report = reports[name]!;
      assert.deepEqual(report.connections.failures, {}, name);
      assert.equal(report.connections.opened, report.connections.attempted, name);
      assert.equal(report.lost, 0, name);
    }
    assert.ok(reports['echo, SNI from the Host header']!.received > 200);
    assert.ok(reports.throughput!.received > 200);
    assert.ok(reports.churn!.upgrades > 20, `churn upgrades ${reports.churn!.upgrades}`);
    assert.equal(reports.churn!.connections.failed, 0);
  });

  test('receive: the pushes of the backend behind the feed.test router, stamped', () => {
    const report = reports.receive!;
    assert.ok(report.received >= 300, `received ${report.received}`); // 10 × 50/s × 1 s
    assert.equal(report.unstamped, 0);
    assert.equal(report.latencyUs.count, report.received);
  });

  test('the SNI name is the Host header\'s, or --servername when given', () => {
    // uWebSockets.js prints each wildcard name it registers for a client's SNI. Which stream it lands on is
    // output-streams.test's business: with SLUICE_NATIVE=0 the test's socket-pair stdout cannot be reopened,
    // so the prints stay on stdout there. Here only the names matter.
    const output = `${sluice.stderr()}\n${sluice.stdout()}`;
    assert.match(output, /^Browsed to SNI: a\.wild\.test$/m);
    assert.match(output, /^Browsed to SNI: b\.wild\.test$/m);
  });

  test('the router matches the Host header: without --host-header nothing routes (404)', () => {
    assert.deepEqual(reports['no Host header']!.connections.failures, { 'status 404': 5 });
  });

  test('self-signed certificates need --insecure', () => {
    const failures = Object.entries(reports['no --insecure']!.connections.failures);
    assert.equal(failures.length, 1);
    assert.match(failures[0]![0], /^error .*SELF_SIGNED/);
    assert.equal(failures[0]![1], 5);
  });

  test('targets: --servername defaults to the Host header\'s name, never to an IP address', () => {
    assert.equal(parseTarget('wss://127.0.0.1:8443/ws?x=1').servername, undefined);
    assert.equal(parseTarget('wss://chat.test:8443/').servername, 'chat.test');
    assert.deepEqual(
      [parseTarget('wss://127.0.0.1:8443/', { hostHeader: 'chat.test:8443' }).servername, parseTarget('wss://127.0.0.1:8443/', { hostHeader: 'chat.test:8443' }).hostHeader],
      ['chat.test', 'chat.test:8443'],
    );
    assert.equal(parseTarget('wss://127.0.0.1/', { hostHeader: 'chat.test', servername: 'other.test' }).servername, 'other.test');
    assert.equal(parseTarget('wss://127.0.0.1/', { hostHeader: '[::1]:8443' }).servername, undefined);
  });
});

test('churn: upgrades and closes continuously without failures', async () => {
  const report = await runLoad(parseOptions(['churn', '--url', urls, '--concurrency', '8', '--duration', '1'])!);
  assert.ok(report.upgrades > 100, `upgrades ${report.upgrades}`);
  assert.equal(report.connections.failed, 0);
  assert.ok(report.upgradesPerSecond > 100);
});

test('slow-consumer: the fast connections keep echoing while the slow ones stop reading', async () => {
  const report = await runLoad(
    parseOptions(['slow-consumer', '--url', urls, '--connections', '12', '--slow', '3', '--interval', '20', '--duration', '1', '--slow-size', '4096'])!,
  );
  assert.ok(report.slow);
  assert.equal(report.slow.connections, 3);
  assert.ok(report.slow.sent > 0);
  assert.ok(report.received > 300, `received ${report.received}`);
  assert.equal(report.lost, 0);
});

test('Ctrl-C stops a long run and still prints the partial summary', async () => {
  const r = await runCli(['echo', '--url', urls, '--connections', '5', '--duration', '60'], 1500);
  assert.ok(r.seconds < 6, `took ${r.seconds} s`);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /INTERRUPTED/);
  assert.match(r.stdout, /messages\s+sent \d/);
});

describe('bad options give one clear sentence and exit status 2', () => {
  const cases: [string[], RegExp][] = [
    [[], /missing scenario: one of connect, echo/],
    [['flood'], /unknown scenario 'flood': expected one of/],
    [['echo', '--connections', 'many'], /invalid --connections 'many': expected a whole number/],
    [['echo', '--size', '4'], /invalid --size '4': must be between 8 and/],
    [['echo', '--duration', '-1'], /invalid --duration '-1'/],
    [['echo', '--url', 'http://x/'], /invalid --url 'http:\/\/x\/': scheme must be ws:\/\/ or wss:\/\//],
    [['echo', '--frobnicate'], /unknown option '--frobnicate'/],
    [['echo', '--connections'], /option '--connections' needs a value/],
    [['churn', '--connections', '5'], /does not apply to churn: use --concurrency/],
    [['echo', '--connections', '50000'], /invalid --connections '50000': this process may hold \d+ open files/],
    [['slow-consumer', '--connections', '5', '--slow', '5'], /invalid --slow '5': must be less than --connections/],
    [['echo', '--local-address', '127.0.0.9-127.0.0.3'], /invalid --local-address/],
    [['echo', '--servername', 'chat.test'], /option '--servername' applies to wss:\/\/ targets only/],
    [['echo', '--insecure'], /option '--insecure' applies to wss:\/\/ targets only/],
    [['echo', '--url', 'wss://127.0.0.1:1/', '--servername', '10.0.0.1'], /invalid --servername '10\.0\.0\.1': expected a DNS name/],
    [['receive', '--host-header', 'chat test'], /invalid --host-header 'chat test': expected a host name, optionally with :port/],
  ];
  for (const [args, message] of cases) {
    test(args.join(' ') || '(no arguments)', async () => {
      const r = await runCli(args);
      assert.equal(r.code, 2);
      assert.match(r.stderr, message);
      assert.equal(r.stderr.trim().split('\n').length, 1, 'one line');
      assert.equal(r.stdout, '');
    });
  }

  test('--help documents every option with its default', async () => {
    const r = await runCli(['--help']);
    assert.equal(r.code, 0);
    for (const option of ['--url', '--connections', '--duration', '--json', '--interval', '--size', '--in-flight', '--concurrency', '--slow', '--rate', '--threads', '--local-address', '--host-header', '--servername', '--insecure', 'receive']) {
      assert.ok(r.stdout.includes(option), option);
    }
    assert.match(r.stdout, /\[ws:\/\/127\.0\.0\.1:9001\/\]/);
  });
});
