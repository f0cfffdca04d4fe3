/**
 * Traefik's tls.options on a TLS entry point: cipherSuites become uWebSockets.js's ssl_ciphers (TLS 1.2
 * handshakes offering only other suites fail), sniStrict answers no certificate to unknown or absent names,
 * and a reload that changes them opens a new app with the new settings (they are fixed per uWS app).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';

import { CertificateFactory } from './helpers/certificates.js';
import { closeAllPeers, connect } from './helpers/peer.js';
import { startBackend, startSluice, type SluiceProcess, type TestBackend } from './helpers/sluice.js';
import { waitFor } from './helpers/wait.js';

const certs = new CertificateFactory();
const site = certs.issue('site-a', 'a.test', ['DNS:a.test']);
let backend: TestBackend;
let sluice: SluiceProcess | null = null;

function config(options: string): string {
  return `entryPoints:
  websecure:
    address: "127.0.0.1:{PORT}"
    http:
      tls: {}
http:
  routers:
    a:
      rule: "Host(\`a.test\`)"
      service: echo
      tls: {}
  services:
    echo:
      loadBalancer:
        servers:
          - url: "ws://127.0.0.1:${backend.port}"
tls:
  certificates:
    - certFile: "${site.certFile}"
      keyFile: "${site.keyFile}"
  options:
    default:
${options}
`;
}

/** openssl s_client's output (a failed handshake is an outcome, not an error). */
function sClient(port: number, args: string[]): Promise<string> {
  return new Promise((resolve) => {
    const child = execFile('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, ...args], { timeout: 10_000 }, (_e, stdout, stderr) => resolve(`${stdout}\n${stderr}`));
    child.stdin?.end();
  });
}

const handshakeOk = /New, TLSv1\.[23], Cipher is (?!\(NONE\))/;

before(async () => {
  backend = await startBackend();
});

after(async () => {
  closeAllPeers();
  await sluice?.stop();
  await backend.close();
  certs.remove();
});

describe('tls.options', () => {
  test('cipherSuites limit TLS 1.2 to the suites named; a reload with other suites and sniStrict applies them', async () => {
    sluice = await startSluice(config('      cipherSuites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256]'));
    const port = sluice.port;
    const aes128 = ['-servername', 'a.test', '-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-GCM-SHA256'];
    const aes256 = ['-servername', 'a.test', '-tls1_2', '-cipher', 'ECDHE-ECDSA-AES256-GCM-SHA384'];
    assert.match(await sClient(port, aes128), /New, TLSv1\.2, Cipher is ECDHE-ECDSA-AES128-GCM-SHA256/);
    assert.match(await sClient(port, aes256), /handshake failure/);
    // Without sniStrict, a name no certificate carries still gets the default certificate.
    assert.match(await sClient(port, ['-servername', 'unknown.test']), handshakeOk);

    const before = sluice.stderr().split('config reloaded').length;
    writeFileSync(
      sluice.configFile,
      `${config('      cipherSuites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]\n      sniStrict: true').replace('{PORT}', String(port))}admin:\n  address: "127.0.0.1:${sluice.adminPort}"\n`,
    );
    sluice.child.kill('SIGHUP');
    await waitFor('the reload', () => sluice!.stderr().split('config reloaded').length > before, () => sluice!.stderr(), { timeoutMs: 10_000 });

    assert.match(await sClient(port, aes256), /New, TLSv1\.2, Cipher is ECDHE-ECDSA-AES256-GCM-SHA384/);
    assert.match(await sClient(port, aes128), /handshake failure/);
    assert.match(await sClient(port, ['-servername', 'a.test']), handshakeOk);
    const unknown = await sClient(port, ['-servername', 'unknown.test']);
    assert.doesNotMatch(unknown, handshakeOk, unknown);
    assert.doesNotMatch(await sClient(port, ['-noservername']), handshakeOk);

    // WebSockets still flow through the new app.
    const peer = await connect(`wss://127.0.0.1:${port}/`, { headers: { host: 'a.test' }, servername: 'a.test', ca: certs.ca.cert });
    peer.ws.send('after reload');
    assert.equal(String((await peer.next()).data), 'after reload');
    peer.ws.close();
  });
});
