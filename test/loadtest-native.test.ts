/**
 * The load generator's native client (`--client native`, native/src/loadgen.c) against the Node
 * client on the same workloads: the same counts, the same failure reasons, latencies within noise;
 * and the protocol corners it handles in C (frames split across reads, pings, a peer's close); its receive
 * scenario as the fan-out bench uses it.
 * Skipped when the addon is not built.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server, type AddressInfo } from 'node:net';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { WebSocketServer } from 'ws';
import { startEchoBackends, type EchoBackend } from '../loadtest/echo-backend.js';
import { loadNativeClient } from '../loadtest/native-client.js';
import { parseOptions } from '../loadtest/options.js';
import { runLoad, type LoadReport } from '../loadtest/run.js';
import { nativeReceiver } from '../bench/fanout-native-receiver.js';

const { loadgen, error } = await loadNativeClient();
const skip = loadgen === null ? `native client unavailable (${error?.message ?? 'unknown'}); build it with npm run build:native` : false;
const CLI = fileURLToPath(new URL('../loadtest/cli.js', import.meta.url));

/** The same run with each client. */
async function both(args: string[]): Promise<{ node: LoadReport; native: LoadReport }> {
  const node = await runLoad(parseOptions([...args, '--client', 'node'])!);
  const native = await runLoad(parseOptions([...args, '--client', 'native'])!);
  return { node, native };
}

/** Medians agree within noise on a shared machine: a factor of 3, or 3 ms. */
function assertClose(what: string, a: number, b: number): void {
  assert.ok(Math.abs(a - b) <= 3000 || (a <= 3 * b && b <= 3 * a), `${what}: node ${a} µs, native ${b} µs`);
}

