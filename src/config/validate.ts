/**
 * Checks a parsed config document against CONFIG_SCHEMA: every key known (or refused by name when it is a
 * Traefik key Sluice does not support), every value of the declared type and range, defaults filled in.
 * It never stops at the first problem. What comes out is the document with checked, typed values, of the
 * type `Checked<typeof CONFIG_SCHEMA>` computes: a key with a default is always there (the default stands in
 * for a value that failed, whose problem is recorded), so compile.ts repeats no default; any other value that
 * failed is left out, so compile.ts never reports the same fault twice.
 */
import { isIP } from 'node:net';

import type { Strategy } from './snapshot.js';
import { QuantityError, formatDuration, formatSize, parseDuration, parseSize } from './duration.js';
import { Problems, closest, describeValue, indexPath, keyPath, unknownName } from './errors.js';
import { CONFIG_SCHEMA } from './schema.js';
import type { CheckedConfig, ListSchema, MapSchema, ObjectSchema, ScalarSchema, Schema } from './schema.js';
import type { healthCheckSchema, passiveHealthCheckSchema, stickySchema } from './schema-balancing.js';
import type { BackendUrl, Checked, ListenAddress } from './schema-types.js';
import type { entryPointWebSocketSchema } from './schema-compression.js';

export type { BackendUrl, ListenAddress } from './schema-types.js';
export type { CheckedConfig } from './schema.js';

/** The checked shapes compile.ts takes apart by section. */
export type HealthCheckConfig = Checked<typeof healthCheckSchema>;
export type PassiveHealthCheckConfig = Checked<typeof passiveHealthCheckSchema>;
export type StickyCookieConfig = Checked<typeof stickySchema.fields.cookie>;
export type CertificateFiles = NonNullable<CheckedConfig['tls']['certificates']>[number];
/** The compression keys of an entry point (`entryPoints.<name>.websocket`) or of `websocket`. */
export type CompressionConfig = Partial<Checked<typeof entryPointWebSocketSchema>>;

export function validateDocument(document: unknown, problems: Problems): CheckedConfig {
  if (document === null || document === undefined) {
    problems.add('', 'empty configuration (expected at least entryPoints)');
    return defaultsOf(CONFIG_SCHEMA);
  }
  return (checkValue(CONFIG_SCHEMA, document, '', problems) ?? defaultsOf(CONFIG_SCHEMA)) as CheckedConfig;
}

/** An object section as validate fills it when it is written empty (required keys left out). */
export function defaultsOf<S extends ObjectSchema>(schema: S): Checked<S> {
  return checkObject(schema, {}, '', new Problems()) as Checked<S>;
}

/**
 * What validate puts for a key that is absent or invalid: its default, or, for a section that is filled when
 * absent, that section with its defaults; undefined when the key has neither (it is left out). The same rule
 * as `AlwaysFilled` in schema-types.ts, which gives these keys a non-optional type.
 */
function fallbackOf(schema: Schema, path: string): unknown {
  if (schema.kind === 'scalar') return schema.defaultValue;
  if (schema.kind === 'object' && fillsWhenAbsent(schema)) return checkObject(schema, {}, path, new Problems());
  return undefined;
}

function fillsWhenAbsent(schema: ObjectSchema): boolean {
  return !schema.acceptsBoolean && !schema.optIn && !Object.values(schema.fields).some((field) => field.required);
}

/** Returns the checked value, or undefined when it is invalid (after recording why). */
function checkValue(schema: Schema, value: unknown, path: string, problems: Problems): unknown {
  switch (schema.kind) {
    case 'object':
      return checkObject(schema, value, path, problems);
    case 'map':
      return checkMap(schema, value, path, problems);
    case 'list':
      return checkList(schema, value, path, problems);
    case 'scalar':
      return checkScalar(schema, value, path, problems);
  }
}

function isMapping(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value) && !(value instanceof Date);
}

