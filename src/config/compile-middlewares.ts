/**
 * Compiles `http.middlewares` into MiddlewareSpecs (middleware-spec.ts) and resolves a router's `middlewares`
 * list into spec indexes, chains flattened in order. Checks what the schema cannot: exactly one type per
 * middleware, names that exist, no chain that contains itself (reported with the loop, as Traefik does:
 * "recursion detected in a->b->a"), regular expressions that compile, hashes in a format htpasswd writes,
 * files that can be read.
 */
import { Problems, indexPath, keyPath, unknownName } from './errors.js';
import type {
  CorsSpec,
  ForwardAuthSpec,
  MiddlewareSpec,
  RegexSpec,
} from './middleware-spec.js';
import { MIDDLEWARE_TYPES, middlewareSchema } from './schema-middlewares.js';
import type { Checked } from './schema-types.js';
import { compileInFlightReq, compileIpAllowList, compileRateLimit } from './compile-limits.js';

/** One middleware as validate.ts hands it over: at most the keys of the schema, each checked (the type
 *  is computed from the schema, schema-types.ts Checked<>). */
export type MiddlewareConfig = Checked<typeof middlewareSchema>;

/** Reads a file named in the config (relative to the file that named it); undefined after recording why. */
export type ReadConfigFile = (file: string, path: string, what: string) => string | undefined;

export interface MiddlewareTable {
  readonly specs: MiddlewareSpec[];
  /** A router's `middlewares` as spec indexes, chains expanded; problems recorded at `path`. */
  resolve(names: readonly string[] | undefined, path: string): number[];
}

const ROOT = 'http.middlewares';
const EXPECTED_NAME = 'a middleware defined in http.middlewares';

export function compileMiddlewares(configs: Record<string, MiddlewareConfig>, readFile: ReadConfigFile, problems: Problems): MiddlewareTable {
  const specs: MiddlewareSpec[] = [];
  /** Spec index of each leaf middleware; chains map to the names they list. */
  const leafIndex = new Map<string, number>();
  const chains = new Map<string, readonly string[]>();
  const names = Object.keys(configs);

  for (const [name, config] of Object.entries(configs)) {
    const path = keyPath(ROOT, name);
    const types = MIDDLEWARE_TYPES.filter((t) => config[t as keyof MiddlewareConfig] !== undefined);
    if (types.length === 0) {
      // A refused or invalid type was reported where it stands; only a middleware with no type at all is new.
      if (!problems.list.some((p) => p.path === path || p.path.startsWith(`${path}.`))) {
        problems.add(path, `no middleware type (expected exactly one of: ${MIDDLEWARE_TYPES.join(', ')})`);
      }
      continue;
    }
    if (types.length > 1) {
      problems.add(path, `several middleware types (${types.map((t) => `'${t}'`).join(' and ')}) in one middleware (expected exactly one; declare one middleware per type and list them in a chain)`);
      continue;
    }
    if (config.chain !== undefined) {
      if (config.chain.middlewares !== undefined) chains.set(name, config.chain.middlewares);
      continue;
    }
    const spec = compileOne(name, config, path, readFile, problems);
    if (spec !== undefined) {
      leafIndex.set(name, specs.length);
      specs.push(spec);
    }
  }

  // Expand every chain once, reporting each loop once (at the first chain of it in document order).
  const expanded = new Map<string, number[]>();
  const reportedLoops = new Set<string>();
  const expand = (name: string, stack: string[]): number[] => {
    const done = expanded.get(name);
    if (done !== undefined) return done;
    const listed = chains.get(name) ?? [];
    const out: number[] = [];
    listed.forEach((wanted, i) => {
      const ref = stripProvider(wanted);
      const at = indexPath(keyPath(keyPath(keyPath(ROOT, name), 'chain'), 'middlewares'), i);
      if (ref === null) {
        problems.add(at, `middleware '${wanted}' belongs to another Traefik provider (expected ${EXPECTED_NAME})`);
        return;
      }
      if (stack.includes(ref)) {
        const loop = [...stack.slice(stack.indexOf(ref)), ref];
        const key = [...new Set(loop)].sort().join('\u0000');
        if (!reportedLoops.has(key)) {
          reportedLoops.add(key);
          problems.add(at, `recursion detected in ${loop.join('->')} (expected a chain that does not contain itself)`);
        }
        return;
      }
      const leaf = leafIndex.get(ref);
      if (leaf !== undefined) out.push(leaf);
      else if (chains.has(ref)) out.push(...expand(ref, [...stack, ref]));
      else if (!Object.hasOwn(configs, ref)) problems.add(at, unknownName('middleware', wanted, names, EXPECTED_NAME));
    });
    if (stack.length === 1) expanded.set(name, out);
    return out;
  };
  for (const name of chains.keys()) expand(name, [name]);

  return {
    specs,
    resolve(list, path) {
      const out: number[] = [];
      (list ?? []).forEach((wanted, i) => {
        const at = indexPath(path, i);
        const ref = stripProvider(wanted);
        if (ref === null) {
          problems.add(at, `middleware '${wanted}' belongs to another Traefik provider (expected ${EXPECTED_NAME})`);
          return;
        }
        const leaf = leafIndex.get(ref);
        if (leaf !== undefined) out.push(leaf);
        else if (chains.has(ref)) out.push(...expand(ref, [ref]));
        else if (!Object.hasOwn(configs, ref)) problems.add(at, unknownName('middleware', wanted, names, EXPECTED_NAME));
      });
      return out;
    },
  };
}

