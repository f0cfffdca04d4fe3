/**
 * Plain HTTP through Sluice, as a client and a backend see it: what is forwarded (path, query, body, Host,
 * X-Forwarded-*, hop-by-hop headers dropped), what comes back (several Set-Cookie, chunked bodies, HEAD,
 * 204/304, 100-continue, hop-by-hop headers dropped), the 431 bound, keep-alive connections to the backend,
 * https backends through a servers transport, and the metrics and access log of each request.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { startSluice, type SluiceProcess } from './helpers/sluice.js';
import { fetchRaw, rawValues, startHttpBackend, type HttpBackend } from './helpers/http-backend.js';
import { rawRequest } from './helpers/peer.js';
import { parsePrometheus, sampleSum } from './helpers/admin.js';
import { CertificateFactory } from './helpers/certificates.js';
import { waitFor } from './helpers/wait.js';

describe('plain HTTP through a router', () => {
  let sluice: SluiceProcess | undefined;
  let app: HttpBackend | undefined;
  let other: HttpBackend | undefined;
  before(async () => {
    app = await startHttpBackend('app');
    other = await startHttpBackend('other');
    sluice = await startSluice(`entryPoints:
  web: { address: "127.0.0.1:{PORT}", http: { maxHeaderBytes: 4KiB } }
accessLog: { filePath: "{DIR}/access.log" }
http:
  routers:
    app: { rule: "PathPrefix(\`/\`)", service: app }
    rewritten: { rule: "PathPrefix(\`/own-host\`)", service: ownHost }
  services:
    app:
      loadBalancer:
        servers: [ { url: "${app.url}" } ]
    ownHost:
      loadBalancer:
        passHostHeader: false
        servers: [ { url: "${other.url}/base" } ]
`);
  });
  after(async () => {
    await sluice?.stop();
    await app?.close();
    await other?.close();
  });

  describe('what the backend gets', () => {
    test('method, path and query byte for byte, the body, and the client Host', async () => {
      const answer = await fetchRaw(`${base()}/a/b%2Fc/?x=1&y=%20z&x=2`, { method: 'PUT', body: 'payload!', headers: { host: 'chat.example.com:8443' } });
      assert.equal(answer.status, 200);
      const seen = answer.json<{ method: string; url: string; headers: Record<string, string>; bodyBytes: number }>();
      assert.equal(seen.method, 'PUT');
      assert.equal(seen.url, '/a/b%2Fc/?x=1&y=%20z&x=2');
      assert.equal(seen.bodyBytes, 8);
      assert.equal(seen.headers.host, 'chat.example.com:8443');
      assert.equal(seen.headers['content-length'], '8');
    });

    test("X-Forwarded-For/-Proto/-Host/-Port and X-Real-Ip are Sluice's, replacing the client's", async () => {
      const answer = await fetchRaw(`${base()}/fwd`, {
        headers: { host: 'site.test', 'x-forwarded-for': '6.6.6.6', 'x-real-ip': '6.6.6.6', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'evil' },
      });
      const { headers } = answer.json<{ headers: Record<string, string> }>();
      assert.equal(headers['x-forwarded-for'], '127.0.0.1');
      assert.equal(headers['x-real-ip'], '127.0.0.1');
      assert.equal(headers['x-forwarded-proto'], 'http');
      assert.equal(headers['x-forwarded-host'], 'site.test');
      assert.equal(headers['x-forwarded-port'], String(sluice!.port));
    });

    test('hop-by-hop headers, and those named in Connection, are not forwarded; end-to-end ones are', async () => {
      const answer = await rawRequest(
        sluice!.port,
        'GET /hop-request HTTP/1.1\r\nHost: h\r\nConnection: close, X-Private\r\nX-Private: no\r\nKeep-Alive: timeout=1\r\nTE: trailers\r\nProxy-Authorization: Basic eA==\r\nAuthorization: Bearer t\r\nCookie: a=1\r\nX-Custom: yes\r\n\r\n',
      );
      const { headers } = JSON.parse(dechunk(answer.body)) as { headers: Record<string, string> };
      for (const name of ['x-private', 'te', 'proxy-authorization']) assert.equal(headers[name], undefined, `${name} was forwarded`);
      assert.notEqual(headers['keep-alive'], 'timeout=1');
      assert.equal(headers.authorization, 'Bearer t');
      assert.equal(headers.cookie, 'a=1');
      assert.equal(headers['x-custom'], 'yes');
    });

    test("passHostHeader: false sends the backend's own host, and the server URL's path is prefixed", async () => {
      const answer = await fetchRaw(`${base()}/own-host/x?q=1`, { headers: { host: 'public.test' } });
      const seen = answer.json<{ name: string; url: string; headers: Record<string, string> }>();
      assert.equal(seen.name, 'other');
      assert.equal(seen.url, '/base/own-host/x?q=1');
      assert.equal(seen.headers.host, `127.0.0.1:${other!.port}`);
    });

    test('a chunked request body is streamed on, whole', async () => {
      const body = Buffer.alloc(300_000, 7);
      const answer = await fetchRaw(`${base()}/upload`, { method: 'POST', body, headers: { 'transfer-encoding': 'chunked' } });
      const seen = answer.json<{ bodyBytes: number; headers: Record<string, string> }>();
      assert.equal(seen.bodyBytes, body.length);
      assert.equal(seen.headers['transfer-encoding'], 'chunked');
    });

    test('Expect: 100-continue gets 100 Continue, then the body goes through', async () => {
      const answer = await rawRequest(sluice!.port, 'POST /continue HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello');
      assert.match(answer.raw, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK\r\n/);
      assert.match(answer.raw, /"bodyBytes":5,/);
      // uWebSockets.js answered the 100 itself: the backend is not asked again.
      assert.doesNotMatch(answer.raw, /"expect"/);
    });
  });

  describe('what the client gets', () => {
    test('several Set-Cookie headers arrive one by one, as the backend sent them', async () => {
      const answer = await fetchRaw(`${base()}/cookies`);
      assert.deepEqual(rawValues(answer.rawHeaders, 'set-cookie'), ['a=1; Path=/; HttpOnly', 'b=2; Path=/', 'c=3; Expires=Wed, 21 Oct 2037 07:28:00 GMT']);
    });

    test('a chunked response is relayed chunked, in full', async () => {
      const answer = await fetchRaw(`${base()}/chunked`);
      assert.equal(answer.headers['transfer-encoding'], 'chunked');
      assert.equal(answer.text(), 'first,second\n');
      assert.equal(answer.headers['x-backend'], 'app');
    });

    test('HEAD: the headers and the length a GET would have, no body', async () => {
      const answer = await rawRequest(sluice!.port, 'HEAD /bytes?n=12345 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n');
      assert.equal(answer.status, 200);
      assert.equal(answer.headers.get('content-length'), '12345');
      assert.equal(answer.body, '');
      // The connection stays usable: a HEAD and then a GET on one keep-alive connection both get answers.
      const both = await sequentialRequests(sluice!.port, ['HEAD /bytes?n=3 HTTP/1.1\r\nHost: h\r\n\r\n', 'GET /bytes?n=3 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n']);
      assert.equal(both.match(/HTTP\/1\.1 200 OK/g)?.length, 2, both);
    });

    test('204 and 304 come without a body (and without Content-Length on 204)', async () => {
      const noContent = await rawRequest(sluice!.port, 'GET /status/204 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n');
      assert.equal(noContent.status, 204);
      assert.equal(noContent.headers.get('content-length'), undefined);
      assert.equal(noContent.body, '');
      const notModified = await rawRequest(sluice!.port, 'GET /status/304 HTTP/1.1\r\nHost: h\r\nIf-None-Match: "v1"\r\nConnection: close\r\n\r\n');
      assert.equal(notModified.status, 304);
      assert.equal(notModified.headers.get('etag'), '"v1"');
      assert.equal(notModified.body, '');
    });

    test("a backend's 404 and 500 reach the client as they came", async () => {
      for (const code of [404, 500]) {
        const answer = await fetchRaw(`${base()}/status/${code}`);
        assert.equal(answer.status, code);
        assert.equal(answer.text(), `app ${code}\n`);
      }
    });

    test("the backend's hop-by-hop response headers are dropped, its end-to-end ones kept", async () => {
      const answer = await fetchRaw(`${base()}/hop`);
      assert.equal(answer.text(), 'hop');
      assert.equal(answer.headers['x-hop'], undefined);
      assert.equal(answer.headers['keep-alive'], undefined);
      assert.equal(answer.headers['proxy-connection'], undefined);
      assert.equal(answer.headers['x-end'], 'kept');
    });

    test('a request head past entryPoints.<name>.http.maxHeaderBytes is answered 431 and not forwarded', async () => {
      const before = app!.requests.length;
      const answer = await fetchRaw(`${base()}/too-big`, { headers: { 'x-big': 'a'.repeat(5000) } });
      assert.equal(answer.status, 431);
      assert.match(answer.text(), /request header fields too large/);
      assert.equal(app!.requests.length, before);
    });
  });

  describe('connections to the backend', () => {
    test('sequential requests reuse one keep-alive connection', async () => {
      const opened = app!.connections;
      for (let i = 0; i < 10; i++) assert.equal((await fetchRaw(`${base()}/reuse/${i}`)).status, 200);
      assert.ok(app!.connections - opened <= 1, `${app!.connections - opened} connections for 10 sequential requests`);
    });
  });

  describe('metrics and access log', () => {
    test('http_requests_total counts by method and status class, and bytes and duration are recorded', async () => {
      const before = parsePrometheus(await (await fetch(`${sluice!.adminUrl}/metrics`)).text());
      await fetchRaw(`${base()}/status/404`);
      await fetchRaw(`${base()}/m`, { method: 'POST', body: 'x'.repeat(100) });
      const samples = parsePrometheus(await (await fetch(`${sluice!.adminUrl}/metrics`)).text());
      const delta = (name: string, labels: Record<string, string>): number => sampleSum(samples, name, labels) - sampleSum(before, name, labels);
      assert.equal(delta('http_requests_total', { router: 'app', service: 'app', backend: app!.url, method: 'GET', code: '4xx' }), 1);
      assert.equal(delta('http_requests_total', { router: 'app', method: 'POST', code: '2xx' }), 1);
      assert.equal(delta('http_request_bytes_total', { service: 'app' }), 100);
      assert.ok(delta('http_response_bytes_total', { service: 'app' }) > 100);
      assert.equal(delta('http_request_duration_seconds_count', { service: 'app' }), 2);
      const overview = (await (await fetch(`${sluice!.adminUrl}/api/overview`)).json()) as { http: { requests: number; byCode: Record<string, number> } };
      assert.ok(overview.http.requests >= 2 && overview.http.byCode['4xx']! >= 1, JSON.stringify(overview.http));
    });

    test('one access-log line per request, with method, path as sent, status and sizes', async () => {
      await fetchRaw(`${base()}/logged?id=42`, { method: 'POST', body: 'abc' });
      const file = path.join(path.dirname(sluice!.configFile), 'access.log');
      let line: Record<string, unknown> | undefined;
      await waitFor('the access-log line of /logged', () => {
        try {
          line = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.RequestPath === '/logged?id=42');
        } catch {
          line = undefined;
        }
        return line !== undefined;
      });
      assert.equal(line!.kind, 'http');
      assert.equal(line!.RequestMethod, 'POST');
      assert.equal(line!.DownstreamStatus, 200);
      assert.equal(line!.RequestContentSize, 3);
      assert.equal(line!.RouterName, 'app');
      assert.equal(line!.ServiceURL, app!.url);
    });
  });

  function base(): string {
    return `http://127.0.0.1:${sluice!.port}`;
  }
});

/** Requests one after the other on one connection, each sent once the previous answer's head arrived. */
function sequentialRequests(port: number, requests: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let raw = '';
    let next = 0;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no close within 5 s; got ${JSON.stringify(raw)}`));
    }, 5000);
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      raw += d;
      if ((raw.match(/\r\n\r\n/g)?.length ?? 0) >= next && next < requests.length) socket.write(requests[next++]!);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(raw);
    });
    socket.on('error', reject);
    socket.write(requests[next++]!);
  });
}

/** The payload of a chunked body as rawRequest returns it. */
function dechunk(body: string): string {
  let out = '';
  let at = 0;
  for (;;) {
    const end = body.indexOf('\r\n', at);
    const size = parseInt(body.slice(at, end), 16);
    if (!(size > 0)) return out;
    out += body.slice(end + 2, end + 2 + size);
    at = end + 2 + size + 2;
  }
}

describe('https backends through a servers transport', () => {
  const certs = new CertificateFactory();
  let sluice: SluiceProcess | undefined;
  let secure: HttpBackend | undefined;
  after(async () => {
    await sluice?.stop();
    await secure?.close();
    certs.remove();
  });

  test('rootCAs and serverName verify the backend; a wrong name is a 502', async () => {
    const leaf = certs.issue('api', 'api.internal', ['DNS:api.internal']);
    secure = await startHttpBackend('secure', { tls: { cert: leaf.cert, key: leaf.key } });
    sluice = await startSluice(`entryPoints:
  web: { address: "127.0.0.1:{PORT}" }
http:
  routers:
    good: { rule: "PathPrefix(\`/good\`)", service: good }
    bad: { rule: "PathPrefix(\`/bad\`)", service: bad }
  services:
    good:
      loadBalancer: { servers: [ { url: "${secure.url}" } ], serversTransport: internal }
    bad:
      loadBalancer: { servers: [ { url: "${secure.url}" } ], serversTransport: wrongName }
  serversTransports:
    internal: { rootCAs: [ "${certs.ca.certFile}" ], serverName: api.internal }
    wrongName: { rootCAs: [ "${certs.ca.certFile}" ], serverName: other.internal }
`);
    const good = await fetchRaw(`http://127.0.0.1:${sluice.port}/good/x`);
    assert.equal(good.status, 200);
    assert.equal(good.json<{ name: string }>().name, 'secure');
    const bad = await fetchRaw(`http://127.0.0.1:${sluice.port}/bad/x`);
    assert.equal(bad.status, 502);
    assert.match(bad.text(), /service 'bad'/);
  });
});
