/**
 * Fan-out as a user sees it: a GRIP backend (written with @fanoutio/grip's control-message helpers)
 * subscribes its clients to channels, a publisher (@fanoutio/grip's Publisher, JWT on) publishes to
 * Sluice's publish listener, and every subscriber gets every message of its channels exactly once, in
 * order, from uWebSockets.js pub/sub on every worker. Real Sluice (processes or in-process worker
 * threads), real sockets on loopback.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { WebSocket } from 'ws';
import { FANOUT_FIELDS, FanoutCounter } from '../src/shared/fanout-wire.js';
import { formatExtension, parseExtensions } from '../src/worker/ws-extensions.js';
import { freePort, startSluice, type SluiceProcess } from './helpers/sluice.js';
import { startInProcess, type InProcessSluice } from './helpers/in-process.js';
import { get, parsePrometheus, sampleValue } from './helpers/admin.js';
import { authHeader, fanoutConfig, gripPublisher, listen, publishText, startGripBackend, type GripBackend, type Listener } from './helpers/grip.js';
import { waitFor } from './helpers/wait.js';

/** POST to the publish listener; resolves with status, headers and body. */
function post(port: number, body: string, headers: Record<string, string> = {}, path = '/publish/'): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'POST', headers: { 'content-type': 'application/json', ...headers } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text, headers: res.headers }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function metrics(adminUrl: string): Promise<ReturnType<typeof parsePrometheus>> {
  return parsePrometheus((await get(`${adminUrl}/metrics`)).text);
}

describe('fan-out: 2,000 subscribers on two workers', () => {
  let backend: GripBackend;
  let sluice: InProcessSluice;
  let publishPort: number;
  const clients: Listener[] = [];

  before(async () => {
    backend = await startGripBackend();
    publishPort = await freePort();
    sluice = await startInProcess(fanoutConfig(backend.url, publishPort), 2);
  });

  after(async () => {
    for (const c of clients) c.ws.terminate();
    await sluice?.stop();
    await backend?.close();
  });

  it('delivers every message of a client\'s channels exactly once and in order', async () => {
    const rooms = ['room-0', 'room-1', 'room-2', 'room-3'];
    for (let batch = 0; batch < 20; batch++) {
      const opened = await Promise.all(
        Array.from({ length: 100 }, (_, j) => {
          const i = batch * 100 + j;
          return listen(sluice.url, [rooms[i % rooms.length]!, 'everyone'], { localAddress: `127.0.0.${2 + (i % 50)}` });
        }),
      );
      clients.push(...opened);
    }
    // Both workers hold subscribers (the kernel spread the connections over them).
    const perWorker = [0, 1].map((w) => sluice.shared.workerFanout[w * FANOUT_FIELDS + FanoutCounter.Subscriptions]!);
    assert.equal(perWorker[0]! + perWorker[1]!, 4000);
    assert.ok(perWorker.every((n) => n > 0), `subscriptions per worker: ${perWorker.join(', ')}`);

    const publisher = gripPublisher(publishPort);
    const perRoom = 25;
    for (let seq = 0; seq < perRoom; seq++) {
      for (const room of rooms) await publishText(publisher, room, `${room}#${seq}`);
      if (seq % 5 === 0) await publishText(publisher, 'everyone', `everyone#${seq / 5}`);
    }
    // Published last: once a client has it, anything published before has reached it (one stream per client).
    await publishText(publisher, 'everyone', 'end');
    await waitFor('every client to get the end marker', () => clients.every((c) => c.received.at(-1) === 'end'), () => `${clients.filter((c) => c.received.at(-1) === 'end').length} of ${clients.length}`, { timeoutMs: 20_000 });

    clients.forEach((c, i) => {
      const room = rooms[i % rooms.length]!;
      const expected: string[] = [];
      for (let seq = 0; seq < perRoom; seq++) {
        expected.push(`${room}#${seq}`);
        if (seq % 5 === 0) expected.push(`everyone#${seq / 5}`);
      }
      expected.push('end');
      assert.deepEqual(c.received, expected, `client ${i}`);
    });

    const samples = await metrics(sluice.adminUrl);
    const perClient = perRoom + perRoom / 5 + 1;
    assert.equal(sampleValue(samples, 'sluice_fanout_deliveries_total'), clients.length * perClient);
    assert.equal(sampleValue(samples, 'sluice_fanout_publishes_total', { source: 'http' }), rooms.length * perRoom + perRoom / 5 + 1);
    assert.equal(sampleValue(samples, 'sluice_fanout_subscriptions'), 4000);
    await waitFor('the channel counts to reach the primary', () => sluice.primary.fanout!.totals().channels === 5, undefined, { timeoutMs: 3000 });
    const doc = JSON.parse((await get(`${sluice.adminUrl}/api/fanout`)).text) as { busiestChannels: { channel: string; subscribers: number }[]; channels: number };
    assert.deepEqual(doc.busiestChannels[0], { channel: 'everyone', subscribers: 2000 });
    assert.deepEqual(doc.busiestChannels.slice(1).map((c) => c.subscribers), [500, 500, 500, 500]);
  });
});

