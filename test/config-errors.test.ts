/**
 * Golden tests for the config loader, in Caddy's style: each test/fixtures/config/NAME.yaml (or .toml) has a
 * NAME.expected holding the exact text a user sees: the problems (then the warnings) as `sluice validate`
 * prints them, or, for a valid file, its warnings and the compiled snapshot as JSON. Run with UPDATE_GOLDEN=1 to rewrite the expected files, then
 * review the diff. Certificates are generated per run with openssl, so no private key lives in test/.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { runValidate } from '../src/cli/validate.js';
import { generatedCertificateDirectory } from '../src/config/default-certificate.js';
import { QuantityError, parseDuration, parseSize } from '../src/config/duration.js';
import { ConfigError, closest, formatWarning } from '../src/config/errors.js';
import type { ConfigWarning } from '../src/config/errors.js';
import { loadConfigFile, loadConfigText, loadConfigTextWithWarnings } from '../src/config/load.js';
import { refusedEntries, schemaEntries } from '../src/config/schema.js';
import type { Snapshot } from '../src/config/snapshot.js';

// Compiled to dist/test/; the fixtures stay in the source tree.
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const fixtures = join(repoRoot, 'test/fixtures/config');
const updateGolden = process.env.UPDATE_GOLDEN === '1';

let workDir = '';

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: 'ignore' });
}

/** certs/localhost.{crt,key}, certs/other.{crt,key}, certs/ca.crt and a non-PEM file, under a temp dir. */
function makeCertificates(dir: string): void {
  const certs = join(dir, 'certs');
  mkdirSync(certs, { recursive: true });
  const selfSigned = (name: string, subject: string, san: string): void =>
    openssl([
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
      '-subj', subject, '-addext', `subjectAltName=${san}`,
      '-keyout', join(certs, `${name}.key`), '-out', join(certs, `${name}.crt`),
    ]);
  selfSigned('localhost', '/CN=localhost', 'DNS:localhost,DNS:*.Example.com,IP:127.0.0.1');
  selfSigned('other', '/CN=other.example.net', 'DNS:other.example.net');
  selfSigned('ca', '/CN=Test CA', 'DNS:ca.test');
  writeFileSync(join(certs, 'not-pem.txt'), 'this is not PEM\n');
}

/** Snapshot as JSON with the per-run parts (temp dir, generated PEM and its hash) replaced by stable placeholders. */
function dumpSnapshot(snapshot: Snapshot): string {
  const json = JSON.stringify(
    snapshot,
    (key, value: unknown) => {
      if (key === 'rootCAs' && typeof value === 'string' && value !== '') {
        return `<PEM: ${value.match(/-----BEGIN CERTIFICATE-----/g)?.length ?? 0} certificate(s)>`;
      }
      if (typeof value === 'string' && value.startsWith(workDir)) return `<dir>${value.slice(workDir.length)}`;
      const generated = generatedCertificateDirectory();
      if (typeof value === 'string' && generated !== '' && value.startsWith(generated)) return `<generated>${value.slice(generated.length)}`;
      if (key === 'fingerprint' && typeof value === 'string') return '<sha256 of the certificate and key files>';
      return value;
    },
    2,
  );
  return `${json}\n`;
}

/** Warning lines as `sluice validate` prints them (after the errors, or before the snapshot). */
function warningLines(warnings: readonly ConfigWarning[]): string {
  return warnings.map((warning) => `${formatWarning(warning)}\n`).join('');
}

function outcome(name: string): string {
  const format = name.endsWith('.toml') ? 'toml' : 'yaml';
  const text = readFileSync(join(fixtures, name), 'utf8');
  try {
    const { snapshot, warnings } = loadConfigTextWithWarnings(text, format, name, workDir);
    return warningLines(warnings) + dumpSnapshot(snapshot);
  } catch (error) {
    if (error instanceof ConfigError) return `${error.format()}\n${warningLines(error.warnings)}`;
    throw error;
  }
}

function collect(): { stream: Writable; text: () => string } {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      text += chunk.toString();
      done();
    },
  });
  return { stream, text: () => text };
}

before(() => {
  workDir = mkdtempSync(join(tmpdir(), 'sluice-config-'));
  makeCertificates(workDir);
});

after(() => {
  rmSync(workDir, { recursive: true, force: true });
});

