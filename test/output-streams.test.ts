/**
 * What `sluice run` writes where: standard output carries nothing but the access log (when accessLog has
 * no filePath), in whole JSON lines; uWebSockets.js's own C prints ("Browsed to SNI: …", at start for each
 * certificate name and later for each wildcard name a client brings) go to stderr with the structured log.
 * With the native addon (dup/dup2) over pipes and over files; without it (SLUICE_NATIVE=0, the /proc
 * fallback) over files, and over sockets, which it cannot reopen and says so.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import nativeAddon, { loadError } from '#native';
import { CertificateFactory, type CertificateFiles } from './helpers/certificates.js';
import { freePort, SLUICE_BIN, startBackend, startSluice, type TestBackend } from './helpers/sluice.js';
import { waitFor } from './helpers/wait.js';

let certificates: CertificateFactory;
let chat: CertificateFiles;
let wildcard: CertificateFiles;
let backend: TestBackend;

before(async () => {
  certificates = new CertificateFactory();
  chat = certificates.issue('chat', 'chat.test', ['DNS:chat.test']);
  wildcard = certificates.issue('wild', 'wild.test', ['DNS:*.wild.test']);
  backend = await startBackend();
});

after(async () => {
  await backend.close();
  certificates.remove();
});

/** A wss:// entry point with two certificates (one a wildcard), the access log on stdout. */
const CONFIG = (): string => `entryPoints:
  websecure:
    address: "127.0.0.1:{PORT}"
    http:
      tls: {}
tls:
  certificates:
    - certFile: "${chat.certFile}"
      keyFile: "${chat.keyFile}"
    - certFile: "${wildcard.certFile}"
      keyFile: "${wildcard.keyFile}"
accessLog: {}
http:
  routers:
    chat:
      rule: "Host(\`chat.test\`) || HostRegexp(\`^[a-z]+\\\\.wild\\\\.test$\`)"
      service: pool
      tls: {}
  services:
    pool:
      loadBalancer:
        servers:
          - url: "${backend.url}"
`;

interface Outcome {
  readonly stdout: string;
  readonly stderr: string;
}

/** One echoed message over wss:// with `name` as both SNI and Host, then a clean close. */
async function echoThrough(port: number, name: string): Promise<void> {
  // ws hands its options to tls.connect, so servername sets the SNI name (its types omit it).
  const options: WebSocket.ClientOptions & { servername: string } = { servername: name, headers: { host: name }, ca: certificates.ca.cert };
  const ws = new WebSocket(`wss://127.0.0.1:${port}/`, options);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => ws.send('hello'));
    ws.once('message', () => ws.close(1000));
    ws.once('close', () => resolve());
    ws.once('error', reject);
  });
}

/** chat.test (a name known at start), then two names of the wildcard certificate; waits for their log lines. */
async function threeConnections(port: number, stdout: () => string): Promise<void> {
  for (const name of ['chat.test', 'a.wild.test', 'b.wild.test']) await echoThrough(port, name);
  await waitFor('three access-log lines', () => stdout().split('\n').length > 3, stdout);
}

/** Sluice started by the shared helper: stdout and stderr are pipes (socket pairs, as a Node parent makes). */
async function runWithPipes(env: NodeJS.ProcessEnv): Promise<Outcome> {
  const sluice = await startSluice(CONFIG(), { workers: 2, env: { ...process.env, ...env } });
  try {
    await threeConnections(sluice.port, () => sluice.stdout());
  } finally {
    assert.equal(await sluice.stop(), 0);
    await sluice.drained();
  }
  return { stdout: sluice.stdout(), stderr: sluice.stderr() };
}

/** Sluice with stdout and stderr as files, as systemd's `StandardOutput=file:` and `StandardError=append:`. */
async function runWithFiles(env: NodeJS.ProcessEnv): Promise<Outcome> {
  const dir = mkdtempSync(path.join(tmpdir(), 'sluice-streams-'));
  try {
    const port = await freePort();
    const configFile = path.join(dir, 'sluice.yaml');
    writeFileSync(configFile, `${CONFIG().replaceAll('{PORT}', String(port))}admin:\n  address: "127.0.0.1:${await freePort()}"\n`);
    const outFile = path.join(dir, 'stdout');
    const errFile = path.join(dir, 'stderr');
    const out = openSync(outFile, 'w');
    const err = openSync(errFile, 'a');
    const child = spawn(process.execPath, [SLUICE_BIN, 'run', configFile, '--workers', '2'], { stdio: ['ignore', out, err], env: { ...process.env, ...env } });
    closeSync(out);
    closeSync(err);
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const read = (file: string) => (): string => readFileSync(file, 'utf8');
    try {
      await waitFor('sluice listening', () => read(errFile)().includes('sluice listening'), read(errFile), { timeoutMs: 10_000 });
      await threeConnections(port, read(outFile));
    } finally {
      child.kill('SIGTERM');
      assert.equal(await exited, 0);
    }
    return { stdout: read(outFile)(), stderr: read(errFile)() };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Exactly the three JSON access-log lines on stdout; the C prints on stderr. */
function assertSeparated({ stdout, stderr }: Outcome): void {
  const lines = stdout.split('\n');
  assert.equal(lines.pop(), '', 'stdout ends with a whole line');
  assert.equal(lines.length, 3, stdout);
  for (const line of lines) {
    const record = JSON.parse(line) as { kind: string; RouterName: string; CloseCode: number };
    assert.deepEqual([record.kind, record.RouterName, record.CloseCode], ['websocket', 'chat', 1000]);
  }
  // The C prints exist (or this test would prove nothing) and went to stderr: at start, then per wildcard name.
  for (const name of ['chat.test', 'a.wild.test', 'b.wild.test']) {
    assert.match(stderr, new RegExp(`^Browsed to SNI: ${name.replaceAll('.', '\\.')}$`, 'm'));
  }
  assert.doesNotMatch(stderr, /shares standard output/);
}

describe('stdout holds only the access log; uWebSockets.js prints go to stderr', () => {
  // Without a compiler `npm install` builds no addon, and Sluice uses the fallback tested below.
  const withAddon = { skip: nativeAddon === null ? `native addon not loaded: ${loadError?.message ?? ''}` : false };

  test('native addon, over pipes', withAddon, async () => {
    assertSeparated(await runWithPipes({}));
  });

  test('native addon, over files', withAddon, async () => {
    assertSeparated(await runWithFiles({}));
  });

  test('without the native addon (SLUICE_NATIVE=0), over files: reopened through /proc', { skip: process.platform !== 'linux' }, async () => {
    assertSeparated(await runWithFiles({ SLUICE_NATIVE: '0' }));
  });

  test('without the native addon, over sockets: cannot be separated, and the log says so once', async () => {
    const { stdout, stderr } = await runWithPipes({ SLUICE_NATIVE: '0' });
    const warnings = stderr.split('\n').filter((line) => line.includes('shares standard output'));
    assert.equal(warnings.length, 1, stderr);
    assert.match(warnings[0]!, /"level":"warn".*\(SLUICE_NATIVE=0 turned the native addon off, and standard output is a socket, which cannot be reopened\): set accessLog\.filePath to keep it apart/);
    assert.equal(stdout.split('\n').filter((line) => line.startsWith('{')).length, 3);
  });
});