describe('fan-out: the grip extension and its message prefix', () => {
  it('passes every message when the backend announces an empty prefix, and a custom one is stripped', async () => {
    for (const [prefix, sent, expected] of [['', 'plain', 'echo plain'], ['x:', 'x:echo', 'echo x:echo']] as const) {
      const backend = await startGripBackend(prefix);
      const publishPort = await freePort();
      const sluice = await startSluice(fanoutConfig(backend.url, publishPort), { workers: 1 });
      try {
        const c = await listen(sluice.url, ['p']);
        c.ws.send(sent);
        await publishText(gripPublisher(publishPort), 'p', 'published');
        await waitFor('the echo and the publication', () => c.received.length === 2, () => c.received.join(' | '));
        assert.deepEqual(c.received.slice().sort(), [expected, 'published'].sort(), `prefix '${prefix}'`);
        c.ws.close();
      } finally {
        await sluice.stop();
        await backend.close();
      }
    }
  });

  it('parses the extension header as RFC 6455 writes it', () => {
    assert.deepEqual(parseExtensions('grip; message-prefix="m:", permessage-deflate; client_max_window_bits'), [
      { name: 'grip', params: [['message-prefix', 'm:']] },
      { name: 'permessage-deflate', params: [['client_max_window_bits', true]] },
    ]);
    assert.deepEqual(parseExtensions('grip; message-prefix=""'), [{ name: 'grip', params: [['message-prefix', '']] }]);
    assert.equal(parseExtensions('grip; message-prefix="unclosed'), null);
    assert.equal(formatExtension({ name: 'grip', params: [['message-prefix', 'a b']] }), 'grip; message-prefix="a b"');
  });
});

