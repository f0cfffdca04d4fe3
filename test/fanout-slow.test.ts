/**
 * Slow subscribers under each fan-out policy: a client that stops reading while 50 MB are published to
 * its channel neither delays the subscriber beside it nor grows Sluice's memory by what it did not read.
 * With `drop` it misses publications (exactly as many as counted) and catches up once it reads again;
 * with `close` it is closed with 1013.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { freePort, startSluice, type SluiceProcess } from './helpers/sluice.js';
import { get, parsePrometheus, sampleValue } from './helpers/admin.js';
import { fanoutConfig, gripPublisher, listen, publishText, startGripBackend, type GripBackend } from './helpers/grip.js';
import { waitFor } from './helpers/wait.js';

const MESSAGES = 200;
const MESSAGE_BYTES = 256 * 1024;
/** What may be in flight to the slow subscriber when it reads again: the kernel's socket buffers on both
 *  ends (a few MiB each on Linux) plus what Sluice held for it, at most 1.5 × slowConsumerBuffer. Without
 *  the policy it would be all 50 MiB. */
const MAX_HELD = 16 * 1024 * 1024;

async function sample(adminUrl: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  return sampleValue(parsePrometheus((await get(`${adminUrl}/metrics`)).text), name, labels);
}

for (const policy of ['drop', 'close'] as const) {
  describe(`fan-out slow subscriber, slowConsumer: ${policy}`, () => {
    let backend: GripBackend;
    let sluice: SluiceProcess;
    let publishPort: number;

    before(async () => {
      backend = await startGripBackend();
      publishPort = await freePort();
      sluice = await startSluice(fanoutConfig(backend.url, publishPort, `  slowConsumer: ${policy}\n  slowConsumerBuffer: 512KiB\n`, 'websocket:\n  clientMaxBuffer: 256MiB\n  upstreamWriteBudget: 256MiB\n'), { workers: 2 });
    });

    after(async () => {
      await sluice?.stop();
      await backend?.close();
    });

    it(policy === 'drop' ? 'drops what the slow one cannot take, counts it, and lets it catch up' : 'closes the slow one with 1013', async () => {
      const fast = await listen(sluice.url, ['feed']);
      const slow = await listen(sluice.url, ['feed']);
      slow.ws.pause(); // stops reading its socket: the kernel buffers fill, then Sluice's
      const publisher = gripPublisher(publishPort);
      const body = 'x'.repeat(MESSAGE_BYTES - 8);
      for (let i = 0; i < MESSAGES; i++) await publishText(publisher, 'feed', `${String(i).padStart(7, '0')}:${body}`);
      await waitFor('the fast subscriber to get everything', () => fast.received.length === MESSAGES, () => `${fast.received.length} of ${MESSAGES}`, { timeoutMs: 30_000 });
      assert.deepEqual(fast.received.map((m) => Number(m.slice(0, 7))), Array.from({ length: MESSAGES }, (_, i) => i));

      if (policy === 'drop') {
        slow.ws.resume();
        // Once it has drained to half its allowance it is subscribed again: keep publishing until it gets one.
        let tail = 0;
        await waitFor(
          'the slow subscriber to get publications again',
          () => {
            if (slow.received.some((m) => m.startsWith('tail'))) return true;
            void publishText(publisher, 'feed', `tail ${tail++}`);
            return false;
          },
          undefined,
          { timeoutMs: 20_000, intervalMs: 200 },
        );
        const missed = await sample(sluice.adminUrl, 'sluice_fanout_dropped_total', { reason: 'slow_consumer' });
        assert.ok(missed > 0, 'some publications were dropped for the slow subscriber');
        const firstTail = slow.received.findIndex((m) => m.startsWith('tail'));
        assert.ok(firstTail * MESSAGE_BYTES < MAX_HELD, `${firstTail} publications (${(firstTail * MESSAGE_BYTES) / 1048576} MiB) were held for the slow subscriber`);
        // Every publication up to the first tail it got was either received or counted as missed, exactly.
        const published = MESSAGES + Number(slow.received[firstTail]!.slice(5)) + 1;
        assert.equal(firstTail + 1 + missed, published, `received ${firstTail + 1}, missed ${missed}, published ${published}`);
        assert.equal(await sample(sluice.adminUrl, 'sluice_fanout_dropped_total', { reason: 'slow_consumer_closed' }), 0);
      } else {
        assert.equal(await sample(sluice.adminUrl, 'sluice_fanout_dropped_total', { reason: 'slow_consumer_closed' }), 1);
        slow.ws.resume();
        assert.equal((await slow.closed).code, 1013);
        assert.ok(slow.received.length * MESSAGE_BYTES < MAX_HELD, `${slow.received.length} publications were held for the slow subscriber before its close`);
        assert.equal(await sample(sluice.adminUrl, 'sluice_fanout_subscriptions'), 1);
      }
      fast.ws.close();
    });
  });
}
