/**
 * Liveness and readiness as Kubernetes probes see them. /health: 200 while every worker ticks, 503 while
 * one is stuck (a worker whose loop is blocked by fault injection), 200 again once it recovers.
 * /ready: 200 once the real process says it listens, 503 from the moment SIGTERM starts the drain, until
 * the process exits. A backend that answers the upgrade and then never closes its socket keeps the drain
 * going (Sluice waits up to 5 s for a backend to finish its close), so the test can observe it.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { connect as netConnect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { simpleConfig, startBackend, startSluice, type SluiceProcess, type TestBackend } from './helpers/sluice.js';
import { get, startWithAdmin, type AdminSluice } from './helpers/admin.js';
import { waitFor } from './helpers/wait.js';
import { upgradeRequest } from './helpers/peer.js';

describe('/health', () => {
  let sluice: AdminSluice | undefined;
  let backend: TestBackend | undefined;
  after(async () => {
    await sluice?.stop();
    await backend?.close();
  });

  test('fails while a worker is blocked, and recovers when it runs again', async () => {
    backend = await startBackend();
    sluice = await startWithAdmin(simpleConfig([backend.url]), 2);
    const ok = await get(`${sluice.adminUrl}/health`);
    assert.equal(ok.status, 200, ok.text);
    assert.equal(JSON.parse(ok.text).status, 'ok');

    sluice.supervisor.injectFault(1, 'block', 5500);
    let last = ok;
    for (let i = 0; i < 50 && last.status !== 503; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      last = await get(`${sluice.adminUrl}/health`);
    }
    assert.equal(last.status, 503, last.text);
    const body = JSON.parse(last.text) as { status: string; workers: { index: number; stuck: boolean }[] };
    assert.equal(body.status, 'failing');
    assert.deepEqual(body.workers.map((w) => w.stuck), [false, true]);
    const lag = await get(`${sluice.adminUrl}/metrics`);
    const lagLine = /^sluice_worker_event_loop_lag_seconds\{worker="1"\} (\S+)$/m.exec(lag.text);
    assert.ok(lagLine !== null && Number(lagLine[1]) >= 2, `worker 1's lag shows the block: ${lagLine?.[0]}`);

    for (let i = 0; i < 80 && last.status !== 200; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      last = await get(`${sluice.adminUrl}/health`);
    }
    assert.equal(last.status, 200, `/health recovers once the worker runs again: ${last.text}`);
  });
});

/** A raw TCP backend that accepts every upgrade with a valid 101, then reads and ignores everything and
 *  never closes its side. */
async function startSilentBackend(sockets: Socket[]): Promise<{ server: Server; url: string }> {
  // allowHalfOpen: Sluice's FIN after its close frame must not make this side close too.
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.push(socket);
    socket.on('error', () => undefined);
    let head = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      if (head.includes('\r\n\r\n')) return;
      head += d;
      const key = /sec-websocket-key: *(\S+)/i.exec(head)?.[1];
      if (!head.includes('\r\n\r\n') || key === undefined) return;
      const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

describe('/ready', () => {
  let sluice: SluiceProcess | undefined;
  let backend: Server | undefined;
  const sockets: Socket[] = [];
  after(async () => {
    for (const s of sockets) s.destroy();
    await sluice?.stop();
    backend?.close();
  });

  test('200 once listening, 503 from SIGTERM while the drain lasts', async () => {
    const silent = await startSilentBackend(sockets);
    backend = silent.server;
    sluice = await startSluice(simpleConfig([silent.url], 'shutdown:\n  gracePeriod: 4s\n'), { workers: 2 });
    const ready = await get(`${sluice.adminUrl}/ready`);
    assert.equal(ready.status, 200, ready.text);
    assert.deepEqual(JSON.parse(ready.text), { status: 'ready', reason: 'ready', workersListening: 2, workers: 2 });

    // A client whose backend never closes: the drain waits for that backend's close.
    const stubborn = netConnect(sluice.port, '127.0.0.1');
    sockets.push(stubborn);
    let head = '';
    stubborn.setEncoding('latin1');
    stubborn.on('data', (d: string) => (head += d));
    stubborn.on('error', () => undefined);
    stubborn.write(upgradeRequest('/'));
    await waitFor('the upgrade of the stubborn client', () => head.startsWith('HTTP/1.1 101'), () => JSON.stringify(head));

    sluice.child.kill('SIGTERM');
    let answer = await get(`${sluice.adminUrl}/ready`);
    for (let i = 0; i < 40 && answer.status !== 503; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      answer = await get(`${sluice.adminUrl}/ready`);
    }
    assert.equal(answer.status, 503, answer.text);
    assert.equal(JSON.parse(answer.text).reason, 'draining');
    assert.equal(sluice.child.exitCode, null, 'still draining');
    // Liveness holds during the drain: the process is healthy, only not taking traffic.
    assert.equal((await get(`${sluice.adminUrl}/health`)).status, 200);
    assert.equal(await sluice.stop(), 0);
  });
});