function checkObject(schema: ObjectSchema, value: unknown, path: string, problems: Problems): object | undefined {
  if (schema.acceptsBoolean && typeof value === 'boolean') return value ? checkObject(schema, {}, path, problems) : undefined;
  if (!isMapping(value)) {
    problems.add(path, `got ${describeValue(value)} (expected ${expected(schema)})`);
    return undefined;
  }
  const out: Record<string, unknown> = {};
  const accepted = Object.keys(schema.fields);
  // Keys a "did you mean" already pointed at, and whether a refused Traefik key stood in for this object's
  // kind: either way a "missing required key" would repeat the same fault.
  const suggested = new Set<string>();
  let refusedKind = false;
  for (const [key, item] of Object.entries(value)) {
    const at = keyPath(path, key);
    const field = schema.fields[key];
    if (field !== undefined) {
      const checked = checkValue(field, item, at, problems) ?? fallbackOf(field, at);
      if (checked !== undefined) out[key] = checked;
    } else if (schema.refused !== undefined && Object.hasOwn(schema.refused, key)) {
      problems.add(at, refusedMessage(key, schema.refused[key]!));
      if (schema.refusedAreKinds) refusedKind = true;
    } else {
      problems.add(at, unknownName('key', key, accepted, schema.acceptsBoolean ? '{} or true' : 'no keys'));
      const suggestion = closest(key, accepted);
      if (suggestion !== undefined) suggested.add(suggestion);
    }
  }
  for (const [key, field] of Object.entries(schema.fields)) {
    if (Object.hasOwn(value, key)) continue;
    if (field.required && !suggested.has(key) && !refusedKind) {
      problems.add(path, `missing required key '${key}' (expected ${expected(field)})`);
    }
    // Even a missing required key gets what it would have by default, as the checked type promises.
    const filled = fallbackOf(field, keyPath(path, key));
    if (filled !== undefined) out[key] = filled;
  }
  return out;
}

export function refusedMessage(key: string, hint: string): string {
  const base = `Traefik key '${key}' is not supported by Sluice`;
  if (hint === '') return base;
  return hint.startsWith('(') ? `${base} ${hint}` : `${base}: ${hint}`;
}

function checkMap(schema: MapSchema, value: unknown, path: string, problems: Problems): object | undefined {
  if (!isMapping(value)) {
    problems.add(path, `got ${describeValue(value)} (expected ${expected(schema)})`);
    return undefined;
  }
  const out: Record<string, unknown> = {};
  for (const [name, item] of Object.entries(value)) {
    // An entry that is wrong as a whole is still kept (with its defaults), so references to it do not also fail.
    const at = keyPath(path, name);
    const checked = checkValue(schema.value, item, at, problems);
    if (checked !== undefined) out[name] = checked;
    else if (schema.value.kind === 'object') out[name] = checkObject(schema.value, {}, at, new Problems());
  }
  return out;
}

function checkList(schema: ListSchema, value: unknown, path: string, problems: Problems): unknown[] | undefined {
  if (!Array.isArray(value)) {
    problems.add(path, `got ${describeValue(value)} (expected ${expected(schema)})`);
    return undefined;
  }
  if (value.length === 0 && schema.nonEmpty !== undefined) {
    problems.add(path, `empty list (expected at least one ${schema.nonEmpty})`);
    return undefined;
  }
  const out: unknown[] = [];
  value.forEach((item, i) => {
    const checked = checkValue(schema.item, item, indexPath(path, i), problems);
    if (checked !== undefined) out.push(checked);
  });
  return out;
}

function checkScalar(schema: ScalarSchema, value: unknown, path: string, problems: Problems): unknown {
  const fail = (message: string): undefined => {
    problems.add(path, message);
    return undefined;
  };
  switch (schema.type) {
    case 'string':
      if (typeof value !== 'string') return fail(`got ${describeValue(value)} (expected a string)`);
      if (schema.required && value.trim() === '') return fail(`empty value (expected ${expected(schema)})`);
      return value;
    case 'boolean':
      if (typeof value !== 'boolean') return fail(`got ${describeValue(value)} (expected true or false)`);
      return value;
    case 'integer':
      if (typeof value !== 'number' || !Number.isInteger(value)) {
        return fail(`got ${describeValue(value)} (expected ${expected(schema)})`);
      }
      if (!inRange(schema, value)) return fail(`${value} is out of range (expected ${expected(schema)})`);
      return value;
    case 'duration':
      return checkQuantity(schema, value, parseDuration, formatDuration, fail);
    case 'size':
      return checkQuantity(schema, value, parseSize, formatSize, fail);
    case 'strategy':
      return checkStrategy(value, fail);
    case 'number':
      if (typeof value !== 'number' || !Number.isFinite(value)) return fail(`got ${describeValue(value)} (expected ${expected(schema)})`);
      if (!inRange(schema, value)) return fail(`${value} is out of range (expected ${expected(schema)})`);
      return value;
    case 'choice':
      if (typeof value !== 'string' || !(schema.choices ?? []).includes(value)) {
        return fail(`got ${describeValue(value)} (expected ${expected(schema)})`);
      }
      return value;
    case 'address': {
      if (typeof value !== 'string') return fail(`got ${describeValue(value)} (expected ${expected(schema)})`);
      const address = parseListenAddress(value);
      return typeof address === 'string' ? fail(address) : address;
    }
    case 'url': {
      if (typeof value !== 'string') return fail(`got ${describeValue(value)} (expected ${expected(schema)})`);
      const url = parseBackendUrl(value);
      return typeof url === 'string' ? fail(url) : url;
    }
  }
}

