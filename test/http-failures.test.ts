/**
 * Plain HTTP when things go wrong, and how requests are spread: 503 with Retry-After when no backend is up,
 * 502 after a refused connect (retried on another backend first, also for a POST whose body was collected),
 * retries after the request went out only for idempotent methods, 504 past responseHeaderTimeout, a backend
 * that dies mid-body cuts the client's connection, a client that leaves cancels the backend request, HTTP
 * balancing by requests in flight, the sticky cookie on HTTP answers, and idle keep-alive connections capped
 * by maxIdleConnsPerHost while busy ones are not.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { freePort, startSluice, type SluiceProcess } from './helpers/sluice.js';
import { fetchRaw, rawValues, startHttpBackend, type HttpBackend } from './helpers/http-backend.js';
import { parsePrometheus, sampleSum } from './helpers/admin.js';
import { reachBackend, cookiePair } from './helpers/pool.js';
import { waitFor } from './helpers/wait.js';

const started: { stop(): Promise<unknown> }[] = [];
after(async () => {
  for (const s of started.reverse()) await s.stop();
});

async function sluiceWith(config: string): Promise<SluiceProcess> {
  const sluice = await startSluice(config);
  started.push(sluice);
  return sluice;
}

async function backend(name: string): Promise<HttpBackend> {
  const b = await startHttpBackend(name);
  started.push({ stop: () => b.close() });
  return b;
}

/** A TCP server that reads a request head and then closes the connection without answering. */
async function resettingBackend(): Promise<{ port: number; requests: string[] }> {
  const requests: string[] = [];
  const server = net.createServer((socket) => {
    let head = '';
    socket.on('data', (d) => {
      head += d.toString('latin1');
      if (head.includes('\r\n\r\n')) {
        requests.push(head.split('\r\n')[0]!);
        socket.destroy();
      }
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  started.push({ stop: () => new Promise<void>((resolve) => server.close(() => resolve())) });
  return { port: (server.address() as net.AddressInfo).port, requests };
}

async function metrics(sluice: SluiceProcess): Promise<ReturnType<typeof parsePrometheus>> {
  return parsePrometheus(await (await fetch(`${sluice.adminUrl}/metrics`)).text());
}

async function inFlight(sluice: SluiceProcess): Promise<number> {
  return sampleSum(await metrics(sluice), 'sluice_backend_http_requests_in_flight');
}

/** Poll the in-flight gauge until it reads 0 (it is given back when the worker sees the end). */
async function nothingInFlight(sluice: SluiceProcess): Promise<void> {
  let left = -1;
  for (let i = 0; i < 100 && left !== 0; i++) {
    left = await inFlight(sluice);
    if (left !== 0) await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal(left, 0, 'HTTP requests still counted in flight');
}

describe('errors', () => {
  test('refused everywhere: 502 naming the service, after trying each backend once', async () => {
    const closed = [await freePort(), await freePort()];
    const sluice = await sluiceWith(`entryPoints: { web: { address: "127.0.0.1:{PORT}" } }
http:
  routers: { r: { rule: "PathPrefix(\`/\`)", service: dead } }
  services:
    dead: { loadBalancer: { servers: [ { url: "http://127.0.0.1:${closed[0]}" }, { url: "http://127.0.0.1:${closed[1]}" } ] } }
`);
    const answer = await fetchRaw(`http://127.0.0.1:${sluice.port}/x`);
    assert.equal(answer.status, 502);
    assert.equal(answer.text(), "502 Bad Gateway: no backend of service 'dead' accepted the connection\n");
    assert.equal(sampleSum(await metrics(sluice), 'http_errors_total', { service: 'dead', reason: 'connect_refused' }), 2);
  });

  test('a refused backend is skipped: GET and a POST with its body both reach the other one', async () => {
    const good = await backend('good');
    const sluice = await sluiceWith(`entryPoints: { web: { address: "127.0.0.1:{PORT}" } }
http:
  routers: { r: { rule: "PathPrefix(\`/\`)", service: s } }
  services:
    s: { loadBalancer: { strategy: roundrobin, servers: [ { url: "http://127.0.0.1:${await freePort()}" }, { url: "${good.url}" } ] } }
`);
    for (let i = 0; i < 4; i++) {
      assert.equal((await fetchRaw(`http://127.0.0.1:${sluice.port}/get/${i}`)).status, 200);
      const post = await fetchRaw(`http://127.0.0.1:${sluice.port}/post/${i}`, { method: 'POST', body: 'twelve bytes' });
      assert.equal(post.status, 200);
      assert.equal(post.json<{ bodyBytes: number }>().bodyBytes, 12);
    }
  });

  test('a connection closed after the request went out: GET is retried elsewhere, POST is not (502)', async () => {
    const resetting = await resettingBackend();
    const good = await backend('good');
    const sluice = await sluiceWith(`entryPoints: { web: { address: "127.0.0.1:{PORT}" } }
http:
  routers: { r: { rule: "PathPrefix(\`/\`)", service: s } }
  services:
    s: { loadBalancer: { strategy: roundrobin, servers: [ { url: "http://127.0.0.1:${resetting.port}" }, { url: "${good.url}" } ], passiveHealthCheck: { maxFailedAttempts: 0 } } }
`);
    // (Passive checks off: the default would eject the resetting backend before any POST reached it.)
    for (let i = 0; i < 4; i++) assert.equal((await fetchRaw(`http://127.0.0.1:${sluice.port}/get/${i}`)).status, 200);
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await fetchRaw(`http://127.0.0.1:${sluice.port}/post/${i}`, { method: 'POST', body: 'x' })).status);
    const posts = resetting.requests.filter((line) => line.startsWith('POST'));
    assert.ok(posts.length >= 1, 'no POST reached the resetting backend');
    assert.equal(statuses.filter((s) => s === 502).length, posts.length, `statuses ${statuses}, POSTs seen ${posts}`);
    // Every POST went to exactly one backend: never sent twice.
    assert.equal(good.requests.filter((r) => r.method === 'POST').length + posts.length, 4);
  });

  test('no answer within responseHeaderTimeout: 504, and the backend request is closed', async () => {
    const slow = await backend('slow');
    const sluice = await sluiceWith(`entryPoints: { web: { address: "127.0.0.1:{PORT}" } }
http:
  routers: { r: { rule: "PathPrefix(\`/\`)", service: slow } }
  services:
    slow: { loadBalancer: { servers: [ { url: "${slow.url}" } ], serversTransport: quick } }
  serversTransports:
    quick: { forwardingTimeouts: { responseHeaderTimeout: 300ms } }
`);
    const t0 = Date.now();
    const answer = await fetchRaw(`http://127.0.0.1:${sluice.port}/slow-head?ms=3000`);
    assert.equal(answer.status, 504);
    assert.match(answer.text(), /service 'slow' did not answer within responseHeaderTimeout/);
    assert.ok(Date.now() - t0 < 2500, `answered after ${Date.now() - t0} ms`);
    await waitFor('the backend request to be closed', () => slow.requests.at(-1)?.closedEarly === true);
  });

  test('every backend down: 503 with Retry-After, nothing forwarded', async () => {
    const down = await backend('down');
    down.healthStatus = 500;
    const sluice = await sluiceWith(`entryPoints: { web: { address: "127.0.0.1:{PORT}" } }
http:
  routers: { r: { rule: "PathPrefix(\`/\`)", service: s } }
  services:
    s:
      loadBalancer:
        servers: [ { url: "${down.url}" } ]
        healthCheck: { path: /health, interval: 100ms, unhealthyInterval: 2s, fall: 1 }
`);
    await waitFor('the backend to be marked down', () => down.requests.some((r) => r.url === '/health'), undefined, { timeoutMs: 5000 });
    let answer = await fetchRaw(`http://127.0.0.1:${sluice.port}/x`);
    for (let i = 0; i < 50 && answer.status !== 503; i++) {
      await new Promise((r) => setTimeout(r, 100));
      answer = await fetchRaw(`http://127.0.0.1:${sluice.port}/x`);
    }
    assert.equal(answer.status, 503);
    assert.equal(answer.headers['retry-after'], '2');
    assert.equal(answer.text(), "503 Service Unavailable: no backend available for service 's'\n");
    const forwarded = down.requests.filter((r) => r.url === '/x').length;
    assert.equal((await fetchRaw(`http://127.0.0.1:${sluice.port}/x`)).status, 503);
    assert.equal(down.requests.filter((r) => r.url === '/x').length, forwarded, 'a request reached a backend marked down');
  });

  test('a backend that dies mid-body cuts the client connection (never a short 200 that looks whole)', async () => {
    const dying = await backend('dying');
    const sluice = await sluiceWith(`entryPoints: { web: { address: "127.0.0.1:{PORT}" } }
http:
  routers: { r: { rule: "PathPrefix(\`/\`)", service: s } }
  services: { s: { loadBalancer: { servers: [ { url: "${dying.url}" } ] } } }
`);
    for (const path of ['/die', '/die-chunked']) {
      const outcome = await new Promise<string>((resolve) => {
        const req = http.get(`http://127.0.0.1:${sluice.port}${path}`, { agent: false }, (res) => {
          let bytes = 0;
          res.on('data', (c: Buffer) => (bytes += c.length));
          res.on('end', () => resolve(res.complete ? `complete after ${bytes}` : `cut after ${bytes}`));
          res.on('error', () => resolve(`cut after ${bytes}`));
          res.on('aborted', () => resolve(`cut after ${bytes}`));
        });
        req.on('error', (e) => resolve(`error ${e.message}`));
      });
      assert.match(outcome, /^cut after 1000$/, `${path}: ${outcome}`);
    }
    assert.equal(sampleSum(await metrics(sluice), 'http_errors_total', { reason: 'backend_lost' }), 2);
    await nothingInFlight(sluice);
  });

  test('a client that leaves cancels its backend request, and nothing stays in flight', async () => {
    const hanging = await backend('hanging');
    const sluice = await sluiceWith(`entryPoints: { web: { address: "127.0.0.1:{PORT}" } }
http:
  routers: { r: { rule: "PathPrefix(\`/\`)", service: s } }
  services: { s: { loadBalancer: { servers: [ { url: "${hanging.url}" } ] } } }
`);
    const req = http.get(`http://127.0.0.1:${sluice.port}/hang`, { agent: false });
    req.on('error', () => undefined);
    await waitFor('the request to reach the backend', () => hanging.active === 1);
    assert.equal(await inFlight(sluice), 1);
    req.destroy();
    await waitFor('the backend request to be closed', () => hanging.active === 0 && hanging.requests.at(-1)?.closedEarly === true);
    await nothingInFlight(sluice);
    assert.equal(sampleSum(await metrics(sluice), 'http_errors_total', { reason: 'client_aborted' }), 1);
  });
});

describe('balancing and stickiness', () => {
  test('least outstanding requests: while one backend holds a slow request, new ones go to the other', async () => {
    const a = await backend('a');
    const b = await backend('b');
    const sluice = await sluiceWith(`entryPoints: { web: { address: "127.0.0.1:{PORT}" } }
http:
  routers: { r: { rule: "PathPrefix(\`/\`)", service: s } }
  services: { s: { loadBalancer: { servers: [ { url: "${a.url}" }, { url: "${b.url}" } ] } } }
`);
    const held = http.get(`http://127.0.0.1:${sluice.port}/hang`, { agent: false });
    held.on('error', () => undefined);
    await waitFor('the slow request to be held', () => a.active + b.active === 1);
    const busy = a.active === 1 ? 'a' : 'b';
    const names: string[] = [];
    for (let i = 0; i < 6; i++) names.push((await fetchRaw(`http://127.0.0.1:${sluice.port}/n/${i}`)).json<{ name: string }>().name);
    assert.deepEqual(names, Array(6).fill(busy === 'a' ? 'b' : 'a'));
    held.destroy();
  });

  test('the sticky cookie is set on an HTTP answer, keeps HTTP requests on its backend, and the upgrade follows it', async () => {
    const backends = [await backend('s0'), await backend('s1'), await backend('s2')];
    const sluice = await sluiceWith(`entryPoints: { web: { address: "127.0.0.1:{PORT}" } }
loadBalancer: { stickySecret: "test-secret" }
http:
  routers: { r: { rule: "PathPrefix(\`/\`)", service: s } }
  services:
    s:
      loadBalancer:
        strategy: roundrobin
        sticky: { cookie: { name: sticky, httpOnly: true } }
        servers: [ ${backends.map((x) => `{ url: "${x.url}" }`).join(', ')} ]
`);
    const first = await fetchRaw(`http://127.0.0.1:${sluice.port}/first`);
    const setCookie = rawValues(first.rawHeaders, 'set-cookie');
    assert.equal(setCookie.length, 1);
    assert.match(setCookie[0]!, /^sticky=[A-Za-z0-9_-]{22}; Path=\/; HttpOnly$/);
    const owner = first.json<{ name: string }>().name;
    const cookie = cookiePair(setCookie[0]!);
    for (let i = 0; i < 6; i++) {
      const again = await fetchRaw(`http://127.0.0.1:${sluice.port}/again/${i}`, { headers: { cookie } });
      assert.equal(again.json<{ name: string }>().name, owner);
      assert.deepEqual(rawValues(again.rawHeaders, 'set-cookie'), [], 'a request that names its backend gets no new cookie');
    }
    const ws = await reachBackend(`ws://127.0.0.1:${sluice.port}/socket`, { cookie });
    assert.equal((JSON.parse(ws.backend) as { name: string }).name, owner);
    ws.ws.terminate();
  });
});

describe('keep-alive connections to a backend', () => {
  test('busy connections are not capped; idle ones beyond maxIdleConnsPerHost are closed', async () => {
    const pool = await backend('pool');
    const sluice = await sluiceWith(`entryPoints: { web: { address: "127.0.0.1:{PORT}" } }
http:
  routers: { r: { rule: "PathPrefix(\`/\`)", service: s } }
  services: { s: { loadBalancer: { servers: [ { url: "${pool.url}" } ], serversTransport: few } } }
  serversTransports:
    few: { maxIdleConnsPerHost: 2 }
`);
    const concurrent = await Promise.all(Array.from({ length: 8 }, (_, i) => fetchRaw(`http://127.0.0.1:${sluice.port}/slow-head?ms=300&i=${i}`)));
    assert.deepEqual(concurrent.map((a) => a.status), Array(8).fill(200));
    assert.equal(pool.connections, 8, 'eight requests at once need eight connections');
    await waitFor('idle connections beyond 2 to close', () => pool.open.size === 2, () => `${pool.open.size} open`);
    const opened = pool.connections;
    await fetchRaw(`http://127.0.0.1:${sluice.port}/reuse`);
    assert.equal(pool.connections, opened, 'the next request reused an idle connection');
  });

  test('connections leave from serversTransport.sourceAddresses in turn, as for WebSockets', async () => {
    const pool = await backend('spread');
    const sluice = await sluiceWith(`entryPoints: { web: { address: "127.0.0.1:{PORT}" } }
http:
  routers: { r: { rule: "PathPrefix(\`/\`)", service: s } }
  services: { s: { loadBalancer: { servers: [ { url: "${pool.url}" } ], serversTransport: spread } } }
  serversTransports:
    spread: { maxIdleConnsPerHost: -1, sourceAddresses: ["127.0.0.2-127.0.0.4", "127.0.0.5"] }
`);
    // No idle connection is kept, so each request opens one: GETs (the native client on the native leg) and
    // POSTs with a streamed body (undici on both legs).
    for (let i = 0; i < 4; i++) assert.equal((await fetchRaw(`http://127.0.0.1:${sluice.port}/get`)).status, 200);
    for (let i = 0; i < 4; i++) {
      const body = Buffer.alloc(100 * 1024, 1);
      assert.equal((await fetchRaw(`http://127.0.0.1:${sluice.port}/post`, { method: 'POST', body, headers: { 'content-length': String(body.length) } })).status, 200);
    }
    assert.deepEqual(pool.peers.map((p) => p.replace(/^::ffff:/, '')), ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5']);
  });
});
