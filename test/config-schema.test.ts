/**
 * The config schema as the one source of truth: docs/configuration.md is what the generator makes of it,
 * every declared default is a value the schema itself accepts, validate fills those defaults in (so the
 * compiled snapshot carries them with no literal anywhere else), the checked config's type is derived from
 * the declarations, and the native addon takes its message limit from the caller instead of a default.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { describe, test } from 'node:test';

import { DOCS_FILE, generatedDocs, renderConfigDocs, repoRoot } from '../scripts/gen-config-docs.js';
import { Problems } from '../src/config/errors.js';
import { loadConfigText } from '../src/config/load.js';
import { CONFIG_SCHEMA, defaultOf, schemaEntries, type CheckedConfig } from '../src/config/schema.js';
import type { Checked, ListenAddress, ObjectSchema } from '../src/config/schema-types.js';
import { validateDocument } from '../src/config/validate.js';
import nativeUpstream from '#native';

describe('docs/configuration.md', () => {
  test('is what npm run docs generates from the schema', () => {
    const committed = readFileSync(join(repoRoot, DOCS_FILE), 'utf8');
    assert.ok(
      committed === generatedDocs(),
      `${DOCS_FILE} is out of date with src/config/schema*.ts or scripts/config-docs-template.md: run \`npm run docs\` and commit the result`,
    );
  });

  test('a key the template does not place gets a section of its own, with its type and default', () => {
    const page = renderConfigDocs('# Reference\n\n<!-- keys: entryPoints -->\n\n<!-- other keys -->\n');
    assert.match(page, /^## `websocket`$/m);
    assert.match(page, /^\| `websocket\.maxMessageSize` \| size, 1B-1GiB \| `16MiB` \| Largest message accepted/m);
    assert.match(page, /^\| `admin\.address` \| address \| `":9090"` \|/m);
    assert.throws(() => renderConfigDocs('<!-- keys: entryPoints -->\n'), /no "<!-- other keys -->" line for http/);
  });
});

describe('declared defaults', () => {
  test('each one is accepted by its own declaration (type, range, choices)', () => {
    const bad: string[] = [];
    for (const { path, schema } of schemaEntries()) {
      if (schema.kind !== 'scalar' || schema.defaultValue === undefined) continue;
      const value = schema.defaultValue;
      if (typeof value === 'number' && ((schema.min !== undefined && value < schema.min) || (schema.max !== undefined && value > schema.max))) {
        bad.push(`${path}: ${value} is out of range`);
      }
      if (schema.type === 'choice' && !(schema.choices ?? []).includes(value as string)) bad.push(`${path}: '${String(value)}' is no choice`);
    }
    assert.deepEqual(bad, []);
  });

  test('validate fills them in, and the snapshot carries them', () => {
    const text = 'entryPoints: { web: { address: ":8080" } }\nhttp: { services: { s: { loadBalancer: { servers: [ { url: "ws://127.0.0.1:1" } ], healthCheck: { path: /h } } } }, routers: { r: { rule: "PathPrefix(`/`)", service: s } } }\n';
    const snapshot = loadConfigText(text, 'yaml', 'inline.yaml', repoRoot);
    assert.equal(snapshot.websocket.maxMessageSize, defaultOf('websocket.maxMessageSize'));
    assert.equal(snapshot.websocket.idleTimeoutSeconds * 1000, defaultOf('websocket.idleTimeout'));
    assert.equal(snapshot.entryPoints[0]!.lifeCycle.graceMs, defaultOf('entryPoints.<name>.transport.lifeCycle.graceTimeOut'));
    assert.equal(snapshot.services[0]!.onRemove, defaultOf('loadBalancer.onRemove'));
    assert.deepEqual({ host: snapshot.admin.host, port: snapshot.admin.port }, defaultOf('admin.address'));
    assert.equal(snapshot.transports[0]!.dialTimeoutMs, defaultOf('http.serversTransports.<name>.forwardingTimeouts.dialTimeout'));
    const service = snapshot.services[0]!;
    assert.equal(service.strategy, defaultOf('loadBalancer.strategy'));
    assert.equal(service.retries, defaultOf('loadBalancer.retries'));
    assert.equal(service.healthCheck?.intervalMs, defaultOf('http.services.<name>.loadBalancer.healthCheck.interval'));
    assert.equal(service.healthCheck?.method, defaultOf('http.services.<name>.loadBalancer.healthCheck.method'));
    assert.equal(snapshot.backends[0]!.weight, defaultOf('http.services.<name>.loadBalancer.servers[].weight'));
  });

  test('an invalid value is reported and its default stands in, so compile sees a whole config', () => {
    const problems = new Problems();
    const checked = validateDocument({ entryPoints: { web: { address: ':1' } }, websocket: { maxMessageSize: 'huge' }, admin: 7 }, problems);
    assert.deepEqual(problems.list.map((p) => p.path), ['websocket.maxMessageSize', 'admin']);
    assert.equal(checked.websocket.maxMessageSize, defaultOf('websocket.maxMessageSize'));
    assert.deepEqual(checked.admin.address, defaultOf('admin.address'));
    assert.equal(checked.websocket.idleTimeout, defaultOf('websocket.idleTimeout'));
  });

  test('defaultOf refuses a key with no default', () => {
    // @ts-expect-error: the path type only admits keys that declare a default
    assert.throws(() => defaultOf('workers'), /key 'workers' has no default/);
  });
});

// ---- The checked shape is computed from the declarations (these fail at build time, not at run time) ----

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
function typeIs<T extends true>(): T | undefined {
  return undefined;
}

describe('CheckedConfig', () => {
  test('is derived from the schema: defaulted keys present, others optional, scalars as validated', () => {
    typeIs<Equal<CheckedConfig['websocket']['maxMessageSize'], number>>();
    typeIs<Equal<CheckedConfig['admin']['address'], ListenAddress>>();
    typeIs<Equal<CheckedConfig['log']['level'], 'DEBUG' | 'INFO' | 'WARN' | 'ERROR' | 'debug' | 'info' | 'warn' | 'error'>>();
    typeIs<Equal<CheckedConfig['workers'], number | undefined>>();
    type LoadBalancer = NonNullable<NonNullable<NonNullable<CheckedConfig['http']['services']>[string]['loadBalancer']>>;
    typeIs<Equal<LoadBalancer['strategy'], 'leastconn' | 'roundrobin' | 'hash' | undefined>>();
    typeIs<Equal<LoadBalancer['passHostHeader'], boolean>>();
    typeIs<Equal<NonNullable<LoadBalancer['healthCheck']>['onDown'], 'keep' | 'drain'>>();
    typeIs<Equal<NonNullable<LoadBalancer['healthCheck']>['status'], number | undefined>>();
    typeIs<Equal<NonNullable<LoadBalancer['servers']>[number]['weight'], number>>();
    typeIs<Equal<Checked<ObjectSchema>[string], unknown>>();
    // A section that is opt-in, or written as a boolean, is not always there.
    typeIs<Equal<undefined extends LoadBalancer['sticky'] ? true : false, true>>();
    typeIs<Equal<undefined extends CheckedConfig['accessLog'] ? true : false, true>>();
    assert.equal(CONFIG_SCHEMA.fields.websocket.fields.maxMessageSize.type, 'size');
  });
});

describe('native upstream leg', { skip: nativeUpstream === null ? 'native addon not built' : false }, () => {
  test('startFraming has no default message limit of its own', async () => {
    const accepted: Socket[] = [];
    const server = createServer((socket) => accepted.push(socket.on('error', () => {})));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const native = nativeUpstream!;
    let opened: (status: number) => void = () => {};
    const open = new Promise<number>((resolve) => (opened = resolve));
    native.init({ onOpen: (_id, status) => opened(status), onRaw() {}, onFrames() {}, onClose() {} });
    try {
      const id = native.connect('127.0.0.1', (server.address() as AddressInfo).port, 1000);
      assert.ok(id > 0);
      assert.equal(await open, 0);
      assert.throws(() => (native.startFraming as (id: number) => boolean)(id), /maxMessageSize must be a positive integer/);
      assert.equal(native.startFraming(id, 1024), true);
      native.destroy(id);
    } finally {
      for (const socket of accepted) socket.destroy();
      server.close();
    }
  });
});