describe('golden config files', () => {
  const cases = readdirSync(fixtures).filter((f) => /\.(ya?ml|toml)$/.test(f)).sort();

  test('there are at least 15 cases', () => {
    assert.ok(cases.length >= 15, `only ${cases.length} cases`);
  });

  for (const name of cases) {
    test(name, () => {
      const expectedFile = join(fixtures, name.replace(/\.(ya?ml|toml)$/, '.expected'));
      const actual = outcome(name);
      if (updateGolden) writeFileSync(expectedFile, actual);
      assert.ok(existsSync(expectedFile), `missing ${expectedFile} (run with UPDATE_GOLDEN=1 to create it)`);
      assert.equal(actual, readFileSync(expectedFile, 'utf8'));
    });
  }

  test('good-yaml.yaml and good-toml.toml compile to the same snapshot', () => {
    const yaml = loadConfigText(readFileSync(join(fixtures, 'good-yaml.yaml'), 'utf8'), 'yaml', 'x', workDir);
    const toml = loadConfigText(readFileSync(join(fixtures, 'good-toml.toml'), 'utf8'), 'toml', 'x', workDir);
    assert.deepEqual(yaml, toml);
  });
});

describe('loader', () => {
  const v2Config = (rules: string[]): string =>
    `entryPoints: { web: { address: ":8080" } }\nhttp:\n  routers:\n${rules
      .map((rule, i) => `    r${i}: { rule: ${JSON.stringify(rule)}, service: s }\n`)
      .join('')}  services:\n    s: { loadBalancer: { servers: [ { url: "ws://127.0.0.1:9001" } ] } }\n`;

  test('warnings come back beside the snapshot, one per v2 form, with file and key path, in document order', () => {
    const text = v2Config(['Host(`a`) && Headers(`X-A`, `1`)', 'Path(`/v3/only`)', 'Host(`a`, `b`)']);
    const { snapshot, warnings } = loadConfigTextWithWarnings(text, 'yaml', 'v2.yaml', workDir);
    assert.equal(snapshot.routers.length, 3);
    assert.deepEqual(warnings, [
      { file: 'v2.yaml', path: 'http.routers.r0.rule', message: "Traefik v2 syntax 'Headers(`X-A`, `1`)' at column 14 (Traefik v3 form: Header(`X-A`, `1`))" },
      { file: 'v2.yaml', path: 'http.routers.r2.rule', message: "Traefik v2 syntax 'Host(`a`, `b`)' at column 1 (Traefik v3 form: Host(`a`) || Host(`b`))" },
    ]);
    assert.equal(
      formatWarning(warnings[1]!),
      "v2.yaml: http.routers.r2.rule: warning: Traefik v2 syntax 'Host(`a`, `b`)' at column 1 (Traefik v3 form: Host(`a`) || Host(`b`))",
    );
    // The snapshot is the same with or without asking for warnings.
    assert.deepEqual(loadConfigText(text, 'yaml', 'v2.yaml', workDir), snapshot);
  });

  test('a config with errors carries its warnings on the ConfigError, and the errors alone in format()', () => {
    const text = v2Config(['Headers(`X-A`, `1`)', 'HostSNI(`a`)']);
    assert.throws(
      () => loadConfigTextWithWarnings(text, 'yaml', 'v2.yaml', workDir),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.match(error.format(), /^v2\.yaml: http\.routers\.r1\.rule: invalid rule 'HostSNI\(`a`\)': HostSNI is a TCP router matcher/);
        assert.equal(error.format().split('\n').length, 1);
        assert.deepEqual(error.warnings.map((w) => w.path), ['http.routers.r0.rule']);
        return true;
      },
    );
  });

  test('a v3 config has no warnings', () => {
    const { warnings } = loadConfigTextWithWarnings(v2Config(['Host(`a`) || Host(`b`)', 'Header(`X-A`, `1`)']), 'yaml', 'v3.yaml', workDir);
    assert.deepEqual(warnings, []);
  });

  test('the snapshot is deep-frozen', () => {
    const snapshot = loadConfigText(readFileSync(join(fixtures, 'good-yaml.yaml'), 'utf8'), 'yaml', 'x', workDir);
    assert.ok(Object.isFrozen(snapshot));
    assert.ok(Object.isFrozen(snapshot.routers[0]!.ast));
    assert.ok(Object.isFrozen(snapshot.services[0]!.backends));
    assert.throws(() => {
      (snapshot.websocket as { maxMessageSize: number }).maxMessageSize = 1;
    }, TypeError);
  });

  test('the --workers override wins over the file, and is checked', () => {
    const text = readFileSync(join(fixtures, 'good-yaml.yaml'), 'utf8');
    assert.equal(loadConfigText(text, 'yaml', 'x', workDir, { workers: 7 }).workers, 7);
    assert.throws(() => loadConfigText(text, 'yaml', 'x', workDir, { workers: 0 }), /--workers 0 is invalid/);
  });

  test('defaults apply when Sluice keys are absent', () => {
    const snapshot = loadConfigText('entryPoints: { web: { address: ":8080" } }', 'yaml', 'x', workDir);
    assert.ok(snapshot.workers >= 1);
    assert.deepEqual(snapshot.websocket, {
      maxMessageSize: 16 * 1024 * 1024,
      clientHighWaterMark: 256 * 1024,
      clientMaxBuffer: 32 * 1024 * 1024,
      upstreamWriteBudget: 32 * 1024 * 1024,
      idleTimeoutSeconds: 120,
      handshakeTimeoutMs: 5_000,
      pingIntervalMs: 30_000,
      pongTimeoutMs: 15_000,
    });
    assert.deepEqual(snapshot.entryPoints.map((ep) => ep.lifeCycle), snapshot.entryPoints.map(() => ({ acceptGraceMs: 0, graceMs: 10_000 })));
    assert.deepEqual(snapshot.transports, [
      { name: 'default', insecureSkipVerify: false, rootCAs: '', serverName: '', dialTimeoutMs: 5000, responseHeaderTimeoutMs: 0, idleConnTimeoutMs: 90_000, maxIdleConnsPerHost: 200, websocketCompression: false },
    ]);
    assert.deepEqual(snapshot.entryPoints[0]!.compression, { mode: 'off', threshold: 1024, dedicatedCompressor: '32KB', decompressor: 'shared' });
  });

  test('passive health checks are on without passiveHealthCheck; maxFailedAttempts: 0 turns them off', () => {
    const services = (lines: string): string => `entryPoints: { web: { address: ":8080" } }
http:
  routers: { r: { rule: "PathPrefix(\`/\`)", service: s } }
  services:
    s:
      loadBalancer:
        servers: [ { url: "ws://127.0.0.1:9001" } ]
${lines}`;
    const passive = (lines: string): unknown => loadConfigText(services(lines), 'yaml', 'x', workDir).services[0]!.passiveHealthCheck;
    assert.deepEqual(passive(''), { maxFailedAttempts: 3, failureWindowMs: 10_000, maxEjectionMs: 300_000 });
    assert.equal(passive('        passiveHealthCheck: { maxFailedAttempts: 0 }'), null);
    // Written out, it takes Traefik's defaults (one failure).
    assert.deepEqual(passive('        passiveHealthCheck: {}'), { maxFailedAttempts: 1, failureWindowMs: 10_000, maxEjectionMs: 300_000 });
  });

  test('an entry point\'s compression keys override the global ones, one by one', () => {
    const snapshot = loadConfigText(
      `entryPoints:
  web: { address: ":8080" }
  feeds: { address: ":8081", websocket: { compression: dedicated, dedicatedCompressor: 8KB } }
  plain: { address: ":8082", websocket: { compression: "off" } }
websocket: { compression: shared, compressionThreshold: 2KiB, decompressor: 4KB }
`,
      'yaml', 'x', workDir,
    );
    assert.deepEqual(snapshot.entryPoints.map((ep) => ep.compression), [
      { mode: 'shared', threshold: 2048, dedicatedCompressor: '32KB', decompressor: '4KB' },
      { mode: 'dedicated', threshold: 2048, dedicatedCompressor: '8KB', decompressor: '4KB' },
      { mode: 'off', threshold: 2048, dedicatedCompressor: '32KB', decompressor: '4KB' },
    ]);
  });

  test('loadConfigFile picks the format by extension and resolves certificates from the file', () => {
    const snapshot = loadConfigFile(join(repoRoot, 'config/examples/traefik-websocket.toml'));
    assert.equal(snapshot.certificates[0]!.certFile, join(repoRoot, 'config/examples/certs/localhost.crt'));
    assert.throws(() => loadConfigFile(join(workDir, 'sluice.json')), /unknown file type '.json'/);
    assert.throws(() => loadConfigFile(join(workDir, 'absent.yaml')), /cannot read config file: no such file/);
  });

  test('the shipped configs validate, and the YAML and TOML examples agree', () => {
    for (const file of ['config/sluice.yaml', 'config/examples/traefik-websocket.yaml']) {
      assert.doesNotThrow(() => loadConfigFile(join(repoRoot, file)), file);
    }
    const yaml = loadConfigFile(join(repoRoot, 'config/examples/traefik-websocket.yaml'));
    const toml = loadConfigFile(join(repoRoot, 'config/examples/traefik-websocket.toml'));
    assert.deepEqual({ ...yaml, source: '' }, { ...toml, source: '' });
  });
});

