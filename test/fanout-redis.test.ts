/**
 * Fan-out across replicas: two Sluice processes share publications through a real redis-server (Debian's
 * package, started here on a free port), so a publish to either reaches the subscribers of both, and so
 * does a Pushpin publish body PUBLISHed to Redis directly. Redis restarted mid-stream: each replica keeps
 * delivering its own publications, counts those it could not forward, and delivers the others' again once
 * the link is back. Skipped with a message when redis-server is missing (.ci/run installs it).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { Redis } from 'ioredis';
import { freePort, startSluice, type SluiceProcess } from './helpers/sluice.js';
import { get, parsePrometheus, sampleValue } from './helpers/admin.js';
import { fanoutConfig, gripPublisher, listen, publishText, startGripBackend, type GripBackend, type Listener } from './helpers/grip.js';
import { waitFor } from './helpers/wait.js';

const REDIS_SERVER = '/usr/bin/redis-server';
const CHANNEL = 'sluice:fanout';

/** A throwaway redis-server on `port` (no persistence); resolves once it answers. */
async function startRedis(port: number): Promise<ChildProcess> {
  const child = spawn(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const probe = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => 50, maxRetriesPerRequest: 0 });
  probe.on('error', () => undefined);
  void probe.connect().catch(() => undefined);
  try {
    await waitFor('redis-server to answer', () => probe.status === 'ready', undefined, { timeoutMs: 5000 });
  } finally {
    probe.disconnect();
  }
  return child;
}

function stopRedis(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

async function metric(sluice: SluiceProcess, name: string, labels: Record<string, string> = {}): Promise<number> {
  return sampleValue(parsePrometheus((await get(`${sluice.adminUrl}/metrics`)).text), name, labels);
}

describe('fan-out between two replicas through Redis', { skip: existsSync(REDIS_SERVER) ? false : `${REDIS_SERVER} is not installed (apt-get install redis-server)` }, () => {
  let redisPort: number;
  let redis: ChildProcess;
  let watcher: Redis;
  let backend: GripBackend;
  const sluices: SluiceProcess[] = [];
  const publishPorts: number[] = [];
  let onA: Listener;
  let onB: Listener;

  /** Both replicas' subscriber links are on the channel. */
  async function bothSubscribed(): Promise<void> {
    let subscribers = 0;
    await waitFor(
      'both replicas to subscribe on Redis',
      () => {
        void watcher.pubsub('NUMSUB', CHANNEL).then((answer) => (subscribers = Number((answer as [string, number])[1])), () => undefined);
        return subscribers === 2;
      },
      () => `${subscribers} subscribers`,
      { timeoutMs: 15_000, intervalMs: 100 },
    );
  }

  /** sluice_fanout_redis_connected of `sluice` reads `value`. */
  async function linkIs(sluice: SluiceProcess, value: number): Promise<void> {
    let seen = -1;
    await waitFor(
      `the Redis link to be ${value === 1 ? 'up' : 'down'}`,
      () => {
        void metric(sluice, 'sluice_fanout_redis_connected').then((v) => (seen = v), () => undefined);
        return seen === value;
      },
      undefined,
      { timeoutMs: 15_000, intervalMs: 100 },
    );
  }

  before(async () => {
    redisPort = await freePort();
    redis = await startRedis(redisPort);
    watcher = new Redis({ port: redisPort, host: '127.0.0.1', retryStrategy: () => 100 });
    watcher.on('error', () => undefined);
    backend = await startGripBackend();
    for (let i = 0; i < 2; i++) {
      publishPorts.push(await freePort());
      sluices.push(await startSluice(fanoutConfig(backend.url, publishPorts[i]!, `  redis:\n    url: "redis://127.0.0.1:${redisPort}"\n`), { workers: 2 }));
    }
    await bothSubscribed();
    onA = await listen(sluices[0]!.url, ['scores']);
    onB = await listen(sluices[1]!.url, ['scores']);
  });

  after(async () => {
    onA?.ws.terminate();
    onB?.ws.terminate();
    for (const sluice of sluices) await sluice.stop();
    await backend?.close();
    watcher?.disconnect();
    if (redis !== undefined) await stopRedis(redis);
  });

  it('delivers a publish to either replica, or to Redis directly, to the subscribers of both', async () => {
    await publishText(gripPublisher(publishPorts[0]!), 'scores', 'via A');
    await publishText(gripPublisher(publishPorts[1]!), 'scores', 'via B');
    await watcher.publish(CHANNEL, JSON.stringify({ items: [{ channel: 'scores', formats: { 'ws-message': { content: 'via Redis' } } }] }));
    for (const client of [onA, onB]) await waitFor('three publications', () => client.received.length === 3, () => client.received.join(' | '));
    assert.deepEqual(onA.received.slice().sort(), ['via A', 'via B', 'via Redis']);
    assert.deepEqual(onB.received.slice().sort(), ['via A', 'via B', 'via Redis']);
    assert.equal(await metric(sluices[0]!, 'sluice_fanout_publishes_total', { source: 'redis' }), 2);
    assert.equal(await metric(sluices[0]!, 'sluice_fanout_redis_connected'), 1);
  });

  it('keeps delivering locally while Redis is down, counts what it could not forward, and resumes', async () => {
    onA.received.length = 0;
    onB.received.length = 0;
    await stopRedis(redis);
    await linkIs(sluices[0]!, 0);
    const publisher = gripPublisher(publishPorts[0]!);
    for (let i = 0; i < 5; i++) await publishText(publisher, 'scores', `down ${i}`);
    await waitFor('local delivery on A', () => onA.received.length === 5);
    assert.equal(await metric(sluices[0]!, 'sluice_fanout_dropped_total', { reason: 'redis_unavailable' }), 5);

    redis = await startRedis(redisPort);
    await bothSubscribed();
    await linkIs(sluices[0]!, 1);
    await publishText(publisher, 'scores', 'back');
    await waitFor('B to get publications from A again', () => onB.received.includes('back'), () => onB.received.join(' | '), { timeoutMs: 10_000 });
    // Redis pub/sub keeps nothing for an absent subscriber: what was published meanwhile never reaches B.
    assert.deepEqual(onB.received, ['back']);
    assert.deepEqual(onA.received, ['down 0', 'down 1', 'down 2', 'down 3', 'down 4', 'back']);
  });
});