/** `name@file` names this file's middleware; another provider's name cannot be resolved (null). */
function stripProvider(name: string): string | null {
  if (name.endsWith('@file')) return name.slice(0, -'@file'.length);
  return name.includes('@') ? null : name;
}

function compileOne(name: string, config: MiddlewareConfig, path: string, readFile: ReadConfigFile, problems: Problems): MiddlewareSpec | undefined {
  if (config.headers !== undefined) {
    const h = config.headers;
    const at = keyPath(path, 'headers');
    const pairs = (map: Record<string, string> | undefined): [string, string][] => Object.entries(map ?? {}).map(([k, v]) => [k.toLowerCase(), v]);
    const security: [string, string][] = [];
    const frame = h.customFrameOptionsValue ?? (h.frameDeny ? 'DENY' : '');
    if (frame !== '') security.push(['x-frame-options', frame]);
    if (h.contentTypeNosniff) security.push(['x-content-type-options', 'nosniff']);
    const xss = h.customBrowserXSSValue ?? (h.browserXssFilter ? '1; mode=block' : '');
    if (xss !== '') security.push(['x-xss-protection', xss]);
    if (h.contentSecurityPolicy) security.push(['content-security-policy', h.contentSecurityPolicy]);
    if (h.contentSecurityPolicyReportOnly) security.push(['content-security-policy-report-only', h.contentSecurityPolicyReportOnly]);
    if (h.referrerPolicy) security.push(['referrer-policy', h.referrerPolicy]);
    if (h.permissionsPolicy) security.push(['permissions-policy', h.permissionsPolicy]);
    let sts = '';
    if ((h.stsSeconds ?? 0) > 0) {
      sts = `max-age=${h.stsSeconds}${h.stsIncludeSubdomains ? '; includeSubDomains' : ''}${h.stsPreload ? '; preload' : ''}`;
    }
    const originRegex = (h.accessControlAllowOriginListRegex ?? []).map((r, i) => translateRegex(r, indexPath(keyPath(at, 'accessControlAllowOriginListRegex'), i), problems));
    const corsUsed =
      (h.accessControlAllowOriginList?.length ?? 0) > 0 ||
      originRegex.length > 0 ||
      (h.accessControlAllowMethods?.length ?? 0) > 0 ||
      (h.accessControlAllowHeaders?.length ?? 0) > 0 ||
      (h.accessControlExposeHeaders?.length ?? 0) > 0 ||
      (h.accessControlMaxAge ?? 0) > 0 ||
      h.accessControlAllowCredentials === true;
    const cors: CorsSpec | null = corsUsed
      ? {
          allowOrigins: h.accessControlAllowOriginList ?? [],
          allowOriginRegex: originRegex.filter((r): r is RegexSpec => r !== null),
          allowMethods: (h.accessControlAllowMethods ?? []).join(','),
          allowHeaders: (h.accessControlAllowHeaders ?? []).join(','),
          exposeHeaders: (h.accessControlExposeHeaders ?? []).join(','),
          maxAge: h.accessControlMaxAge ?? 0,
          allowCredentials: h.accessControlAllowCredentials ?? false,
          addVary: h.addVaryHeader ?? false,
        }
      : null;
    return {
      type: 'headers',
      name,
      requestHeaders: pairs(h.customRequestHeaders),
      responseHeaders: pairs(h.customResponseHeaders),
      cors,
      securityHeaders: security,
      sts,
      forceSts: h.forceSTSHeader ?? false,
    };
  }
  if (config.stripPrefix !== undefined) {
    const prefixes = config.stripPrefix.prefixes;
    return prefixes === undefined ? undefined : { type: 'stripPrefix', name, prefixes };
  }
  if (config.stripPrefixRegex !== undefined) {
    const list = config.stripPrefixRegex.regex;
    if (list === undefined) return undefined;
    const regex = list.map((r, i) => translateRegex(r, indexPath(keyPath(keyPath(path, 'stripPrefixRegex'), 'regex'), i), problems));
    return regex.every((r) => r !== null) ? { type: 'stripPrefixRegex', name, regex: regex as RegexSpec[] } : undefined;
  }
  if (config.replacePath !== undefined) {
    return config.replacePath.path === undefined ? undefined : { type: 'replacePath', name, path: config.replacePath.path };
  }
  if (config.replacePathRegex !== undefined) {
    const { regex, replacement } = config.replacePathRegex;
    if (regex === undefined || replacement === undefined) return undefined;
    const re = translateRegex(regex, keyPath(keyPath(path, 'replacePathRegex'), 'regex'), problems);
    return re === null ? undefined : { type: 'replacePathRegex', name, regex: re, replacement };
  }
  if (config.addPrefix !== undefined) {
    const prefix = config.addPrefix.prefix;
    if (prefix === undefined) return undefined;
    if (!prefix.startsWith('/')) {
      problems.add(keyPath(keyPath(path, 'addPrefix'), 'prefix'), `'${prefix}' does not start with / (expected a path prefix like "/api")`);
      return undefined;
    }
    return { type: 'addPrefix', name, prefix };
  }
  if (config.redirectScheme !== undefined) {
    const r = config.redirectScheme;
    const port = r.port ?? '';
    if (port !== '' && !(/^\d+$/.test(port) && Number(port) >= 1 && Number(port) <= 65535)) {
      problems.add(keyPath(keyPath(path, 'redirectScheme'), 'port'), `invalid port '${port}' (expected a port number from 1 to 65535, as a string)`);
      return undefined;
    }
    return { type: 'redirectScheme', name, scheme: (r.scheme ?? 'https').toLowerCase(), port, permanent: r.permanent ?? false };
  }
  if (config.redirectRegex !== undefined) {
    const { regex, replacement, permanent } = config.redirectRegex;
    if (regex === undefined || replacement === undefined) return undefined;
    const re = translateRegex(regex, keyPath(keyPath(path, 'redirectRegex'), 'regex'), problems);
    return re === null ? undefined : { type: 'redirectRegex', name, regex: re, replacement, permanent: permanent ?? false };
  }
  if (config.basicAuth !== undefined) return compileBasicAuth(name, config.basicAuth, keyPath(path, 'basicAuth'), readFile, problems);
  if (config.forwardAuth !== undefined) return compileForwardAuth(name, config.forwardAuth, keyPath(path, 'forwardAuth'), readFile, problems);
  if (config.inFlightReq !== undefined) return compileInFlightReq(name, config.inFlightReq, keyPath(path, 'inFlightReq'), problems);
  if (config.rateLimit !== undefined) return compileRateLimit(name, config.rateLimit, keyPath(path, 'rateLimit'), problems);
  if (config.ipAllowList !== undefined) return compileIpAllowList(name, config.ipAllowList, keyPath(path, 'ipAllowList'), problems);
  return undefined;
}

