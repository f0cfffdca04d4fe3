/**
 * What the backend leg does for a user, on each leg (the native leg and the Node socket leg, forced with
 * SLUICE_NATIVE in the Sluice each test starts): a backend that stops (SIGSTOP) is found by Sluice's pings
 * within websocket.pingInterval + pongTimeout and its clients are closed with 1011, while a quiet healthy
 * backend stays connected; upstream connections leave from serversTransport.sourceAddresses in turn;
 * backends named by a host name work; a message uWebSockets.js drops (a client past clientMaxBuffer)
 * counts as dropped, not delivered.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import WebSocket from 'ws';
import { REPO, freePort, simpleConfig, startBackend, startSluice, type SluiceProcess, type TestBackend } from './helpers/sluice.js';
import { parsePrometheus, sampleSum } from './helpers/admin.js';
import { connect, roundTrip, closed, type CloseEvent } from './helpers/clients.js';
import { waitFor } from './helpers/wait.js';

const legs = [
  { name: 'native leg', env: { ...process.env, SLUICE_NATIVE: '1' } },
  { name: 'Node socket leg', env: { ...process.env, SLUICE_NATIVE: '0' } },
];

async function metrics(sluice: SluiceProcess): Promise<ReturnType<typeof parsePrometheus>> {
  return parsePrometheus(await (await fetch(`${sluice.adminUrl}/metrics`)).text());
}

/** A uWS echo backend in a process of its own, so that it can be stopped with SIGSTOP. */
async function echoProcess(): Promise<{ child: ChildProcess; url: string }> {
  const port = await freePort();
  const child = spawn(process.execPath, [path.join(REPO, 'dist/loadtest/echo-backend.js'), '--ports', String(port), '--host', '127.0.0.1'], { stdio: 'ignore' });
  await waitFor('the echo backend to listen', () => {
    // A connect attempt per check; resolved below through `up`.
    probe(port);
    return up.has(port);
  });
  return { child, url: `ws://127.0.0.1:${port}` };
}
const up = new Set<number>();
function probe(port: number): void {
  const socket = net.connect(port, '127.0.0.1', () => {
    up.add(port);
    socket.destroy();
  });
  socket.on('error', () => socket.destroy());
}

