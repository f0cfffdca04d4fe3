/**
 * The access log: one JSON line per closed WebSocket connection in accessLog.filePath, written by the
 * primary from batches the workers send (two workers here), with the client, route, backend, duration,
 * messages and bytes each way, the close code and which side closed.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { WebSocket } from 'ws';
import { simpleConfig, startBackend, startSluice, type SluiceProcess, type TestBackend } from './helpers/sluice.js';
import { connect, closed, terminateAll } from './helpers/clients.js';
import { waitFor } from './helpers/wait.js';

interface AccessLine {
  readonly time: string;
  readonly kind: string;
  readonly ClientHost: string;
  readonly EntryPointName: string;
  readonly RouterName: string;
  readonly ServiceName: string;
  readonly ServiceURL: string;
  readonly Duration: number;
  readonly DurationMs: number;
  readonly ClientToBackendMessages: number;
  readonly ClientToBackendBytes: number;
  readonly BackendToClientMessages: number;
  readonly BackendToClientBytes: number;
  readonly CloseCode: number;
  readonly ClosedBy: string;
  readonly worker: number;
}

describe('access log', () => {
  let sluice: SluiceProcess | undefined;
  let backend: TestBackend | undefined;
  const clients: WebSocket[] = [];
  after(async () => {
    terminateAll(clients);
    await sluice?.stop();
    await backend?.close();
  });

  test('one JSON line per closed connection, with who closed and the traffic each way', async () => {
    backend = await startBackend((ws) =>
      ws.on('message', (data) => (data.toString() === 'close-me' ? ws.close(4002, 'bye') : ws.send(data))),
    );
    sluice = await startSluice(simpleConfig([backend.url], 'accessLog:\n  filePath: "{DIR}/access.log"\n  format: json\n'), { workers: 2 });
    const file = path.join(path.dirname(sluice.configFile), 'access.log');

    // Client closes with 1000 after two echoed messages of 5 bytes.
    const first = await connect(`${sluice.url}/a?x=1`);
    clients.push(first);
    const echoed = new Promise<void>((resolve) => {
      let n = 0;
      first.on('message', () => ++n === 2 && resolve());
    });
    first.send('hello');
    first.send('world');
    await echoed;
    first.close(1000);
    await closed(first);
    // The backend closes with 4002 after one message of 8 bytes.
    const second = await connect(`${sluice.url}/b`);
    clients.push(second);
    second.send('close-me');
    assert.equal((await closed(second)).code, 4002);

    const lines = (): AccessLine[] =>
      existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as AccessLine) : [];
    await waitFor('two access-log lines', () => lines().length === 2, () => JSON.stringify(lines()), { timeoutMs: 5000, intervalMs: 50 });
    const byClose = lines().sort((a, b) => a.CloseCode - b.CloseCode);
    const common = {
      kind: 'websocket',
      ClientHost: '127.0.0.1',
      EntryPointName: 'web',
      RouterName: 'all',
      ServiceName: 'pool',
      ServiceURL: backend.url,
    };
    const [byClient, byBackend] = byClose as [AccessLine, AccessLine];
    assert.deepEqual(pick(byClient), {
      ...common,
      ClientToBackendMessages: 2,
      ClientToBackendBytes: 10,
      BackendToClientMessages: 2,
      BackendToClientBytes: 10,
      CloseCode: 1000,
      ClosedBy: 'client',
    });
    assert.deepEqual(pick(byBackend), {
      ...common,
      ClientToBackendMessages: 1,
      ClientToBackendBytes: 8,
      BackendToClientMessages: 0,
      BackendToClientBytes: 0,
      CloseCode: 4002,
      ClosedBy: 'backend',
    });
    for (const line of byClose) {
      assert.ok(line.DurationMs >= 0 && line.DurationMs < 5000, `duration ${line.DurationMs} ms`);
      assert.equal(line.Duration, line.DurationMs * 1e6);
      assert.ok(Math.abs(Date.parse(line.time) - Date.now()) < 10_000, `time ${line.time}`);
      assert.ok(line.worker === 0 || line.worker === 1);
    }
  });
});

function pick(line: AccessLine): Omit<AccessLine, 'time' | 'Duration' | 'DurationMs' | 'worker'> {
  const { time: _time, Duration: _duration, DurationMs: _ms, worker: _worker, ...rest } = line;
  return rest;
}
