/**
 * The process and thread lifecycle: a crashed worker is restarted while the other keeps serving and
 * the shared counts give back the dead worker's share; SIGTERM closes clients with 1001 and exits 0;
 * a port already in use ends `sluice run` with exit code 1 and a message naming the entry point.
 */
import assert from 'node:assert/strict';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { WebSocket } from 'ws';
import { accepts, runSluiceCommand, tempFiles, type CommandResult } from './helpers/cli.js';
import { closed, connect, roundTrip, terminateAll, tryUpgrade, type CloseEvent } from './helpers/clients.js';
import { backendIndexes, countsAgree, describeCounts, startInProcess, workerHolds, type InProcessSluice } from './helpers/in-process.js';
import { freePort, simpleConfig, startBackend, startSluice, type SluiceProcess, type TestBackend } from './helpers/sluice.js';
import { waitFor } from './helpers/wait.js';
import { WORKER_YOUNG_GENERATION_MB, workerResourceLimits } from '../src/primary/supervisor.js';

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

describe('a worker that crashes again and again', () => {
  let backend: TestBackend | undefined;
  let sluice: InProcessSluice | undefined;
  const clients: WebSocket[] = [];

  after(async () => {
    terminateAll(clients);
    await sluice?.stop();
    await backend?.close();
  });

  test('is restarted every time and serves after each restart', async () => {
    backend = await startBackend();
    sluice = await startInProcess(simpleConfig([backend.url]), 1);
    const { supervisor } = sluice;
    for (let crash = 1; crash <= 3; crash++) {
      supervisor.injectFault(0, 'throw');
      await waitFor(`crash ${crash} to be seen`, () => supervisor.listeningCount === 0);
      await waitFor(`restart ${crash}`, () => supervisor.listeningCount === 1, undefined, { timeoutMs: 5000 });
      const ws = await connect(sluice.url);
      clients.push(ws);
      assert.equal(await roundTrip(ws, `after crash ${crash}`), `after crash ${crash}`);
    }
  });
});

/** A backend that accepts TCP and never answers, so every upgrade through Sluice stays in flight. */
interface SilentBackend {
  readonly url: string;
  readonly sockets: Socket[];
  closedCount(): number;
  close(): Promise<void>;
}

