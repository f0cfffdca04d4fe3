/**
 * The real client behind a load balancer: entryPoints.<name>.proxyProtocol.trustedIPs (PROXY protocol v2) and
 * forwardedHeaders.trustedIPs (X-Forwarded-For). A client named by a trusted peer is the client for a ClientIP
 * rule, a per-IP limit, the X-Forwarded-For and X-Real-Ip the backend gets and the access log; what an
 * untrusted peer claims changes nothing. Client addresses are spread over 127.0.0.2-127.0.0.5: .2 may speak
 * PROXY, .3 may send X-Forwarded-For, .4 and .5 may do neither.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startSluice, type SluiceProcess } from './helpers/sluice.js';
import { startHttpBackend, type HttpBackend } from './helpers/http-backend.js';
import { until, upgradeRequest } from './helpers/peer.js';

let sluice: SluiceProcess | undefined;
const backends: HttpBackend[] = [];

before(async () => {
  backends.push(await startHttpBackend('vip'), await startHttpBackend('other'));
  sluice = await startSluice(
    `entryPoints:
  web:
    address: "127.0.0.1:{PORT}"
    proxyProtocol: { trustedIPs: ["127.0.0.2"] }
    forwardedHeaders: { trustedIPs: ["127.0.0.3", "10.0.0.0/8"] }
http:
  routers:
    vip: { rule: "ClientIP(\`203.0.113.0/24\`) && !PathPrefix(\`/limited\`)", service: vip }
    other: { rule: "PathPrefix(\`/\`)", service: other, priority: 1 }
    limited: { rule: "PathPrefix(\`/limited\`)", service: other, middlewares: [onePerClient] }
  middlewares:
    onePerClient: { inFlightReq: { amount: 1 } }
  services:
    vip: { loadBalancer: { servers: [ { url: "${backends[0]!.url}" } ] } }
    other: { loadBalancer: { servers: [ { url: "${backends[1]!.url}" } ] } }
accessLog: {}
`,
    { workers: 2, timeoutMs: 20_000 },
  );
});

after(async () => {
  await sluice?.stop();
  for (const b of backends) await b.close();
});

/** A PROXY protocol v2 header (TCP over IPv4) naming `source` as the client. */
function proxyV2(source: string, sourcePort = 40000): Buffer {
  const signature = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
  const addresses = Buffer.alloc(12);
  source.split('.').forEach((octet, i) => addresses.writeUInt8(Number(octet), i));
  [127, 0, 0, 1].forEach((octet, i) => addresses.writeUInt8(octet, 4 + i));
  addresses.writeUInt16BE(sourcePort, 8);
  addresses.writeUInt16BE(443, 10);
  return Buffer.concat([signature, Buffer.from([0x21, 0x11, 0x00, 12]), addresses]);
}

interface Answer {
  readonly status: number;
  /** The backend's echo of what it saw: its name and the request headers. */
  readonly seen: { name: string; headers: Record<string, string> } | null;
  readonly socket: net.Socket;
}

/** One request (plain HTTP or an upgrade, left open) from `from`, with an optional PROXY header first. */
function request(kind: 'http' | 'upgrade', path: string, from: string, options: { proxy?: string; headers?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port: sluice!.port, host: '127.0.0.1', localAddress: from });
    let raw = Buffer.alloc(0);
    const timer = setTimeout(() => reject(new Error(`no answer to ${path} from ${from}: ${raw.toString('latin1')}`)), 5000);
    socket.on('error', () => undefined);
    socket.once('connect', () => {
      const head = kind === 'http' ? `GET ${path} HTTP/1.1\r\nHost: x\r\n${options.headers ?? ''}\r\n` : upgradeRequest(path, options.headers ?? '');
      socket.write(Buffer.concat([options.proxy === undefined ? Buffer.alloc(0) : proxyV2(options.proxy), Buffer.from(head, 'latin1')]));
    });
    socket.on('data', (d: Buffer) => {
      raw = Buffer.concat([raw, d]);
      const text = raw.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end < 0) return;
      const status = Number(text.slice(9, 12));
      const body = text.slice(end + 4);
      let seen: Answer['seen'] = null;
      if (kind === 'http') {
        const chunked = /\r\ntransfer-encoding: *chunked/i.test(text.slice(0, end));
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(text.slice(0, end))?.[1] ?? -1);
        if (chunked ? !body.endsWith('0\r\n\r\n') : length >= 0 && body.length < length) return;
        if (status === 200) seen = JSON.parse(chunked ? dechunk(body) : body) as Answer['seen'];
      } else if (status === 101) {
        // The backend greets an upgraded WebSocket with what it saw (one unmasked text frame, < 64 KiB).
        const frame = raw.subarray(end + 4);
        if (frame.length < 4) return;
        const length = frame[1] === 126 ? frame.readUInt16BE(2) : frame[1]!;
        const offset = frame[1] === 126 ? 4 : 2;
        if (frame.length < offset + length) return;
        seen = JSON.parse(frame.subarray(offset, offset + length).toString('utf8')) as Answer['seen'];
      }
      clearTimeout(timer);
      socket.removeAllListeners('data');
      if (kind === 'http' || status !== 101) socket.destroy();
      resolve({ status, seen, socket });
    });
  });
}