/** The htpasswd hash formats Sluice verifies (Traefik's, through goauth): bcrypt, {SHA} and apr1. */
export function hashFormat(hash: string): 'bcrypt' | 'sha1' | 'apr1' | null {
  if (/^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/.test(hash)) return 'bcrypt';
  if (/^\{SHA\}[A-Za-z0-9+/]{27}=$/.test(hash)) return 'sha1';
  if (/^\$apr1\$[^$]{1,8}\$[./A-Za-z0-9]{22}$/.test(hash)) return 'apr1';
  return null;
}

function compileBasicAuth(
  name: string,
  config: NonNullable<MiddlewareConfig['basicAuth']>,
  path: string,
  readFile: ReadConfigFile,
  problems: Problems,
): MiddlewareSpec | undefined {
  const users: [string, string][] = [];
  let ok = true;
  const addEntry = (entry: string, at: string, where = ''): void => {
    const colon = entry.indexOf(':');
    const user = colon < 0 ? '' : entry.slice(0, colon);
    const hash = colon < 0 ? '' : entry.slice(colon + 1).trim();
    if (user === '') {
      problems.add(at, `${where}invalid entry '${entry.slice(0, 40)}' (expected "user:hash" as htpasswd writes it)`);
      ok = false;
    } else if (hashFormat(hash) === null) {
      problems.add(at, `${where}user '${user}': unsupported password hash (expected bcrypt "$2y$…", SHA-1 "{SHA}…" or apr1 "$apr1$…", as htpasswd -B, -s or -m writes them)`);
      ok = false;
    } else if (!users.some(([u]) => u === user)) users.push([user, hash]); // as in Traefik, the first entry of a user wins
  };
  (config.users ?? []).forEach((entry, i) => addEntry(entry, indexPath(keyPath(path, 'users'), i)));
  if (config.usersFile !== undefined) {
    const at = keyPath(path, 'usersFile');
    const text = readFile(config.usersFile, at, 'an htpasswd file');
    if (text === undefined) ok = false;
    else {
      text.split(/\r?\n/).forEach((line, i) => {
        const trimmed = line.trim();
        if (trimmed !== '' && !trimmed.startsWith('#')) addEntry(trimmed, at, `'${config.usersFile}' line ${i + 1}: `);
      });
    }
  }
  if (ok && users.length === 0) {
    problems.add(path, 'no users (expected users or usersFile with at least one "user:hash" entry)');
    return undefined;
  }
  if (!ok) return undefined;
  return {
    type: 'basicAuth',
    name,
    users,
    realm: config.realm ?? 'traefik',
    removeHeader: config.removeHeader ?? false,
    headerField: (config.headerField ?? '').toLowerCase(),
  };
}