async function startSilentBackend(): Promise<SilentBackend> {
  const sockets: Socket[] = [];
  let closedCount = 0;
  const server = createServer((socket) => {
    sockets.push(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => closedCount++);
    // Read (and drop) the upgrade request: a socket that is never read never sees the peer's FIN.
    socket.resume();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}`,
    sockets,
    closedCount: () => closedCount,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

describe('a worker that crashes with upgrades in flight', () => {
  // Each test starts its own pair; every one is stopped, or its restarted worker keeps the process alive.
  const started: { sluice?: InProcessSluice; silent: SilentBackend }[] = [];

  after(async () => {
    for (const { sluice, silent } of started) {
      await sluice?.stop();
      await silent.close();
    }
  });

  /** Three upgrades waiting on the silent backend, then a crash; resolves once the worker has exited. */
  async function crashMidUpgrade(): Promise<{ sluice: InProcessSluice; silent: SilentBackend; outcomes: Promise<string[]> }> {
    const pair: (typeof started)[number] = { silent: await startSilentBackend() };
    started.push(pair);
    const silent = pair.silent;
    const sluice = (pair.sluice = await startInProcess(simpleConfig([silent.url]), 1));
    const url = sluice.url;
    const outcomes = Promise.all(
      [0, 1, 2].map(() =>
        tryUpgrade(url, {}, 5000).then(
          (outcome) => (outcome.kind === 'open' ? 'open' : String(outcome.status)),
          (error: Error) => error.message,
        ),
      ),
    );
    await waitFor('the upgrades to reach the backend', () => silent.sockets.length === 3);
    assert.equal(Atomics.load(sluice.shared.backendActive, 0), 3, 'upgrades in flight count on their backend');
    sluice.supervisor.injectFault(0, 'throw');
    await waitFor('the worker to exit', () => sluice.supervisor.listeningCount === 0);
    return { sluice, silent, outcomes };
  }

  test('gives their counts back and does not leave the clients hanging', async () => {
    const { sluice, outcomes } = await crashMidUpgrade();
    // Whoever gives them back (the dying worker's drain or the supervisor's releaseWorkerSlot), none may stay counted.
    assert.equal(Atomics.load(sluice.shared.backendActive, 0), 0);
    assert.equal(workerHolds(sluice.shared, 0), 0);
    // A refusal or a dropped connection are both fine; waiting forever is not.
    const ended = await within(outcomes, 2000, 'an answer or close for every client');
    assert.equal(ended.filter((outcome) => outcome === 'open').length, 0, ended.join(', '));
  });

  test(
    'closes the backend connections of those upgrades',
    async () => {
      const { silent } = await crashMidUpgrade();
      await waitFor('the backend to see its connections closed', () => silent.closedCount() === 3, () => `${silent.closedCount()} of 3 closed`, { timeoutMs: 2000 });
    },
  );
});

for (const signal of ['SIGTERM', 'SIGINT'] as const) describe(signal, () => {
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

    const exited = new Promise<number | null>((resolve) => sluice!.child.once('exit', (code) => resolve(code)));
    sluice.child.kill(signal);
    const exitCode = await within(exited, 8000, `exit after ${signal}`);
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

describe('an entry point that cannot listen', () => {
  let squatter: Server | undefined;
  let squatted = 0;
  let files: ReturnType<typeof tempFiles> | undefined;

  before(async () => {
    squatted = await freePort();
    squatter = createServer();
    await new Promise<void>((resolve) => squatter!.listen(squatted, '127.0.0.1', () => resolve()));
  });

  after(async () => {
    files?.remove();
    await new Promise<void>((resolve) => (squatter === undefined ? resolve() : squatter.close(() => resolve())));
  });

  /** `sluice run --workers 2` with `config` ({PORT} = the port in use). */
  async function runWith(config: string): Promise<CommandResult> {
    files?.remove();
    files = tempFiles({ 'sluice.yaml': config.replaceAll('{PORT}', String(squatted)) });
    return runSluiceCommand(['run', '--config', files.file('sluice.yaml'), '--workers', '2']);
  }

  // Whatever the log format (text or JSON lines), the message itself must be there as written. Sluice
  // checks every entry point's address before it starts a worker (takeover.ts), so a port in use is
  // refused before anything listens.
  const inUse = (): RegExp => new RegExp(`entry point 'web' \\(127\\.0\\.0\\.1:${squatted}\\): address already in use \\(another Sluice\\? start with --takeover`);

  test('a port in use ends sluice run with exit code 1, naming the entry point and the address', async () => {
    const result = await runWith(simpleConfig(['ws://127.0.0.1:9']));
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, inUse());
    assert.doesNotMatch(result.stderr, /sluice listening/);
  });

  test(
    'says only that, without a worker stack trace',
    async () => {
      const result = await runWith(simpleConfig(['ws://127.0.0.1:9']));
      assert.equal(result.code, 1);
      assert.doesNotMatch(result.stderr, /ReferenceError|\n\s+at /);
    },
  );

  test(
    'the second of two entry points in use: still exit code 1, not an abort',
    async () => {
      // 'first' is free and 'web' is not: nothing may be left listening on 'first' either.
      const first = `entryPoints:\n  first:\n    address: "127.0.0.1:${await freePort()}"\n`;
      const config = simpleConfig(['ws://127.0.0.1:9']).replace('entryPoints:\n', first);
      const result = await runWith(config);
      assert.equal(result.code, 1, result.stderr);
      assert.match(result.stderr, inUse());
    },
  );
});

describe("a worker's heap", () => {
  test('gets a bounded young generation, unless the operator sizes it with --max-semi-space-size', () => {
    const bounded = { maxYoungGenerationSizeMb: WORKER_YOUNG_GENERATION_MB };
    assert.deepEqual(workerResourceLimits([], ''), bounded);
    assert.deepEqual(workerResourceLimits(['--enable-source-maps'], '--max-old-space-size=2048'), bounded);
    assert.deepEqual(workerResourceLimits(['--max-semi-space-size=8'], ''), {});
    assert.deepEqual(workerResourceLimits([], '--enable-source-maps --max_semi_space_size=32'), {});
  });
});