describe('fan-out: control messages and the publish API', () => {
  let backend: GripBackend;
  let sluice: SluiceProcess;
  let publishPort: number;

  before(async () => {
    backend = await startGripBackend();
    publishPort = await freePort();
    sluice = await startSluice(fanoutConfig(backend.url, publishPort), { workers: 2 });
  });

  after(async () => {
    await sluice?.stop();
    await backend?.close();
  });

  it('takes the grip extension out of the 101 and the prefix out of messages; drops messages without it', async () => {
    // A `ws` client refuses a 101 with an extension it did not offer: connecting at all shows it was removed.
    const c = await listen(sluice.url, []);
    c.ws.send('raw:no prefix here');
    c.ws.send('hello');
    await waitFor('the echo', () => c.received.length > 0);
    assert.deepEqual(c.received, ['echo hello']);
    c.ws.close();
  });

  it('unsubscribe: the client stops getting the channel', async () => {
    const publisher = gripPublisher(publishPort);
    const c = await listen(sluice.url, ['news', 'probe']);
    await publishText(publisher, 'news', 'first');
    await waitFor('the first message', () => c.received.includes('first'));
    c.ws.send('unsubscribe:news');
    await waitFor('the unsubscribe', () => c.received.includes('unsubscribed news'));
    await publishText(publisher, 'news', 'second');
    await publishText(publisher, 'probe', 'probe');
    await waitFor('the probe', () => c.received.includes('probe'));
    assert.deepEqual(c.received, ['first', 'unsubscribed news', 'probe']);
    c.ws.close();
  });

  it('detach: the backend connection closes, the client stays open and subscribed', async () => {
    const publisher = gripPublisher(publishPort);
    const closedBefore = backend.closedSockets;
    const c = await listen(sluice.url, ['detached']);
    c.ws.send('detach');
    await waitFor('the backend leg to close', () => backend.closedSockets === closedBefore + 1);
    assert.equal(c.ws.readyState, WebSocket.OPEN);
    await publishText(publisher, 'detached', 'still here');
    await waitFor('the publication', () => c.received.includes('still here'));
    c.ws.close();
    assert.equal((await c.closed).code, 1005);
  });

  it('keep-alive: content reaches the client after the idle time', async () => {
    const c = await listen(sluice.url, ['quiet']);
    // From the request, not from when the client saw the backend's answer: that answer can reach the
    // client late on a loaded machine while the keep-alive's clock started when Sluice passed it on.
    const askedAt = Date.now();
    c.ws.send('keepalive:1:ka');
    await waitFor('the keep-alive setting', () => c.received.includes('keepalive set'));
    await waitFor('a keep-alive', () => c.received.includes('ka'), undefined, { timeoutMs: 4000 });
    assert.ok(Date.now() - askedAt >= 1000, `keep-alive came ${Date.now() - askedAt} ms after it was asked for (1 s of idle expected)`);
    c.ws.close();
  });

  it('close: a control message closes the client with its code and reason; a published close closes the channel', async () => {
    const a = await listen(sluice.url, []);
    a.ws.send('close:4001:bye');
    assert.deepEqual(await a.closed, { code: 4001, reason: 'bye' });

    const b = await listen(sluice.url, ['doomed']);
    const other = await listen(sluice.url, ['safe']);
    const body = JSON.stringify({ items: [{ channel: 'doomed', formats: { 'ws-message': { action: 'close', code: 4002, reason: 'channel closed' } } }] });
    const answer = await post(publishPort, body, { authorization: await authHeader() });
    assert.equal(answer.status, 200);
    assert.deepEqual(await b.closed, { code: 4002, reason: 'channel closed' });
    assert.equal(other.ws.readyState, WebSocket.OPEN);
    other.ws.close();
  });

  it('refuses a missing or wrong JWT with 401', async () => {
    const body = JSON.stringify({ items: [{ channel: 'x', formats: { 'ws-message': { content: 'x' } } }] });
    const missing = await post(publishPort, body);
    assert.equal(missing.status, 401);
    assert.match(missing.body, /^Unauthorized: missing bearer token/);
    const wrong = await post(publishPort, body, { authorization: await authHeader('another key') });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.body, 'Unauthorized: invalid token signature.\n');
    await assert.rejects(publishText(gripPublisher(publishPort, 'another key'), 'x', 'x'));
  });

  it('refuses a malformed body with 400 and Pushpin\'s reason, and publishes none of it', async () => {
    const auth = { authorization: await authHeader() };
    const c = await listen(sluice.url, ['strict']);
    const cases: [string, string][] = [
      ['{"items": [', 'Body is not valid JSON.\n'],
      ['[]', 'Invalid format.\n'],
      ['{}', "Invalid format: object does not contain 'items'\n"],
      ['{"items": {}}', "Invalid format: object contains 'items' with wrong type\n"],
      [
        JSON.stringify({ items: [{ channel: 'strict', formats: { 'ws-message': { content: 'never' } } }, { formats: { 'ws-message': { content: 'x' } } }] }),
        "Invalid format: publish item object does not contain 'channel'\n",
      ],
      [JSON.stringify({ items: [{ channel: 'strict' }] }), 'Invalid format: no formats specified\n'],
      [JSON.stringify({ items: [{ channel: 'strict', formats: { 'ws-message': {} } }] }), "Invalid format: 'ws-message' does not contain 'content' or 'content-bin'\n"],
      [JSON.stringify({ items: [{ channel: 'strict', formats: { 'ws-message': { content: 1 } } }] }), "Invalid format: 'ws-message' contains 'content' with wrong type\n"],
    ];
    for (const [body, reason] of cases) {
      const answer = await post(publishPort, body, auth);
      assert.equal(answer.status, 400, body);
      assert.equal(answer.body, reason, body);
    }
    const ok = await post(publishPort, JSON.stringify({ items: [{ channel: 'strict', formats: { 'ws-message': { content: 'after' } } }] }), { ...auth, accept: 'application/json' });
    assert.deepEqual([ok.status, ok.body], [200, '{"message":"Published"}\n']);
    await waitFor('the valid publication', () => c.received.length > 0);
    assert.deepEqual(c.received, ['after']);
    c.ws.close();
  });

  it('bounds the publish body', async () => {
    const auth = { authorization: await authHeader() };
    const big = JSON.stringify({ items: [{ channel: 'big', formats: { 'ws-message': { content: 'x'.repeat(1024 * 1024 + 1) } } }] });
    const answer = await post(publishPort, big, auth).catch((error: Error) => ({ status: -1, body: error.message, headers: {} }));
    assert.equal(answer.status, 413);
  });

  it('shows fan-out in /metrics and /api/overview', async () => {
    const samples = await metrics(sluice.adminUrl);
    assert.ok(sampleValue(samples, 'sluice_fanout_publishes_total', { source: 'http' }) >= 3);
    assert.ok(sampleValue(samples, 'sluice_fanout_deliveries_total') >= 3);
    assert.ok(sampleValue(samples, 'sluice_fanout_publish_to_send_seconds_count') >= 3);
    const overview = JSON.parse((await get(`${sluice.adminUrl}/api/overview`)).text) as { fanout: { deliveries: number } };
    assert.ok(overview.fanout.deliveries >= 3);
  });
});