function checkQuantity(
  schema: ScalarSchema,
  value: unknown,
  parse: (value: unknown) => number,
  format: (n: number) => string,
  fail: (message: string) => undefined,
): number | undefined {
  let parsed: number;
  try {
    parsed = parse(value);
  } catch (error) {
    if (error instanceof QuantityError) return fail(error.message);
    throw error;
  }
  if (!inRange(schema, parsed)) {
    const shown = typeof value === 'string' ? `'${value}'` : String(value);
    const noun = schema.type === 'size' ? 'a size' : 'a duration';
    const min = schema.min ?? 0;
    let bounds: string;
    if (schema.max !== undefined) bounds = `from ${format(min)} to ${format(schema.max)}`;
    else if (min === 1 && schema.type === 'duration') bounds = 'above 0';
    else bounds = `of at least ${format(min)}`;
    return fail(`${shown} is out of range (expected ${noun} ${bounds})`);
  }
  return parsed;
}

function checkStrategy(value: unknown, fail: (message: string) => undefined): Strategy | undefined {
  const EXPECTED = "(expected 'leastconn', 'roundrobin' or 'hash')";
  if (typeof value !== 'string') return fail(`got ${describeValue(value)} ${EXPECTED}`);
  switch (value) {
    case 'leastconn':
    case 'roundrobin':
    case 'hash':
      return value;
    case 'wrr':
      return 'roundrobin'; // Traefik's name for its weighted round robin, which Sluice's roundrobin is
    case 'hrw':
      return 'hash'; // Traefik's highest random weight is rendezvous hashing of the client IP, Sluice's default hash
    case 'p2c':
      return fail(`Traefik strategy '${value}' is not supported by Sluice ${EXPECTED}`);
    default:
      return fail(`unknown strategy '${value}' ${EXPECTED}`);
  }
}

function inRange(schema: ScalarSchema, value: number): boolean {
  return (schema.min === undefined || value >= schema.min) && (schema.max === undefined || value <= schema.max);
}

/** What a schema expects, in words, for the "(expected …)" part of messages. */
export function expected(schema: Schema): string {
  if (schema.expects !== undefined) return schema.expects;
  switch (schema.kind) {
    case 'object':
      return schema.acceptsBoolean ? '{} or true' : 'a mapping';
    case 'map':
      return `a mapping of ${schema.entry} names to their settings`;
    case 'list':
      return 'a list';
    case 'scalar':
      switch (schema.type) {
        case 'string':
          return 'a string';
        case 'boolean':
          return 'true or false';
        case 'integer':
          if (schema.max === undefined || schema.max === Number.MAX_SAFE_INTEGER) {
            return `an integer ≥ ${schema.min ?? 0}`;
          }
          return `an integer from ${schema.min ?? 0} to ${schema.max}`;
        case 'duration':
          return 'a duration like "10s", "1m30s" or "250ms", or a number of seconds';
        case 'size':
          return 'a number of bytes, or a size like "64KiB", "16MiB" or "1MB"';
        case 'strategy':
          return "'leastconn', 'roundrobin' or 'hash'";
        case 'number':
          return schema.max === undefined ? `a number ≥ ${schema.min ?? 0}` : `a number from ${schema.min ?? 0} to ${schema.max}`;
        case 'choice':
          return (schema.choices ?? []).map((c) => `'${c}'`).join(', ').replace(/, ([^,]*)$/, ' or $1');
        case 'address':
          return ADDRESS_EXPECTED;
        case 'url':
          return URL_EXPECTED;
      }
  }
}