describe('durations and sizes', () => {
  test('Go durations and plain seconds', () => {
    assert.equal(parseDuration('10s'), 10_000);
    assert.equal(parseDuration('1m30s'), 90_000);
    assert.equal(parseDuration('250ms'), 250);
    assert.equal(parseDuration('1h'), 3_600_000);
    assert.equal(parseDuration('1.5s'), 1500);
    assert.equal(parseDuration('1.1s'), 1100);
    assert.equal(parseDuration('500us'), 0.5);
    assert.equal(parseDuration('2h45m'), 9_900_000);
    assert.equal(parseDuration(30), 30_000);
    assert.equal(parseDuration('30'), 30_000);
    assert.equal(parseDuration(0), 0);
    assert.equal(parseDuration('0'), 0);
  });

  test('bad durations say what was expected', () => {
    assert.throws(() => parseDuration('10x'), { message: /unknown unit 'x' \(expected one of: ns, us, ms, s, m, h\)/ });
    assert.throws(() => parseDuration('1h30'), { message: /missing unit after '30'/ });
    assert.throws(() => parseDuration('-5s'), QuantityError);
    assert.throws(() => parseDuration(true), { message: /expected a duration like "10s"/ });
  });

  test('sizes', () => {
    assert.equal(parseSize('16MiB'), 16 * 1024 * 1024);
    assert.equal(parseSize('64KiB'), 65_536);
    assert.equal(parseSize('1MB'), 1_000_000);
    assert.equal(parseSize('1.5KiB'), 1536);
    assert.equal(parseSize(4096), 4096);
    assert.equal(parseSize('4096'), 4096);
    assert.throws(() => parseSize('16 parsecs'), { message: /unknown unit 'parsecs'/ });
    assert.throws(() => parseSize(1.5), QuantityError);
  });

  test('suggestions only for near misses', () => {
    assert.equal(closest('routres', ['routers', 'services']), 'routers');
    assert.equal(closest('colour', ['routers', 'services']), undefined);
  });
});

