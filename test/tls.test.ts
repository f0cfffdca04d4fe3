/**
 * TLS on both legs, with certificates the test makes with openssl: Sluice serves wss:// with the
 * certificate chosen by SNI (and a default), and speaks wss:// to backends, verifying them against
 * `rootCAs` (with `serverName` when given), accepting anything with `insecureSkipVerify`, and
 * refusing an untrusted certificate with 502. Whole file: about 5 s.
 */
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { WebSocketServer, type WebSocket } from 'ws';
import { startSluice, type SluiceProcess } from './helpers/sluice.js';
import { CertificateFactory, type CertificateFiles } from './helpers/certificates.js';
import { Peer, UpgradeRefused, closeAllPeers, connect, until } from './helpers/peer.js';

interface TlsBackend {
  readonly port: number;
  readonly url: string;
  readonly requests: IncomingMessage[];
  readonly peers: Map<string, Peer>;
  close(): Promise<void>;
}

/** A `ws` server on https; echoes on paths under /echo/ and records a Peer per path. */
async function startTlsBackend(certificate: CertificateFiles): Promise<TlsBackend> {
  const server: HttpsServer = createHttpsServer({ cert: certificate.cert, key: certificate.key });
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  server.on('tlsClientError', () => undefined);
  const wss = new WebSocketServer({ server, perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 });
  const requests: IncomingMessage[] = [];
  const peers = new Map<string, Peer>();
  wss.on('connection', (ws: WebSocket, req: IncomingMessage) => {
    requests.push(req);
    peers.set(req.url!, new Peer(ws));
    if (req.url!.includes('/echo/')) ws.on('message', (data, isBinary) => ws.send(data as Buffer, { binary: isBinary }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    url: `wss://127.0.0.1:${port}`,
    requests,
    peers,
    close: () =>
      new Promise<void>((resolve) => {
        for (const ws of wss.clients) ws.terminate();
        for (const socket of sockets) socket.destroy();
        wss.close();
        server.close(() => resolve());
      }),
  };
}

/** The certificate Sluice serves for `servername` (undefined: no SNI at all). */
function servedCertificate(port: number, servername: string | undefined, ca: string): Promise<{ subject: string; authorized: boolean }> {
  return new Promise((resolve, reject) => {
    const socket: TLSSocket = tlsConnect({ host: '127.0.0.1', port, servername, ca, rejectUnauthorized: false });
    socket.once('secureConnect', () => {
      const subject = socket.getPeerCertificate().subject.CN;
      resolve({ subject: (Array.isArray(subject) ? subject.join(',') : subject) ?? '', authorized: socket.authorized });
      socket.destroy();
    });
    socket.once('error', reject);
  });
}

describe('TLS', () => {
  const certs = new CertificateFactory();
  // Served by Sluice, chosen by SNI; a.test is first, hence the default.
  const siteA = certs.issue('site-a', 'a.test', ['DNS:a.test']);
  const siteB = certs.issue('site-b', 'b.test', ['DNS:b.test', 'DNS:*.b.test']);
  // Backends: one signed by the test CA (for its IP and for a name), one self-signed.
  const trustedBackendCert = certs.issue('backend', 'backend.test', ['IP:127.0.0.1', 'DNS:backend.test']);
  const untrustedBackendCert = new CertificateFactory('Someone Else').selfSigned('rogue', 'rogue.test', ['IP:127.0.0.1']);

  let trusted: TlsBackend | undefined;
  let untrusted: TlsBackend | undefined;
  let sluice: SluiceProcess | undefined;
  let wssUrl = '';

  before(async () => {
    trusted = await startTlsBackend(trustedBackendCert);
    untrusted = await startTlsBackend(untrustedBackendCert);
    sluice = await startSluice(
      `entryPoints:
  websecure:
    address: "127.0.0.1:{PORT}"
    http:
      tls: {}
tls:
  certificates:
    - certFile: "${siteA.certFile}"
      keyFile: "${siteA.keyFile}"
    - certFile: "${siteB.certFile}"
      keyFile: "${siteB.keyFile}"
http:
  routers:
    trusted:
      rule: "PathPrefix(\`/trusted\`)"
      service: trusted
      tls: {}
    named:
      rule: "PathPrefix(\`/named\`)"
      service: named
      tls: {}
    insecure:
      rule: "PathPrefix(\`/insecure\`)"
      service: insecure
      tls: {}
    untrusted:
      rule: "PathPrefix(\`/untrusted\`)"
      service: untrusted
      tls: {}
  services:
    trusted:
      loadBalancer:
        serversTransport: testCA
        servers:
          - url: "${trusted.url}"
    named:
      loadBalancer:
        serversTransport: testCAByName
        servers:
          - url: "https://127.0.0.1:${trusted.port}"
    insecure:
      loadBalancer:
        serversTransport: skipVerify
        servers:
          - url: "${untrusted.url}"
    untrusted:
      loadBalancer:
        servers:
          - url: "${untrusted.url}"
  serversTransports:
    testCA:
      rootCAs:
        - "${certs.ca.certFile}"
    testCAByName:
      serverName: backend.test
      rootCAs:
        - "${certs.ca.certFile}"
    skipVerify:
      insecureSkipVerify: true
`,
      { timeoutMs: 20_000 },
    );
    wssUrl = `wss://127.0.0.1:${sluice.port}`;
  });
  afterEach(closeAllPeers);
  after(async () => {
    closeAllPeers();
    await sluice?.stop();
    await trusted?.close();
    await untrusted?.close();
    certs.remove();
  });

  /** A wss:// client of Sluice that trusts the test CA and asks for `servername`. */
  function wss(path: string, servername = 'a.test'): Promise<Peer> {
    return connect(wssUrl + path, { ca: certs.ca.cert, servername });
  }

  describe('the certificate Sluice serves', () => {
    for (const [servername, subject] of [
      ['a.test', 'a.test'],
      ['b.test', 'b.test'],
      ['chat.b.test', 'b.test'],
      ['unknown.test', 'a.test'],
      [undefined, 'a.test'],
    ] as const) {
      test(`SNI ${servername ?? '(none)'} gets ${subject}`, async () => {
        const served = await servedCertificate(sluice!.port, servername, certs.ca.cert);
        assert.equal(served.subject, subject);
        if (servername === subject) assert.ok(served.authorized, 'the certificate verifies against the test CA');
      });
    }

    test('wss:// upgrades are served for every name: exact, wildcard, and unknown (default certificate)', async () => {
      for (const name of ['a.test', 'b.test', 'chat.b.test', 'other.b.test', 'unknown.test']) {
        const client = await connect(`${wssUrl}/trusted/echo/${name}`, { ca: certs.ca.cert, servername: name, rejectUnauthorized: name !== 'unknown.test' });
        await client.send(`over ${name}`);
        assert.equal((await client.next()).data.toString(), `over ${name}`);
      }
    });
  });

  describe('TLS to the backend', () => {
    test('a backend signed by a CA in rootCAs: messages flow both ways, and the backend sees wss', async () => {
      const client = await wss('/trusted/echo/1');
      const big = randomBytes(1024 * 1024);
      await client.send(big, { binary: true });
      assert.ok((await client.next()).data.equals(big), '1 MiB came back intact');
      await client.send('small');
      assert.equal((await client.next()).data.toString(), 'small');
      const req = trusted!.requests.find((r) => r.url === '/trusted/echo/1')!;
      assert.equal(req.headers['x-forwarded-proto'], 'wss');
      assert.ok((req.socket as TLSSocket).encrypted, 'the backend connection is TLS');
    });

    test('a burst of mixed sizes from a TLS backend arrives in order', async () => {
      const client = await wss('/trusted/burst');
      await until(() => trusted!.peers.has('/trusted/burst'), 2000, 'no backend connection');
      const server = trusted!.peers.get('/trusted/burst')!;
      const sizes = [5, 100, 5000, 70_000];
      for (let i = 0; i < 2000; i++) {
        const body = Buffer.alloc(sizes[i % sizes.length]!, i % 251);
        body.writeUInt32BE(i, 0);
        server.ws.send(body, { binary: true });
      }
      const got = await client.take(2000, 20_000);
      for (let i = 0; i < 2000; i++) {
        const data = got[i]!.data;
        if (data.length !== sizes[i % sizes.length] || data.readUInt32BE(0) !== i || data[data.length - 1] !== i % 251) assert.fail(`message ${i}: ${data.length} bytes starting ${data.subarray(0, 8).toString('hex')}`);
      }
    });

    test('serverName: the backend gets that SNI and its certificate is checked against that name', async () => {
      const client = await wss('/named/echo/1');
      await client.send('by name');
      assert.equal((await client.next()).data.toString(), 'by name');
      const req = trusted!.requests.find((r) => r.url === '/named/echo/1')!;
      assert.equal((req.socket as TLSSocket & { servername?: string }).servername, 'backend.test');
    });

    test('insecureSkipVerify: a self-signed backend is accepted', async () => {
      const client = await wss('/insecure/echo/1');
      await client.send('anything goes');
      assert.equal((await client.next()).data.toString(), 'anything goes');
    });

    test('an untrusted backend certificate without insecureSkipVerify: 502', async () => {
      const before = untrusted!.requests.length;
      await assert.rejects(wss('/untrusted/echo/1'), (error: unknown) => {
        assert.ok(error instanceof UpgradeRefused, String(error));
        assert.equal(error.status, 502);
        assert.match(error.body, /service 'untrusted'/);
        return true;
      });
      assert.equal(untrusted!.requests.length, before, 'no request reached the untrusted backend');
    });

    test('a TLS backend that vanishes closes its client with 1011', async () => {
      const client = await wss('/trusted/vanish');
      await until(() => trusted!.peers.has('/trusted/vanish'), 2000, 'no backend connection');
      trusted!.peers.get('/trusted/vanish')!.ws.terminate();
      assert.equal((await client.waitClose(2000)).code, 1011);
    });

    test('close codes pass both ways over TLS', async () => {
      const client = await wss('/trusted/close');
      await until(() => trusted!.peers.has('/trusted/close'), 2000, 'no backend connection');
      const server = trusted!.peers.get('/trusted/close')!;
      server.ws.close(4002, 'tls bye');
      assert.deepEqual(await client.waitClose(2000), { code: 4002, reason: 'tls bye' });

      const client2 = await wss('/trusted/close2');
      await until(() => trusted!.peers.has('/trusted/close2'), 2000, 'no backend connection');
      client2.ws.close(4001, 'bye');
      assert.deepEqual(await trusted!.peers.get('/trusted/close2')!.waitClose(2000), { code: 4001, reason: 'bye' });
    });
  });
});

describe('TLS from a router', () => {
  const certs = new CertificateFactory();
  const site = certs.issue('site', 'router.test', ['DNS:router.test']);
  let sluice: SluiceProcess | undefined;
  let backend: TlsBackend | undefined;

  before(async () => {
    backend = await startTlsBackend(certs.issue('backend', 'backend.test', ['IP:127.0.0.1']));
    sluice = await startSluice(
      `entryPoints:
  websecure:
    address: "127.0.0.1:{PORT}"
tls:
  certificates:
    - certFile: "${site.certFile}"
      keyFile: "${site.keyFile}"
http:
  routers:
    secure:
      rule: "PathPrefix(\`/\`)"
      service: pool
      entryPoints: [websecure]
      tls: {}
  services:
    pool:
      loadBalancer:
        serversTransport: testCA
        servers:
          - url: "${backend.url}"
  serversTransports:
    testCA:
      rootCAs:
        - "${certs.ca.certFile}"
`,
      { timeoutMs: 20_000 },
    );
  });
  afterEach(closeAllPeers);
  after(async () => {
    closeAllPeers();
    await sluice?.stop();
    await backend?.close();
    certs.remove();
  });

  test('a router with tls: {} makes its entry point serve wss://', async () => {
    const client = await connect(`wss://127.0.0.1:${sluice!.port}/echo/1`, { ca: certs.ca.cert, servername: 'router.test' });
    await client.send('routed over tls');
    assert.equal((await client.next()).data.toString(), 'routed over tls');
  });

  test('plain ws:// is not served on that entry point', async () => {
    await assert.rejects(connect(`ws://127.0.0.1:${sluice!.port}/echo/2`, { handshakeTimeout: 2000 }));
  });
});
