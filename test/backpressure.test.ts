/**
 * Backpressure through a real Sluice process with one worker, so the slow connection and the
 * bystander share a thread: a client that stops reading while its backend floods 200 MiB stalls the
 * flood at the backend (Sluice stops reading it) with Sluice's memory bounded, another client's round
 * trips stay fast meanwhile, and every byte arrives in order once the client reads again; a backend
 * that stops reading gets its flooding client closed with 1013 once upstreamWriteBudget is passed.
 * The last test stops the shared Sluice while a backend still owes it a close reply: the drain must
 * force that socket at the end of shutdown.gracePeriod instead of waiting for its own close timer.
 */
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';
import { simpleConfig, startBackend, startSluice, type SluiceProcess, type TestBackend } from './helpers/sluice.js';
import { closeAllPeers, connect, until, type Peer } from './helpers/peer.js';

const MiB = 1024 * 1024;
const FLOOD_MESSAGES = 200;

/** Resident memory of a process, in bytes (VmRSS of /proc/<pid>/status). */
function rssOf(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(match, `no VmRSS for pid ${pid}`);
  return Number(match[1]) * 1024;
}

function socketOf(ws: WebSocket): Socket {
  return (ws as unknown as { _socket: Socket })._socket;
}

/** Message `i` of the flood: 1 MiB whose first 4 bytes are `i` and whose other bytes are i % 251. */
function floodMessage(i: number): Buffer {
  const message = Buffer.alloc(MiB, i % 251);
  message.writeUInt32BE(i, 0);
  return message;
}

/**
 * Sends the 200 flood messages as fast as the connection takes them, keeping at most 4 MiB queued
 * in `ws`, so that `sent` says how much of the flood the other side has taken in so far.
 */
class Flood {
  sent = 0;
  constructor(private readonly ws: WebSocket) {
    socketOf(ws).on('drain', () => this.pump());
    this.pump();
  }

  private pump(): void {
    while (this.sent < FLOOD_MESSAGES && this.ws.readyState === this.ws.OPEN && this.ws.bufferedAmount < 4 * MiB) {
      this.ws.send(floodMessage(this.sent), { binary: true });
      this.sent++;
    }
  }
}