describe('docs/configuration.md', () => {
  const docs = readFileSync(join(repoRoot, 'docs/configuration.md'), 'utf8');

  test('documents every key the schema accepts', () => {
    const missing = [...schemaEntries()].map((e) => e.path).filter((path) => !docs.includes(`\`${path}\``));
    assert.deepEqual(missing, []);
  });

  test('lists every Traefik key that is refused', () => {
    const missing = [...refusedEntries()].map((e) => e.path).filter((path) => !docs.includes(`\`${path}\``));
    assert.deepEqual(missing, []);
  });
});

describe('sluice validate', () => {
  test('runValidate prints a summary and returns 0 for a good file', () => {
    const out = collect();
    const err = collect();
    const file = join(repoRoot, 'config/examples/traefik-websocket.yaml');
    assert.equal(runValidate(file, out.stream, err.stream), 0);
    assert.equal(out.text(), `${file}: ok (2 entry points, 4 routers, 2 services, 5 backends)\n`);
    assert.equal(err.text(), '');
  });

  test('runValidate prints every problem and returns 2 for a bad file', () => {
    const file = join(workDir, 'many-errors.yaml');
    copyFileSync(join(fixtures, 'many-errors.yaml'), file);
    const out = collect();
    const err = collect();
    assert.equal(runValidate(file, out.stream, err.stream), 2);
    assert.equal(out.text(), '');
    const expected = readFileSync(join(fixtures, 'many-errors.expected'), 'utf8').replaceAll('many-errors.yaml:', `${file}:`);
    assert.equal(err.text(), expected);
  });

  // The real command, as a user runs it. bin/sluice.js needs the main CLI (dist/src/cli/main.js), which
  // another part of the build provides; until it exists this test is skipped rather than failed.
  const cli = join(repoRoot, 'bin/sluice.js');
  const mainBuilt = existsSync(join(repoRoot, 'dist/src/cli/main.js'));
  test('node bin/sluice.js validate FILE', { skip: mainBuilt ? false : 'dist/src/cli/main.js is not built yet' }, () => {
    const good = spawnSync(process.execPath, [cli, 'validate', 'config/sluice.yaml'], { cwd: repoRoot, encoding: 'utf8' });
    assert.equal(good.stdout, 'config/sluice.yaml: ok (1 entry point, 1 router, 1 service, 3 backends)\n');
    assert.equal(good.status, 0);

    const file = join(workDir, 'cli-bad-url.yaml');
    copyFileSync(join(fixtures, 'bad-url.yaml'), file);
    const bad = spawnSync(process.execPath, [cli, 'validate', file], { cwd: repoRoot, encoding: 'utf8' });
    const expected = readFileSync(join(fixtures, 'bad-url.expected'), 'utf8').replaceAll('bad-url.yaml:', `${file}:`);
    assert.equal(bad.stderr, expected);
    assert.equal(bad.status, 2);
  });
});