for (const leg of legs) {
  describe(`backend leg (${leg.name})`, () => {
    const started: SluiceProcess[] = [];
    const backends: TestBackend[] = [];
    const children: ChildProcess[] = [];
    const clients: WebSocket[] = [];
    after(async () => {
      for (const ws of clients) ws.terminate();
      for (const child of children) {
        child.kill('SIGCONT');
        child.kill('SIGKILL');
      }
      for (const b of backends) await b.close();
      for (const s of started) await s.stop();
    });
    async function sluiceFor(config: string, workers = 1): Promise<SluiceProcess> {
      const sluice = await startSluice(config, { env: leg.env, workers });
      started.push(sluice);
      return sluice;
    }

    test('a backend stopped with SIGSTOP is found within pingInterval + pongTimeout: its clients get 1011, counted backend_unresponsive', async () => {
      const pingInterval = 400;
      const pongTimeout = 400;
      const backend = await echoProcess();
      children.push(backend.child);
      const sluice = await sluiceFor(simpleConfig([backend.url], `websocket:\n  pingInterval: ${pingInterval}ms\n  pongTimeout: ${pongTimeout}ms\n`));
      const group = await Promise.all(Array.from({ length: 3 }, () => connect(sluice.url)));
      clients.push(...group);
      for (const ws of group) assert.equal(await roundTrip(ws, 'before'), 'before');
      const closes = group.map((ws) => closed(ws).then((event) => ({ event, at: Date.now() })));
      backend.child.kill('SIGSTOP');
      const stoppedAt = Date.now();
      const seen: { event: CloseEvent; at: number }[] = await Promise.all(closes);
      for (const { event, at } of seen) {
        assert.equal(event.code, 1011);
        assert.equal(event.reason, 'backend did not answer a ping');
        const took = at - stoppedAt;
        // At least the two settings after the last byte heard; at most three sweep periods (a quarter of
        // the shorter setting each) later, with room for a busy machine.
        assert.ok(took >= pingInterval + pongTimeout - 100, `closed after ${took} ms: too early`);
        assert.ok(took <= pingInterval + pongTimeout + 3 * 100 + 700, `closed after ${took} ms: too late`);
      }
      const samples = await metrics(sluice);
      assert.equal(sampleSum(samples, 'websocket_errors_total', { reason: 'backend_unresponsive' }), 3);
      assert.equal(sampleSum(samples, 'websocket_errors_total', { reason: 'backend_lost' }), 0);
      assert.equal(sampleSum(samples, 'websocket_closes_total', { side: 'proxy', code: '1011' }), 3);
    });

    test('a quiet backend that answers the pings stays connected', async () => {
      let pings = 0;
      const backend = await startBackend((ws) => {
        ws.on('ping', () => pings++); // `ws` answers each with a pong
        ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
      });
      backends.push(backend);
      const sluice = await sluiceFor(simpleConfig([backend.url], 'websocket:\n  pingInterval: 100ms\n  pongTimeout: 100ms\n'));
      const ws = await connect(sluice.url);
      clients.push(ws);
      await waitFor('six pings, far past pingInterval + pongTimeout of quiet', () => pings >= 6);
      assert.equal(ws.readyState, WebSocket.OPEN);
      assert.equal(await roundTrip(ws, 'still here'), 'still here');
    });

    test('connections leave from serversTransport.sourceAddresses in turn: 127.0.0.2-127.0.0.9', async () => {
      const backend = await startBackend();
      backends.push(backend);
      const config = simpleConfig([backend.url]).replace(
        '      loadBalancer:\n',
        '      loadBalancer:\n        serversTransport: spread\n',
      ) + '  serversTransports:\n    spread:\n      sourceAddresses: ["127.0.0.2-127.0.0.5", "127.0.0.6", "127.0.0.7-127.0.0.9"]\n';
      const sluice = await sluiceFor(config);
      const group = await Promise.all(Array.from({ length: 16 }, () => connect(sluice.url)));
      clients.push(...group);
      for (const ws of group) assert.equal(await roundTrip(ws, 'x'), 'x');
      const seen = backend.requests.map((r) => r.socket.remoteAddress);
      const counts = new Map<string, number>();
      for (const address of seen) counts.set(address!, (counts.get(address!) ?? 0) + 1);
      assert.deepEqual(
        [...counts.keys()].sort(),
        ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6', '127.0.0.7', '127.0.0.8', '127.0.0.9'],
      );
      // One worker: strict turns, two connections per address.
      assert.deepEqual([...new Set(counts.values())], [2]);
    });

    test('a backend named by a host name (localhost) is proxied', async () => {
      const backend = await startBackend();
      backends.push(backend);
      const sluice = await sluiceFor(simpleConfig([`ws://localhost:${backend.port}`]));
      const group = await Promise.all(Array.from({ length: 3 }, () => connect(sluice.url)));
      clients.push(...group);
      for (const [i, ws] of group.entries()) assert.equal(await roundTrip(ws, `by name ${i}`), `by name ${i}`);
      assert.equal(backend.requests.length, 3);
    });

    test('a message uWebSockets.js drops (client past clientMaxBuffer) counts as dropped, not delivered, and ends the client with 1013', async () => {
      const messages = 16 * 1024;
      const payload = Buffer.alloc(1024, 'd');
      const backend = await startBackend((ws) => {
        for (let i = 0; i < messages; i++) ws.send(payload, { binary: true });
      });
      backends.push(backend);
      const sluice = await sluiceFor(
        simpleConfig([backend.url], 'websocket:\n  maxMessageSize: 16KiB\n  clientHighWaterMark: 64KiB\n  clientMaxBuffer: 64KiB\n'),
      );
      // A client that does not read: the kernel's buffers fill, then uWS's, then uWS drops.
      const client = net.connect(sluice.port, '127.0.0.1');
      let received = 0;
      let upgraded = false;
      client.on('data', (chunk: Buffer) => {
        if (!upgraded) {
          upgraded = true;
          client.pause();
          return;
        }
        received += chunk.length;
      });
      client.on('error', () => undefined);
      const ended = new Promise<void>((resolve) => client.once('close', () => resolve()));
      client.write(`GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
      let samples = await metrics(sluice);
      const dropped = (): number => sampleSum(samples, 'websocket_errors_total', { reason: 'message_dropped' });
      for (let i = 0; i < 100 && dropped() === 0; i++) {
        // uWS drops a send only when the client's buffer is already past clientMaxBuffer, so the drop needs
        // a backend read that goes on after the buffer crosses it; Sluice stops reading at the end of the
        // read that crossed. When the machine is loaded the backend's reads come in small pieces and the
        // crossing can end a read: then nothing is dropped and everyone waits. After a second, let the client
        // read a moment now and then: Sluice resumes, and its next read is a full one from the backlog.
        if (i >= 10) {
          client.resume();
          await new Promise((resolve) => setTimeout(resolve, 5));
          client.pause();
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
        samples = await metrics(sluice);
      }
      assert.ok(dropped() >= 1, 'no message counted as dropped');
      client.resume();
      await ended;
      samples = await metrics(sluice);
      const delivered = sampleSum(samples, 'websocket_messages_total', { direction: 'backend_to_client' });
      // Every message the client got was counted delivered; none counted delivered was also dropped.
      assert.ok(Math.floor(received / (payload.length + 4)) <= delivered, `received ${received} bytes, ${delivered} counted delivered`);
      assert.ok(delivered + dropped() <= messages, `${delivered} delivered + ${dropped()} dropped > ${messages} sent`);
      assert.equal(sampleSum(samples, 'websocket_closes_total', { side: 'proxy', code: '1013' }), 1);
    });
  });
}
