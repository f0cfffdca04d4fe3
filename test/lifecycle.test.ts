/**
 * The process and thread lifecycle: a crashed worker is restarted while the other keeps serving and
 * the shared counts give back the dead worker's share; SIGTERM closes clients with 1001 and exits 0;
 * a port already in use ends `sluice run` with exit code 1 and a message naming the entry point.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { after, describe, test } from 'node:test';
import type { WebSocket } from 'ws';
import { accepts, runSluiceCommand, tempFiles } from './helpers/cli.js';
import { closed, connect, roundTrip, terminateAll, type CloseEvent } from './helpers/clients.js';
import { backendIndexes, countsAgree, describeCounts, startInProcess, workerHolds, type InProcessSluice } from './helpers/in-process.js';
import { freePort, simpleConfig, startBackend, startSluice, type SluiceProcess, type TestBackend } from './helpers/sluice.js';
import { waitFor } from './helpers/wait.js';

const localAddress = (i: number): string => `127.0.0.${2 + (i % 8)}`;

/** Resolve with `promise`, or reject after `ms` saying what did not happen. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

describe('a worker that crashes', () => {
  let backends: TestBackend[] = [];
  let sluice: InProcessSluice | undefined;
  const clients: WebSocket[] = [];

  after(async () => {
    terminateAll(clients);
    await sluice?.stop();
    await Promise.all(backends.map((b) => b.close()));
  });

  test('is restarted while the other worker keeps serving, and its connections are given back', async () => {
    backends = await Promise.all([startBackend(), startBackend()]);
    sluice = await startInProcess(simpleConfig(backends.map((b) => b.url)), 2);
    const { shared, supervisor } = sluice;
    const indexes = backendIndexes(sluice.snapshot, backends);
    const openClients = (): WebSocket[] => clients.filter((ws) => ws.readyState === ws.OPEN);
    const settled = (step: string): Promise<void> =>
      waitFor(
        `counts to settle ${step}`,
        () => backends.reduce((sum, b) => sum + b.sockets.size, 0) === openClients().length && countsAgree(shared, indexes, backends),
        () => `${describeCounts(shared, indexes, backends)} clients ${openClients().length}`,
      );

    // Enough connections that each worker holds at least three.
    for (let i = 0; i < 60 && (workerHolds(shared, 0) < 3 || workerHolds(shared, 1) < 3); i++) {
      clients.push(await connect(sluice.url, { localAddress: localAddress(i) }));
    }
    await settled('before the crash');
    const onCrashed = workerHolds(shared, 0);
    const onSurvivor = workerHolds(shared, 1);
    assert.ok(onCrashed >= 3 && onSurvivor >= 3, describeCounts(shared, indexes, backends));
    const closes = new Map<WebSocket, CloseEvent>();
    for (const ws of clients) void closed(ws).then((event) => closes.set(ws, event));

    supervisor.injectFault(0, 'throw');

    await waitFor('the crashed worker\'s clients to be closed', () => closes.size === onCrashed, () => `${closes.size} closed of ${onCrashed}`);
    const survivors = openClients();
    assert.equal(survivors.length, onSurvivor, 'only the crashed worker\'s clients may close');
    assert.deepEqual(await Promise.all(survivors.map((ws, i) => roundTrip(ws, `still here ${i}`))), survivors.map((_, i) => `still here ${i}`));
    await settled('after the crash');
    assert.equal(workerHolds(shared, 0), 0, 'the crashed worker\'s slab must be empty');

    // The slot stops counting as listening when the thread has exited, and again once its
    // replacement listens (at least the 100 ms backoff later, so the poll cannot miss the dip).
    await waitFor('the supervisor to see the crashed worker exit', () => supervisor.listeningCount === 1);
    await waitFor('the crashed worker to be restarted', () => supervisor.listeningCount === 2, () => `${supervisor.listeningCount} listening`);
    // New connections succeed, and the restarted worker takes its share of them again.
    for (let i = 0; i < 60 && workerHolds(shared, 0) < 2; i++) {
      const ws = await connect(sluice.url, { localAddress: localAddress(i) });
      clients.push(ws);
      assert.equal(await roundTrip(ws, `new ${i}`), `new ${i}`);
    }
    assert.ok(workerHolds(shared, 0) >= 2, `the restarted worker takes no connections: ${describeCounts(shared, indexes, backends)}`);
    await settled('after the restart');
    assert.equal(survivors.filter((ws) => ws.readyState !== ws.OPEN).length, 0, 'a survivor was closed by the restart');
  });
});

describe('SIGTERM', () => {
  let backend: TestBackend | undefined;
  let sluice: SluiceProcess | undefined;
  const clients: WebSocket[] = [];

  after(async () => {
    terminateAll(clients);
    await sluice?.stop();
    await backend?.close();
  });

  test('closes clients with 1001, closes their backend connections, exits 0 and frees the port', async () => {
    const backendCloses: number[] = [];
    backend = await startBackend((ws) => {
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
      ws.on('close', (code) => backendCloses.push(code));
    });
    sluice = await startSluice(simpleConfig([backend.url], 'shutdown:\n  gracePeriod: 5s\n'), { workers: 2 });
    for (let i = 0; i < 6; i++) {
      const ws = await connect(sluice.url, { localAddress: localAddress(i) });
      clients.push(ws);
      assert.equal(await roundTrip(ws, `before ${i}`), `before ${i}`);
    }
    const clientCloses = Promise.all(clients.map((ws) => closed(ws)));

    const exitCode = await within(sluice.stop(), 8000, 'exit after SIGTERM');
    assert.equal(exitCode, 0, sluice.stderr());
    const codes = await within(clientCloses, 2000, 'every client close');
    assert.deepEqual(codes.map((c) => c.code), clients.map(() => 1001));
    await waitFor('the backend to see every close', () => backend!.sockets.size === 0 && backendCloses.length === clients.length, () =>
      `${backend!.sockets.size} open, closes ${backendCloses.join(',')}`,
    );
    assert.deepEqual(backendCloses, clients.map(() => 1001));
    assert.equal(await accepts(sluice.port), false, 'the port still accepts connections');
  });
});

describe('an entry point whose port is in use', () => {
  let squatter: Server | undefined;
  let files: ReturnType<typeof tempFiles> | undefined;

  after(async () => {
    files?.remove();
    await new Promise<void>((resolve) => (squatter === undefined ? resolve() : squatter.close(() => resolve())));
  });

  test('ends sluice run with exit code 1, naming the entry point and the address', async () => {
    const port = await freePort();
    squatter = createServer();
    await new Promise<void>((resolve) => squatter!.listen(port, '127.0.0.1', () => resolve()));
    files = tempFiles({ 'sluice.yaml': simpleConfig(['ws://127.0.0.1:9']).replace('{PORT}', String(port)) });
    const result = await runSluiceCommand(['run', '--config', files.file('sluice.yaml'), '--workers', '2']);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, new RegExp(`cannot listen on web \\(127\\.0\\.0\\.1:${port}\\)`));
    assert.doesNotMatch(result.stderr, /sluice listening/);
  });
});