const ADDRESS_EXPECTED = 'an address like ":8080", "127.0.0.1:8080" or "[::1]:8080"';

/** Parses `[host]:port` as Traefik writes entry point addresses; returns the problem text when invalid. */
export function parseListenAddress(text: string): ListenAddress | string {
  const bad = (reason: string): string => `invalid address '${text}': ${reason} (expected ${ADDRESS_EXPECTED})`;
  let rest = text.trim();
  if (rest.endsWith('/udp')) return `invalid address '${text}': UDP entry points are not supported by Sluice`;
  if (rest.endsWith('/tcp')) rest = rest.slice(0, -4);
  let host: string;
  let portText: string;
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close < 0) return bad("missing ']' after the IPv6 address");
    host = rest.slice(1, close);
    if (isIP(host) !== 6) return bad(`'${host}' is not an IPv6 address`);
    if (rest[close + 1] !== ':') return bad("missing ':' before the port");
    portText = rest.slice(close + 2);
  } else {
    const colon = rest.lastIndexOf(':');
    if (colon < 0) return bad("missing ':' before the port");
    host = rest.slice(0, colon);
    portText = rest.slice(colon + 1);
    if (host.includes(':')) return bad('an IPv6 address needs brackets');
    if (host !== '' && isIP(host) === 0 && !/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(host)) {
      return bad(`'${host}' is not an IP address or host name`);
    }
  }
  if (portText === '') return bad('missing port');
  if (!/^\d+$/.test(portText)) return bad(`port '${portText}' is not a number`);
  const port = Number(portText);
  if (port < 1 || port > 65535) return bad(`port ${port} is out of range 1-65535`);
  return { host, port };
}

const URL_EXPECTED = 'a URL like "ws://10.0.0.1:9000" or "https://api.internal"';
const DEFAULT_PORTS: Readonly<Record<string, number>> = { 'http:': 80, 'ws:': 80, 'https:': 443, 'wss:': 443 };

/** Parses a backend URL as Traefik takes `servers[].url`; returns the problem text when invalid. */
export function parseBackendUrl(text: string): BackendUrl | string {
  const bad = (reason: string): string => `invalid URL '${text}': ${reason} (expected ${URL_EXPECTED})`;
  const trimmed = text.trim();
  const schemeEnd = trimmed.indexOf('://');
  if (schemeEnd < 0) return bad('missing "://"');
  const scheme = trimmed.slice(0, schemeEnd).toLowerCase();
  if (scheme === 'h2c') return `invalid URL '${text}': Traefik scheme 'h2c' is not supported by Sluice (expected http, https, ws or wss)`;
  if (DEFAULT_PORTS[`${scheme}:`] === undefined) {
    return `invalid URL '${text}': unsupported scheme '${scheme}' (expected http, https, ws or wss)`;
  }
  const authority = /^[^/?#]*/.exec(trimmed.slice(schemeEnd + 3))![0];
  if (authority.includes('@')) return bad('user name and password are not allowed');
  if (authority === '' || authority.startsWith(':')) return bad('missing host');
  const portMatch = /:(\d*)$/.exec(authority.startsWith('[') ? authority.slice(authority.indexOf(']') + 1) : authority);
  if (portMatch) {
    if (portMatch[1] === '') return bad('missing port after ":"');
    const port = Number(portMatch[1]);
    if (port < 1 || port > 65535) return bad(`port ${port} is out of range 1-65535`);
  }
  let url: URL;
  try {
    url = new URL(trimmed);
  } catch {
    return bad('not a valid URL');
  }
  if (url.hostname === '') return bad('missing host');
  if (url.search !== '' || url.hash !== '' || /[?#]/.test(trimmed)) return bad('a query or fragment is not allowed');
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  const port = url.port === '' ? DEFAULT_PORTS[url.protocol]! : Number(url.port);
  return {
    url: trimmed,
    host,
    port,
    tls: url.protocol === 'https:' || url.protocol === 'wss:',
    pathPrefix: url.pathname.replace(/\/+$/, ''),
  };
}
