/**
 * Traefik's WebSocket guide runs unchanged: its four file-provider examples (basic in YAML and TOML, TLS
 * termination, end-to-end TLS with insecureSkipVerify), with only the addresses changed, start Sluice with
 * the guide's static entry points (web, websecure; nothing marks websecure as TLS) and echo through ws:// or
 * wss://. Golden files beside each example hold the startup lines a user reads: one per entry point, and the
 * warning about the generated default certificate. Also: that certificate itself, and TLS 1.1 refused.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';

import { CertificateFactory } from './helpers/certificates.js';
import { closeAllPeers, connect } from './helpers/peer.js';
import { freePort, startBackend, startSluice, type SluiceProcess, type TestBackend } from './helpers/sluice.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const fixtures = join(repoRoot, 'test/fixtures/traefik-websocket');
const updateGolden = process.env.UPDATE_GOLDEN === '1';

interface Started {
  readonly sluice: SluiceProcess;
  readonly web: number;
  readonly websecure: number;
  readonly dir: string;
  readonly dynamic: string;
}

let backend: TestBackend;
let tlsBackend: { port: number; close(): Promise<void> };
const certs = new CertificateFactory();
const running: Started[] = [];

/** Start Sluice with the guide's static file and `example` as its dynamic file, on free ports. */
async function startExample(example: string): Promise<Started> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-guide-'));
  const dynamic = join(dir, example);
  writeFileSync(
    dynamic,
    readFileSync(join(fixtures, example), 'utf8').replaceAll('{BACKEND}', String(backend.port)).replaceAll('{TLS_BACKEND}', String(tlsBackend.port)),
  );
  const websecure = await freePort();
  const config = readFileSync(join(fixtures, 'static.yaml'), 'utf8')
    .replaceAll('{WEB}', '{PORT}')
    .replaceAll('{WEBSECURE}', String(websecure))
    .replaceAll('{DYNAMIC}', dynamic);
  const sluice = await startSluice(config);
  const started = { sluice, web: sluice.port, websecure, dir, dynamic };
  running.push(started);
  return started;
}

/** The startup lines a user reads about entry points and certificates, with ports and paths as placeholders. */
function startupLines(started: Started): string {
  const lines: string[] = [];
  for (const line of started.sluice.stderr().split('\n')) {
    if (!line.startsWith('{')) continue;
    const msg = (JSON.parse(line) as { msg?: string }).msg ?? '';
    if (/^entry point \S+ \(/.test(msg) || msg.includes('self-signed certificate')) lines.push(msg);
  }
  return `${lines
    .join('\n')
    .replaceAll(started.sluice.configFile, '{CONFIG}')
    .replaceAll(started.dynamic, '{DYNAMIC}')
    .replaceAll(`:${started.web})`, ':{WEB})')
    .replaceAll(`:${started.websecure})`, ':{WEBSECURE})')}\n`;
}

function checkGolden(example: string, actual: string): void {
  const file = join(fixtures, example.replace(/\.(ya?ml|toml)$/, '.$1.startup'));
  if (updateGolden) writeFileSync(file, actual);
  assert.equal(actual, readFileSync(file, 'utf8'));
}

/** Send a message through Sluice and expect it back. */
async function echo(url: string, host: string, tls: boolean): Promise<void> {
  const peer = await connect(url, { headers: { host }, ...(tls ? { servername: host, rejectUnauthorized: false } : {}) });
  peer.ws.send(`hello ${host}`);
  assert.equal(String((await peer.next()).data), `hello ${host}`);
  peer.ws.close();
}

/** The certificate served for `servername` on `port`, DER-decoded. */
function servedCertificate(port: number, servername: string): Promise<X509Certificate> {
  return new Promise((resolvePromise, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false });
    socket.once('secureConnect', () => {
      resolvePromise(new X509Certificate(socket.getPeerCertificate().raw));
      socket.destroy();
    });
    socket.once('error', reject);
  });
}

/** openssl s_client's output for a handshake with `args`; never throws (a failed handshake is the point). */
function sClient(port: number, args: string[]): Promise<string> {
  return new Promise((resolvePromise) => {
    const child = execFile('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'wss.example.com', ...args], { timeout: 10_000 }, (_error, stdout, stderr) =>
      resolvePromise(`${stdout}\n${stderr}`),
    );
    child.stdin?.end();
  });
}

