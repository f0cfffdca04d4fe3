/**
 * Tests of the load generator itself, against the uWS echo backend on free ports: counts add up,
 * latency is plausible, runs stop on time, Ctrl-C still prints a summary, and bad options fail with
 * one clear sentence and exit status 2. Whole file: about 20 s.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startEchoBackends, type EchoBackend } from '../loadtest/echo-backend.js';
import { parseOptions } from '../loadtest/options.js';
import { runLoad, type LoadReport } from '../loadtest/run.js';

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
    for (const option of ['--url', '--connections', '--duration', '--json', '--interval', '--size', '--in-flight', '--concurrency', '--slow', '--rate', '--threads', '--local-address']) {
      assert.ok(r.stdout.includes(option), option);
    }
    assert.match(r.stdout, /\[ws:\/\/127\.0\.0\.1:9001\/\]/);
  });
});