describe('backpressure', () => {
  let backend: TestBackend | undefined;
  let sluice: SluiceProcess | undefined;
  const floods = new Map<string, Flood>();

  before(async () => {
    backend = await startBackend((ws: WebSocket, req: IncomingMessage) => {
      if (req.url!.startsWith('/flood')) floods.set(req.url!, new Flood(ws));
      else if (req.url!.startsWith('/stall')) {
        // A backend that never reads: nothing it was sent is taken off its socket.
        socketOf(ws).pause();
      } else ws.on('message', (data, isBinary) => ws.send(data as Buffer, { binary: isBinary }));
    });
    sluice = await startSluice(
      simpleConfig(
        [backend.url],
        `websocket:
  maxMessageSize: 1MiB
  upstreamWriteBudget: 2MiB
shutdown:
  gracePeriod: 1s
`,
      ),
      { workers: 1, timeoutMs: 20_000 },
    );
  });
  afterEach(closeAllPeers);
  after(async () => {
    closeAllPeers();
    await sluice?.stop();
    await backend?.close();
  });

  /** Median of `count` sequential round trips of a small message, in ms. */
  async function medianRoundTrip(client: Peer, count: number): Promise<number> {
    const times: number[] = [];
    for (let i = 0; i < count; i++) {
      const started = process.hrtime.bigint();
      client.ws.send(`ping ${i}`);
      const got = await client.next(5000);
      times.push(Number(process.hrtime.bigint() - started) / 1e6);
      assert.equal(got.data.toString(), `ping ${i}`);
    }
    times.sort((a, b) => a - b);
    return times[Math.floor(times.length / 2)]!;
  }

  test('a client that stops reading stalls its backend flood with memory bounded; others stay fast; nothing is lost', async (t) => {
    const bystander = await connect(`${sluice!.url}/echo/bystander`);
    await medianRoundTrip(bystander, 10); // warm up
    const rssBefore = rssOf(sluice!.child.pid!);

    const slow = await connect(`${sluice!.url}/flood/1`);
    socketOf(slow.ws).pause();
    await until(() => floods.has('/flood/1'), 2000, 'the flood did not start');
    const flood = floods.get('/flood/1')!;

    // Let the flood run into the stopped client until it stalls: no progress for 500 ms.
    let last = -1;
    let peakRss = rssBefore;
    for (let still = 0; still < 5; ) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      peakRss = Math.max(peakRss, rssOf(sluice!.child.pid!));
      still = flood.sent === last ? still + 1 : 0;
      last = flood.sent;
      assert.ok(flood.sent < FLOOD_MESSAGES, 'the whole 200 MiB flood was taken from the backend while the client read nothing');
    }
    assert.ok(flood.sent < 48, `the backend got ${flood.sent} MiB of the flood out while the client read nothing`);
    assert.equal(slow.closeInfo, null, 'the slow client is kept, not closed');

    // Head-of-line blocking check, not a benchmark: the same worker still serves others at once.
    const median = await medianRoundTrip(bystander, 50);
    assert.ok(median < 50, `median round trip ${median.toFixed(1)} ms while another client is stalled`);
    peakRss = Math.max(peakRss, rssOf(sluice!.child.pid!));
    const growth = (peakRss - rssBefore) / MiB;
    t.diagnostic(`stalled after ${flood.sent} MiB; bystander median ${median.toFixed(2)} ms; RSS growth ${growth.toFixed(1)} MiB`);
    assert.ok(growth < 100, `Sluice's RSS grew by ${growth.toFixed(0)} MiB while holding a stalled 200 MiB flood`);

    // The client reads again: all 200 messages arrive, whole and in order.
    socketOf(slow.ws).resume();
    const got = await slow.take(FLOOD_MESSAGES, 60_000);
    for (let i = 0; i < FLOOD_MESSAGES; i++) {
      const data = got[i]!.data;
      if (data.length !== MiB || data.readUInt32BE(0) !== i || data[MiB - 1] !== i % 251) {
        assert.fail(`flood message ${i}: ${data.length} bytes starting ${data.subarray(0, 8).toString('hex')}`);
      }
    }
    assert.equal(flood.sent, FLOOD_MESSAGES);
    const afterRss = rssOf(sluice!.child.pid!);
    assert.ok((afterRss - rssBefore) / MiB < 150, `Sluice's RSS grew by ${((afterRss - rssBefore) / MiB).toFixed(0)} MiB after carrying 200 MiB`);
  });

  test('a backend that stops reading: its flooding client is closed with 1013; others keep flowing', async (t) => {
    const bystander = await connect(`${sluice!.url}/echo/bystander2`);
    const rssBefore = rssOf(sluice!.child.pid!);
    const client = await connect(`${sluice!.url}/stall/1`);
    const chunk = Buffer.alloc(64 * 1024, 7);
    let sentBytes = 0;
    // Flood at the pace the client's socket takes it, up to 200 MiB.
    while (client.closeInfo === null && sentBytes < 200 * MiB) {
      if (client.ws.bufferedAmount > MiB) {
        await new Promise((resolve) => setTimeout(resolve, 1));
        continue;
      }
      client.ws.send(chunk, { binary: true });
      sentBytes += chunk.length;
      if (sentBytes % (4 * MiB) === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    const closed = await client.waitClose(5000);
    assert.equal(closed.code, 1013, `closed with ${closed.code} '${closed.reason}' after ${sentBytes / MiB} MiB`);
    assert.ok(sentBytes < 100 * MiB, `the client could push ${sentBytes / MiB} MiB into a backend that reads nothing`);
    const growth = (rssOf(sluice!.child.pid!) - rssBefore) / MiB;
    t.diagnostic(`closed with 1013 after ${sentBytes / MiB} MiB; RSS growth ${growth.toFixed(1)} MiB`);
    assert.ok(growth < 100, `Sluice's RSS grew by ${growth.toFixed(0)} MiB`);
    await bystander.send('still flowing');
    assert.equal((await bystander.next()).data.toString(), 'still flowing');
  });

  // Last: it stops the shared Sluice.
  test(
    'SIGTERM exits within the grace period although a backend never answers its close',
    async () => {
      const client = await connect(`${sluice!.url}/stall/2`);
      client.ws.close(1000);
      await client.waitClose(2000);
      // Sluice now waits for the stalled backend (and the one the 1013 test left) to answer its close frame.
      const started = Date.now();
      const code = await sluice!.stop();
      const elapsed = Date.now() - started;
      assert.equal(code, 0);
      assert.ok(elapsed < 3000, `stopping took ${elapsed} ms with shutdown.gracePeriod 1s`);
    },
  );
});