function dechunk(body: string): string {
  let out = '';
  for (let at = 0; ; ) {
    const lineEnd = body.indexOf('\r\n', at);
    const size = parseInt(body.slice(at, lineEnd), 16);
    if (!(size > 0)) return Buffer.from(out, 'latin1').toString('utf8');
    out += body.slice(lineEnd + 2, lineEnd + 2 + size);
    at = lineEnd + 2 + size + 2;
  }
}

describe('PROXY protocol v2 (proxyProtocol.trustedIPs)', () => {
  for (const kind of ['http', 'upgrade'] as const) {
    test(`${kind}: from a trusted peer the header names the client: ClientIP rule, X-Forwarded-For, X-Real-Ip`, async () => {
      const answer = await request(kind, '/x', '127.0.0.2', { proxy: '203.0.113.7' });
      answer.socket.destroy();
      assert.equal(answer.seen?.name, 'vip', 'the ClientIP rule saw 203.0.113.7');
      assert.equal(answer.seen?.headers['x-forwarded-for'], '203.0.113.7');
      assert.equal(answer.seen?.headers['x-real-ip'], '203.0.113.7');
    });

    test(`${kind}: from any other peer the header is ignored and the peer is the client`, async () => {
      const answer = await request(kind, '/x', '127.0.0.4', { proxy: '203.0.113.7' });
      answer.socket.destroy();
      assert.equal(answer.seen?.name, 'other');
      assert.equal(answer.seen?.headers['x-forwarded-for'], '127.0.0.4');
    });
  }
});

describe('X-Forwarded-For (forwardedHeaders.trustedIPs)', () => {
  for (const kind of ['http', 'upgrade'] as const) {
    test(`${kind}: from a trusted peer the rightmost untrusted address is the client, and the chain goes on with the peer`, async () => {
      const answer = await request(kind, '/x', '127.0.0.3', { headers: 'X-Forwarded-For: 198.51.100.1, 203.0.113.9, 10.1.1.1\r\nX-Forwarded-Proto: https\r\n' });
      answer.socket.destroy();
      assert.equal(answer.seen?.name, 'vip', 'the ClientIP rule saw 203.0.113.9 (10.1.1.1 is a trusted proxy, 198.51.100.1 unverifiable)');
      assert.equal(answer.seen?.headers['x-forwarded-for'], '198.51.100.1, 203.0.113.9, 10.1.1.1, 127.0.0.3');
      assert.equal(answer.seen?.headers['x-real-ip'], '203.0.113.9');
      assert.equal(answer.seen?.headers['x-forwarded-proto'], 'https', "the trusted peer's scheme is kept");
    });

    test(`${kind}: from an untrusted peer X-Forwarded-* are replaced`, async () => {
      const answer = await request(kind, '/x', '127.0.0.4', { headers: 'X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n' });
      answer.socket.destroy();
      assert.equal(answer.seen?.name, 'other');
      assert.equal(answer.seen?.headers['x-forwarded-for'], '127.0.0.4');
      assert.equal(answer.seen?.headers['x-forwarded-proto'], kind === 'http' ? 'http' : 'ws');
    });
  }
});

describe('per-client limits count the real client', () => {
  test('inFlightReq: one client through either proxy shares one count; another client behind the same proxy has its own', async () => {
    const held = await request('upgrade', '/limited', '127.0.0.2', { proxy: '203.0.113.7' });
    try {
      assert.equal(held.status, 101);
      const sameViaHeaders = await request('upgrade', '/limited', '127.0.0.3', { headers: 'X-Forwarded-For: 203.0.113.7\r\n' });
      assert.equal(sameViaHeaders.status, 429, 'the same client, named by the other proxy');
      const neighbour = await request('upgrade', '/limited', '127.0.0.2', { proxy: '203.0.113.8' });
      neighbour.socket.destroy();
      assert.equal(neighbour.status, 101, 'another client behind the same proxy');
    } finally {
      held.socket.destroy();
    }
  });

  test('the access log names the real client', async () => {
    const answer = await request('http', '/logged', '127.0.0.2', { proxy: '203.0.113.44' });
    assert.equal(answer.status, 200);
    await until(() => sluice!.stdout().includes('/logged'), 5000, 'the access log line');
    const line = sluice!.stdout().split('\n').find((l) => l.includes('/logged'))!;
    assert.equal((JSON.parse(line) as { ClientHost: string }).ClientHost, '203.0.113.44');
  });
});