function compileForwardAuth(
  name: string,
  config: NonNullable<MiddlewareConfig['forwardAuth']>,
  path: string,
  readFile: ReadConfigFile,
  problems: Problems,
): ForwardAuthSpec | undefined {
  if (config.address === undefined) return undefined;
  const at = keyPath(path, 'address');
  let url: URL;
  try {
    url = new URL(config.address);
  } catch {
    problems.add(at, `invalid URL '${config.address}' (expected a URL like "http://auth.internal/verify")`);
    return undefined;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    problems.add(at, `unsupported scheme '${url.protocol.slice(0, -1)}' in '${config.address}' (expected http or https)`);
    return undefined;
  }
  if (url.username !== '' || url.password !== '') {
    problems.add(at, `invalid URL '${config.address}': user name and password are not allowed (expected a URL like "http://auth.internal/verify")`);
    return undefined;
  }
  let tls: ForwardAuthSpec['tls'] = null;
  let ok = true;
  if (config.tls !== undefined) {
    const tlsPath = keyPath(path, 'tls');
    const read = (key: 'ca' | 'cert' | 'key', what: string): string => {
      const file = config.tls![key];
      if (file === undefined) return '';
      const text = readFile(file, keyPath(tlsPath, key), what);
      if (text === undefined) ok = false;
      return text ?? '';
    };
    tls = {
      ca: read('ca', 'a PEM CA certificate'),
      cert: read('cert', 'a PEM certificate'),
      key: read('key', 'a PEM private key'),
      insecureSkipVerify: config.tls.insecureSkipVerify ?? false,
    };
    if ((tls.cert === '') !== (tls.key === '') && ok) {
      problems.add(tlsPath, 'cert and key go together (expected both or neither)');
      ok = false;
    }
  }
  const regex = config.authResponseHeadersRegex === undefined ? null : translateRegex(config.authResponseHeadersRegex, keyPath(path, 'authResponseHeadersRegex'), problems);
  if (config.authResponseHeadersRegex !== undefined && regex === null) ok = false;
  if (!ok) return undefined;
  return {
    type: 'forwardAuth',
    name,
    origin: url.origin,
    path: `${url.pathname}${url.search}`,
    tls,
    trustForwardHeader: config.trustForwardHeader ?? false,
    authResponseHeaders: (config.authResponseHeaders ?? []).map((h) => h.toLowerCase()),
    authResponseHeadersRegex: regex === null ? null : { source: regex.source, flags: regex.flags.includes('i') ? regex.flags : `${regex.flags}i` },
    authRequestHeaders: (config.authRequestHeaders ?? []).map((h) => h.toLowerCase()),
    addAuthCookiesToResponse: config.addAuthCookiesToResponse ?? [],
  };
}

/**
 * Traefik's regular expressions are Go RE2; most translate as they are. Named groups `(?P<name>…)` become
 * `(?<name>…)`, `\A` and `\z` become `^` and `$`, and leading inline flags `(?i)`, `(?s)`, `(?m)` become
 * JavaScript flags. Other inline flags have no JavaScript equivalent and are refused.
 */
export function translateRegex(go: string, path: string, problems: Problems): RegexSpec | null {
  let source = go;
  let flags = '';
  const leading = /^\(\?([a-zA-Z]+)\)/.exec(source);
  if (leading !== null) {
    for (const flag of leading[1]!) {
      if (flag === 'i' || flag === 's' || flag === 'm') {
        if (!flags.includes(flag)) flags += flag;
      } else {
        problems.add(path, `regular expression '${go}': inline flag '${flag}' has no JavaScript equivalent (expected i, s or m at the start)`);
        return null;
      }
    }
    source = source.slice(leading[0].length);
  }
  source = source.replaceAll('(?P<', '(?<').replaceAll('\\A', '^').replaceAll('\\z', '$');
  try {
    new RegExp(source, flags);
  } catch (error) {
    const reason = (error as Error).message.replace(/^Invalid regular expression: \/.*\/[a-z]*: /, '');
    problems.add(path, `invalid regular expression '${go}': ${reason} (expected a regular expression in Go RE2 syntax)`);
    return null;
  }
  return { source, flags };
}