describe('the native load-generator client against the Node client', { skip }, () => {
  let backend: EchoBackend;
  let urls: string;
  before(async () => {
    backend = await startEchoBackends([0, 0]);
    urls = backend.ports.map((p) => `ws://127.0.0.1:${p}/`).join(',');
  });
  after(() => backend.close());

  test('echo (open loop): the same messages sent and echoed, none lost, latencies alike', async () => {
    const { node, native } = await both(['echo', '--url', urls, '--connections', '40', '--interval', '20', '--duration', '2', '--threads', '2']);
    for (const r of [node, native]) {
      assert.equal(r.connections.opened, 40);
      assert.equal(r.sent, r.received + r.lost);
      assert.equal(r.lost, 0);
      assert.equal(r.corrupt, 0);
      assert.equal(r.latencyUs.count, r.received);
    }
    // 40 connections × 50/s × 2 s, give or take a tick at each edge of the window.
    assert.ok(Math.abs(native.sent - node.sent) <= 80, `sent: node ${node.sent}, native ${native.sent}`);
    assertClose('p50', node.latencyUs.p50, native.latencyUs.p50);
    assert.ok(native.latencyUs.p99 < 1_000_000, `native p99 ${native.latencyUs.p99} µs`);
  });

  test('throughput (closed loop): counts add up and bytes/s = messages/s × size', async () => {
    const { node, native } = await both(['throughput', '--url', urls, '--connections', '10', '--in-flight', '4', '--duration', '1', '--size', '512', '--threads', '1']);
    for (const r of [node, native]) {
      assert.ok(r.received > 1000, `received ${r.received}`);
      assert.equal(r.sent, r.received + r.lost);
      assert.equal(r.lost, 0);
      assert.equal(r.corrupt, 0);
      assert.ok(Math.abs(r.bytesPerSecond.received - r.messagesPerSecond * 512) <= 512, 'bytes/s = messages/s × size');
    }
    assertClose('p50', node.latencyUs.p50, native.latencyUs.p50);
  });

  test('messages larger than a read are followed across reads', async () => {
    const r = await runLoad(parseOptions(['throughput', '--url', urls, '--connections', '4', '--in-flight', '2', '--duration', '1', '--size', '300000', '--client', 'native'])!);
    assert.ok(r.received > 20, `received ${r.received}`);
    assert.equal(r.lost, 0);
    assert.equal(r.corrupt, 0);
  });

  test('connect: every connection held, one upgrade latency each', async () => {
    const { node, native } = await both(['connect', '--url', urls, '--connections', '300', '--rate', '3000', '--duration', '0.5']);
    for (const r of [node, native]) {
      assert.equal(r.connections.opened, 300);
      assert.equal(r.connections.peak, 300);
      assert.equal(r.connections.failed, 0);
      assert.equal(r.upgradeLatencyUs.count, 300);
      assert.ok(r.upgradeLatencyUs.p50 > 0 && r.upgradeLatencyUs.p99 < 1_000_000, `upgrade p99 ${r.upgradeLatencyUs.p99} µs`);
    }
    // Not compared: at 3,000 upgrades/s the Node client's own event loop (a socket, a SHA-1 and a
    // handshake parse per connection in JavaScript) adds milliseconds that the C client does not.
  });

  describe('failures are reported by the same reasons', () => {
    let refusing: Server;
    let pinging: WebSocketServer;
    let pongs = 0;
    before(async () => {
      refusing = createServer((socket) => {
        socket.on('error', () => undefined);
        socket.once('data', () => socket.end('HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n'));
      });
      await new Promise<void>((resolve) => refusing.listen(0, '127.0.0.1', resolve));
      // Pings each client, echoes, and closes it with 1001 after 300 ms.
      pinging = new WebSocketServer({ host: '127.0.0.1', port: 0 });
      await new Promise<void>((resolve) => pinging.once('listening', () => resolve()));
      pinging.on('connection', (ws) => {
        ws.on('error', () => undefined);
        ws.on('pong', () => pongs++);
        ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
        ws.ping('are you there');
        setTimeout(() => ws.close(1001, 'going away'), 300);
      });
    });
    after(() => {
      refusing.close();
      pinging.close();
    });

    test('a refused connect, and a 503 answer to the upgrade', async () => {
      const refused = await both(['connect', '--url', 'ws://127.0.0.1:1/', '--connections', '4', '--duration', '0.2']);
      assert.deepEqual(refused.native.connections.failures, refused.node.connections.failures);
      assert.deepEqual(refused.native.connections.failures, { refused: 4 });
      const port = (refusing.address() as AddressInfo).port;
      const rejected = await both(['connect', '--url', `ws://127.0.0.1:${port}/`, '--connections', '3', '--duration', '0.2']);
      assert.deepEqual(rejected.native.connections.failures, { 'status 503': 3 });
      assert.deepEqual(rejected.native.connections.failures, rejected.node.connections.failures);
    });

    test("the peer's pings are answered, and its close is counted by code", async () => {
      const port = (pinging.address() as AddressInfo).port;
      pongs = 0;
      const r = await runLoad(parseOptions(['echo', '--url', `ws://127.0.0.1:${port}/`, '--connections', '5', '--interval', '20', '--duration', '1', '--client', 'native'])!);
      assert.equal(pongs, 5, 'every ping got its pong');
      assert.deepEqual(r.connections.closedEarly, { 'close 1001': 5 });
    });
  });

  test('receive (the fan-out bench receiver): stamped binary pushes are counted and timed per window; text is not', async () => {
    // A server that greets each client with a text notice (as the bench's GRIP backend does once it has
    // subscribed it) and then pushes binary messages stamped with a publish time 50 ms in the past.
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    await new Promise((resolve) => wss.once('listening', resolve));
    wss.on('connection', (ws) => ws.send('subscribed'));
    const push = (count: number): void => {
      for (const ws of wss.clients) {
        for (let i = 0; i < count; i++) {
          const m = Buffer.alloc(64);
          m.writeDoubleLE(performance.timeOrigin + performance.now() - 50, 0);
          ws.send(m, { binary: true });
        }
      }
    };
    const url = new URL(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}/?channel=x`);
    const { ready, control } = await nativeReceiver(loadgen!, url, 20, true);
    try {
      assert.equal(ready, 20, 'every client got its notice');
      push(2); // before any window: not counted
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(control.report().received, 0);
      control.reset();
      push(5);
      const deadline = Date.now() + 5000;
      while (control.report().received < 100 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      const r = control.report();
      assert.equal(r.received, 100);
      assert.ok(r.p50 >= 50_000 && r.p50 < 1_000_000, `p50 ${r.p50} µs: the stamp is read as publish time`);
      control.reset();
      assert.equal(control.report().received, 0, 'a new window starts from nothing');
    } finally {
      control.quit();
      for (const ws of wss.clients) ws.terminate();
      await new Promise((resolve) => wss.close(resolve));
    }
  });

  test('the CLI refuses what the native client does not do, in one sentence', async () => {
    for (const [args, message] of [
      [['churn', '--client', 'native'], /--client native does not run churn/],
      [['echo', '--client', 'native', '--url', 'wss://127.0.0.1:9/'], /--client native speaks ws:\/\/ only/],
      [['echo', '--client', 'rust'], /invalid --client 'rust': expected node or native/],
    ] as const) {
      const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
        let stderr = '';
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        child.on('close', (code) => resolve({ code, stderr }));
      });
      assert.equal(r.code, 2);
      assert.match(r.stderr, message);
    }
  });
});