before(async () => {
  backend = await startBackend();
  const backendCert = certs.selfSigned('wss-backend', 'my-wss-server', ['DNS:my-wss-server']);
  const server = createHttpsServer({ cert: backendCert.cert, key: backendCert.key });
  const wss = new WebSocketServer({ server, perMessageDeflate: false });
  wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data as Buffer, { binary: isBinary })));
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  tlsBackend = {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((done) => {
        for (const ws of wss.clients) ws.terminate();
        wss.close();
        server.closeAllConnections();
        server.close(() => done());
      }),
  };
});

after(async () => {
  closeAllPeers();
  for (const started of running) {
    await started.sluice.stop();
    rmSync(started.dir, { recursive: true, force: true });
  }
  await backend.close();
  await tlsBackend.close();
  certs.remove();
});

describe("Traefik's WebSocket guide, addresses changed", () => {
  for (const example of ['basic.yaml', 'basic.toml']) {
    test(`${example}: ws:// echoes on both entry points, which stay plain`, async () => {
      const { sluice, web, websecure } = await startExample(example);
      await echo(`ws://127.0.0.1:${web}/`, 'ws.example.com', false);
      await echo(`ws://127.0.0.1:${websecure}/`, 'ws.example.com', false);
      checkGolden(example, startupLines(running.at(-1)!));
      assert.equal(sluice.child.exitCode, null);
    });
  }

  test('tls-termination.yaml: websecure serves TLS by convention, wss:// echoes to a ws:// backend', async () => {
    const started = await startExample('tls-termination.yaml');
    await echo(`wss://127.0.0.1:${started.websecure}/`, 'wss.example.com', true);
    checkGolden('tls-termination.yaml', startupLines(started));
  });

  test('end-to-end.yaml: wss:// to Sluice, wss:// with insecureSkipVerify to a self-signed backend', async () => {
    const started = await startExample('end-to-end.yaml');
    await echo(`wss://127.0.0.1:${started.websecure}/some/path?q=1`, 'wss.example.com', true);
    checkGolden('end-to-end.yaml', startupLines(started));
  });
});

describe('the generated default certificate', () => {
  test('self-signed, for the host names no certificate covers, and verifiable as its own root', async () => {
    const started = running.find((s) => s.sluice.configFile !== '' && startupLines(s).includes('my-wss-termination')) ?? (await startExample('tls-termination.yaml'));
    const served = await servedCertificate(started.websecure, 'wss.example.com');
    assert.equal(served.subject, 'CN=SLUICE DEFAULT CERT');
    assert.equal(served.issuer, served.subject);
    assert.equal(served.subjectAltName, 'DNS:wss.example.com');
    assert.ok(served.verify(served.publicKey), 'signed with its own key');
    assert.equal(served.checkHost('wss.example.com'), 'wss.example.com');
    // A client that is given the certificate trusts it for that name: a real, usable certificate.
    const peer = await connect(`wss://127.0.0.1:${started.websecure}/`, { headers: { host: 'wss.example.com' }, servername: 'wss.example.com', ca: served.toString() });
    peer.ws.send('trusted');
    assert.equal(String((await peer.next()).data), 'trusted');
    peer.ws.close();
    // Clients asking for another name get the same certificate (it is the only one), which does not match.
    const other = await servedCertificate(started.websecure, 'other.example.com');
    assert.equal(other.fingerprint256, served.fingerprint256);
  });
});

describe('TLS versions', () => {
  test('TLS 1.1 is refused, TLS 1.2 and 1.3 are served', async () => {
    const started = running.find((s) => startupLines(s).includes('my-wss-termination')) ?? (await startExample('tls-termination.yaml'));
    // Without SECLEVEL=0, OpenSSL 3 will not even offer TLS 1.1 and the refusal would prove nothing.
    const tls11 = await sClient(started.websecure, ['-tls1_1', '-cipher', 'DEFAULT@SECLEVEL=0']);
    assert.match(tls11, /alert protocol version/, tls11);
    assert.match(tls11, /Cipher is \(NONE\)/);
    const tls12 = await sClient(started.websecure, ['-tls1_2', '-cipher', 'DEFAULT@SECLEVEL=0']);
    assert.match(tls12, /New, TLSv1\.2, Cipher is /, tls12);
    const tls13 = await sClient(started.websecure, ['-tls1_3']);
    assert.match(tls13, /New, TLSv1\.3, Cipher is /, tls13);
  });
});
