/**
 * Compiling the keys of backends that come and go (compile.ts calls these per service): the hash key,
 * health check and sticky cookie settings, the sticky secret, and the DNS servers of discovery.
 */
import { createHash, randomBytes } from 'node:crypto';
import { isIP } from 'node:net';

import { Problems, indexPath, keyPath } from './errors.js';
import { DEFAULT_PASSIVE_HEALTH_CHECK, hashSchema, stickySchema } from './schema-balancing.js';
import type { HashSpec, HealthCheckSpec, PassiveHealthSpec, ServiceSpec, StickySpec } from './snapshot.js';
import { defaultsOf, type CheckedConfig, type HealthCheckConfig, type PassiveHealthCheckConfig, type StickyCookieConfig } from './validate.js';

/** What a service gets for the sections it leaves out: `strategy: hash` without `hash`, `sticky: {}`. */
const DEFAULT_HASH = defaultsOf(hashSchema);
const DEFAULT_COOKIE = defaultsOf(stickySchema.fields.cookie);

/** The random secret of this process, made once: every reload signs with the same one, so cookies
 *  set before a reload still name their backend after it. */
let processSecret: string | undefined;

/** The configured secret, else SLUICE_STICKY_SECRET, else (only when a service is sticky) a random one. */
export function stickySecret(config: CheckedConfig, services: readonly ServiceSpec[]): { stickySecret: string; stickySecretGenerated: boolean } {
  const configured = config.loadBalancer.stickySecret ?? process.env.SLUICE_STICKY_SECRET ?? '';
  if (configured !== '' || !services.some((s) => s.sticky !== null)) return { stickySecret: configured, stickySecretGenerated: false };
  processSecret ??= randomBytes(32).toString('base64url');
  return { stickySecret: processSecret, stickySecretGenerated: true };
}

export function compileDnsServers(servers: readonly string[], problems: Problems): string[] {
  servers.forEach((server, i) => {
    const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(server);
    const [host, port] = bracketed !== null ? [bracketed[1]!, bracketed[2]] : isIP(server) !== 0 ? [server, undefined] : server.split(':');
    const portNumber = port === undefined ? 53 : Number(port);
    if (isIP(host ?? '') === 0 || !Number.isInteger(portNumber) || portNumber < 1 || portNumber > 65535) {
      problems.add(indexPath('dns.servers', i), `invalid DNS server '${server}' (expected an IP address, optionally with a port: "10.0.0.10" or "127.0.0.1:5353")`);
    }
  });
  return [...servers];
}

const HASH_KEY = /^(clientIP|header:[!#$%&'*+.^_`|~0-9A-Za-z-]+|cookie:[^\s;=,]+|query:.+)$/;

export function compileHash(hash: typeof DEFAULT_HASH | undefined, path: string, problems: Problems): HashSpec {
  const { key, balanceFactor } = hash ?? DEFAULT_HASH;
  if (!HASH_KEY.test(key)) {
    problems.add(keyPath(path, 'key'), `invalid hash key '${key}' (expected 'clientIP', 'header:NAME', 'cookie:NAME' or 'query:NAME')`);
    return { source: 'clientIP', name: '', balanceFactor };
  }
  if (key === 'clientIP') return { source: 'clientIP', name: '', balanceFactor };
  const colon = key.indexOf(':');
  const source = key.slice(0, colon) as 'header' | 'cookie' | 'query';
  const name = key.slice(colon + 1);
  return { source, name: source === 'header' ? name.toLowerCase() : name, balanceFactor };
}

export function compileHealthCheck(check: HealthCheckConfig | undefined): HealthCheckSpec | null {
  if (check === undefined || check.path === undefined) return null;
  const intervalMs = check.interval;
  return {
    path: check.path.startsWith('/') ? check.path : `/${check.path}`,
    method: check.method.toUpperCase(),
    scheme: check.scheme ?? '',
    hostname: check.hostname ?? '',
    port: check.port ?? 0,
    headers: Object.entries(check.headers ?? {}),
    status: check.status ?? 0,
    intervalMs,
    unhealthyIntervalMs: check.unhealthyInterval ?? intervalMs,
    timeoutMs: check.timeout,
    rise: check.rise,
    fall: check.fall,
    onDown: check.onDown,
  };
}

/** Passive checks are on unless asked off: absent gives Sluice's default, `maxFailedAttempts: 0` null. */
export function compilePassiveHealthCheck(passive: PassiveHealthCheckConfig | undefined): PassiveHealthSpec | null {
  const settings = passive ?? DEFAULT_PASSIVE_HEALTH_CHECK;
  if (settings.maxFailedAttempts === 0) return null;
  return { maxFailedAttempts: settings.maxFailedAttempts, failureWindowMs: settings.failureWindow, maxEjectionMs: settings.maxEjectionTime };
}

/** Traefik's default cookie name: '_' and the first 6 hex digits of SHA-1 of the service name. */
export function compileSticky(service: string, cookie: StickyCookieConfig = DEFAULT_COOKIE): StickySpec {
  const name = cookie.name ?? `_${createHash('sha1').update(service).digest('hex').slice(0, 6)}`;
  let attributes = `; Path=${cookie.path}`;
  if (cookie.domain !== undefined && cookie.domain !== '') attributes += `; Domain=${cookie.domain}`;
  const maxAge = cookie.maxAge;
  if (maxAge !== 0) attributes += `; Max-Age=${maxAge < 0 ? 0 : maxAge}`;
  if (cookie.secure) attributes += '; Secure';
  if (cookie.httpOnly) attributes += '; HttpOnly';
  if (cookie.sameSite) attributes += `; SameSite=${cookie.sameSite[0]!.toUpperCase()}${cookie.sameSite.slice(1)}`;
  return { cookieName: name, attributes };
}
