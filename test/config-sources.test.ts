/**
 * Where the configuration comes from and when it is read again: Traefik's static file naming a directory
 * (or one file) of dynamic configuration, merged, with a conflict naming both files; the directory watched
 * (a file added, changed, deleted); the static file read at start only; SIGHUP; a certificate rewritten
 * in place served to new connections.
 */
import { afterEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import type { WebSocket } from 'ws';
import { ConfigError } from '../src/config/errors.js';
import { loadConfig } from '../src/config/load.js';
import { connect, roundTrip, terminateAll, tryUpgrade } from './helpers/clients.js';
import { runSluiceCommand, tempFiles } from './helpers/cli.js';
import { CertificateFactory } from './helpers/certificates.js';
import { startBackend, startSluice, type SluiceProcess, type TestBackend } from './helpers/sluice.js';
import { waitFor } from './helpers/wait.js';

const STATIC = `entryPoints:
  web: { address: "127.0.0.1:{PORT}" }
providers:
  file: { directory: dynamic, watch: true }
`;

function routerFile(name: string, path_: string, backendUrl: string): string {
  return `http:
  routers:
    ${name}: { rule: "PathPrefix(\`${path_}\`)", service: ${name} }
  services:
    ${name}: { loadBalancer: { servers: [ { url: "${backendUrl}" } ] } }
`;
}

function namedEcho(name: string): Promise<TestBackend> {
  return startBackend((ws) => ws.on('message', (data) => ws.send(`${name}:${String(data)}`)));
}

const cleanup: { sluice?: SluiceProcess; backends: TestBackend[]; clients: WebSocket[]; files?: { remove(): void } } = { backends: [], clients: [] };
afterEach(async () => {
  terminateAll(cleanup.clients);
  await cleanup.sluice?.stop();
  await Promise.all(cleanup.backends.map((b) => b.close()));
  cleanup.files?.remove();
  cleanup.sluice = undefined;
  cleanup.files = undefined;
  cleanup.backends = [];
  cleanup.clients = [];
});

async function echoOn(sluice: SluiceProcess, path_: string): Promise<string> {
  const ws = await connect(`${sluice.url}${path_}`);
  cleanup.clients.push(ws);
  return roundTrip(ws, 'hi');
}

async function statusOn(sluice: SluiceProcess, path_: string): Promise<string | number> {
  const outcome = await tryUpgrade(`${sluice.url}${path_}`);
  return outcome.kind === 'open' ? 'open' : outcome.status;
}

/** Wait until the log shows `n` successful reloads in all. */
function reloads(sluice: SluiceProcess, n: number): Promise<void> {
  return waitFor(`${n} reload(s)`, () => (sluice.stderr().match(/config reloaded/g) ?? []).length >= n, () => sluice.stderr().split('\n').slice(-5).join('\n'), { timeoutMs: 5000 });
}

describe('Traefik static file with a directory of dynamic files', () => {
  test('merges the files, and follows a file added, changed and deleted', async () => {
    const a = await namedEcho('a');
    const b = await namedEcho('b');
    cleanup.backends.push(a, b);
    const sluice = (cleanup.sluice = await startSluice(STATIC, { files: { 'dynamic/a.yaml': routerFile('a', '/a', a.url), 'dynamic/notes.txt': 'not config' } }));
    assert.equal(await echoOn(sluice, '/a'), 'a:hi');
    assert.equal(await statusOn(sluice, '/b'), 404);

    writeFileSync(path.join(sluice.dir, 'dynamic/b.yaml'), routerFile('b', '/b', b.url));
    await reloads(sluice, 1);
    assert.equal(await echoOn(sluice, '/b'), 'b:hi');

    writeFileSync(path.join(sluice.dir, 'dynamic/b.yaml'), routerFile('b', '/bee', b.url));
    await reloads(sluice, 2);
    assert.equal(await statusOn(sluice, '/b'), 404);
    assert.equal(await echoOn(sluice, '/bee'), 'b:hi');

    rmSync(path.join(sluice.dir, 'dynamic/b.yaml'));
    await reloads(sluice, 3);
    assert.equal(await statusOn(sluice, '/bee'), 404);
    assert.equal(await echoOn(sluice, '/a'), 'a:hi');
  });

  test('a router defined differently in two files is refused, naming both; the running config stays', async () => {
    const a = await namedEcho('a');
    cleanup.backends.push(a);
    const sluice = (cleanup.sluice = await startSluice(STATIC, { files: { 'dynamic/a.yaml': routerFile('a', '/a', a.url) } }));
    writeFileSync(path.join(sluice.dir, 'dynamic/z.yaml'), routerFile('a', '/zzz', a.url));
    await waitFor('the refusal', () => sluice.stderr().includes('refused'), () => sluice.stderr(), { timeoutMs: 5000 });
    const dir = path.dirname(sluice.configFile);
    assert.match(sluice.stderr(), new RegExp(`${dir}/dynamic/z\\.yaml: http\\.routers\\.a: defined differently in ${dir}/dynamic/a\\.yaml and ${dir}/dynamic/z\\.yaml \\(expected one definition, or identical ones\\)`));
    assert.equal(await echoOn(sluice, '/a'), 'a:hi');
  });

  test('the static file is read at start only: a change is logged, not applied', async () => {
    const a = await namedEcho('a');
    cleanup.backends.push(a);
    const sluice = (cleanup.sluice = await startSluice(STATIC, { files: { 'dynamic/a.yaml': routerFile('a', '/a', a.url) } }));
    writeFileSync(sluice.configFile, `${readFileSync(sluice.configFile, 'utf8')}\nworkers: 3\n`);
    await waitFor('the log line about the static file', () => /static configuration .* changed: entry points and providers are read at start; restart Sluice \(or sluice run --takeover\)/.test(sluice.stderr()), () => sluice.stderr(), { timeoutMs: 5000 });
    assert.doesNotMatch(sluice.stderr(), /config reloaded/);
  });
});

describe('merging (sluice validate)', () => {
  test('identical duplicates are fine; conflicts and misplaced static keys name their files', () => {
    const files = tempFiles({
      'traefik.yml': 'entryPoints:\n  web: { address: ":8080" }\nproviders:\n  file: { directory: conf }\nwebsocket: { maxMessageSize: 1MiB }\n',
    });
    cleanup.files = files;
    const write = (name: string, text: string): void => writeFileSync(files.file(name), text);
    mkdirSync(files.file('conf'));
    write('conf/1.yaml', routerFile('chat', '/', 'ws://10.0.0.1:9000'));
    write('conf/2.yaml', routerFile('chat', '/', 'ws://10.0.0.1:9000'));
    write('conf/3.toml', '[websocket]\nmaxMessageSize = "2MiB"\n[entryPoints.other]\naddress = ":9000"\n');
    const main = files.file('traefik.yml');
    try {
      loadConfig(main);
      assert.fail('expected a ConfigError');
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      const conf = path.join(path.dirname(main), 'conf');
      assert.deepEqual(error.format().split('\n'), [
        `${conf}/3.toml: websocket.maxMessageSize: set to different values in ${main} and ${conf}/3.toml (expected one value)`,
        `${conf}/3.toml: entryPoints: 'entryPoints' belongs in the static configuration ${main} (expected only dynamic keys such as http and tls in a dynamic file)`,
      ]);
    }
  });

  test('a problem in a dynamic file names that file; sluice validate checks the whole set', async () => {
    const files = tempFiles({ 'traefik.yml': 'entryPoints:\n  web: { address: ":8080" }\nproviders:\n  file: { filename: dynamic.yaml }\n', 'dynamic.yaml': routerFile('chat', '/', 'ws//broken') });
    cleanup.files = files;
    const result = await runSluiceCommand(['validate', files.file('traefik.yml')]);
    assert.equal(result.code, 2);
    assert.match(result.stderr + result.stdout, new RegExp(`${files.file('dynamic.yaml')}: http\\.services\\.chat\\.loadBalancer\\.servers\\[0\\]\\.url: invalid URL 'ws//broken'`));
  });
});

describe('SIGHUP', () => {
  test('reloads the dynamic configuration even when it is not watched', async () => {
    const a = await namedEcho('a');
    const b = await namedEcho('b');
    cleanup.backends.push(a, b);
    const unwatched = STATIC.replace('watch: true', 'watch: false');
    const sluice = (cleanup.sluice = await startSluice(unwatched, { files: { 'dynamic/pool.yaml': routerFile('pool', '/', a.url) } }));
    assert.equal(await echoOn(sluice, '/'), 'a:hi');
    writeFileSync(path.join(sluice.dir, 'dynamic/pool.yaml'), routerFile('pool', '/', b.url));
    sluice.child.kill('SIGHUP');
    await waitFor('the reload', () => sluice.stderr().includes('config reloaded (SIGHUP)'), () => sluice.stderr(), { timeoutMs: 5000 });
    assert.equal(await echoOn(sluice, '/'), 'b:hi');
  });
});

describe('a certificate rewritten in place', () => {
  test('is served to new connections after the reload it triggers; open connections stay', async () => {
    const a = await namedEcho('a');
    cleanup.backends.push(a);
    const factory = new CertificateFactory();
    cleanup.files = { remove: () => factory.remove() };
    const first = factory.selfSigned('server', 'localhost', ['DNS:localhost']);
    const config = `entryPoints:\n  websecure: { address: "127.0.0.1:{PORT}", http: { tls: {} } }\ntls:\n  certificates:\n    - { certFile: "${first.certFile}", keyFile: "${first.keyFile}" }\nhttp:\n  routers:\n    pool: { rule: "PathPrefix(\`/\`)", service: pool, tls: {} }\n  services:\n    pool: { loadBalancer: { servers: [ { url: "${a.url}" } ] } }\n`;
    const sluice = (cleanup.sluice = await startSluice(config));
    const fingerprint = (): Promise<string> =>
      new Promise((resolve, reject) => {
        const socket = tls.connect({ host: '127.0.0.1', port: sluice.port, servername: 'localhost', rejectUnauthorized: false }, () => {
          resolve(socket.getPeerCertificate().fingerprint256);
          socket.destroy();
        });
        socket.once('error', reject);
      });
    const before = await fingerprint();
    const open = await connect(`wss://127.0.0.1:${sluice.port}/`, { rejectUnauthorized: false });
    cleanup.clients.push(open);
    // cert-manager renews in place: the same file names, new content.
    const renewed = factory.selfSigned('renewed', 'localhost', ['DNS:localhost']);
    writeFileSync(first.certFile, readFileSync(renewed.certFile));
    writeFileSync(first.keyFile, readFileSync(renewed.keyFile));
    await reloads(sluice, 1);
    const after_ = await fingerprint();
    assert.notEqual(after_, before);
    assert.equal(await roundTrip(open, 'still'), 'a:still');
  });
});
