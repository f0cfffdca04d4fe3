/**
 * Compiles the limits keys (schema-limits.ts) into limit specs (limits-spec.ts): rates into GCRA intervals,
 * address lists checked (each must be an IP or a CIDR range), Traefik's one-criterion rule for
 * sourceCriterion, origin patterns lowercased, and the warning for respondingTimeouts.idleTimeout, which
 * uWebSockets.js does not let Sluice apply.
 */
import { Problems, indexPath, keyPath } from './errors.js';
import type { Checked } from './schema-types.js';
import type { CheckedConfig } from './schema.js';
import { formatDuration } from './duration.js';
import type { ConnectionLimitsSpec, EntryPointLimits, InFlightReqSpec, IpAllowListSpec, IpStrategySpec, RateLimitSpec, RateSpec, ServiceLimits, SourceSpec, TrustSpec } from './limits-spec.js';
import type { inFlightReqSchema, ipAllowListSchema, rateLimitSchema } from './schema-limits.js';
import { parseCidr } from '../shared/cidr.js';

type EntryPointConfig = NonNullable<CheckedConfig['entryPoints']>[string];
type LoadBalancerConfig = NonNullable<NonNullable<CheckedConfig['http']>['services']>[string]['loadBalancer'];
type RateConfig = { readonly average: number; readonly period: number; readonly burst?: number };
type IpStrategyConfig = NonNullable<Checked<typeof ipAllowListSchema>['ipStrategy']>;
type SourceConfig = Checked<typeof rateLimitSchema>['sourceCriterion'];

/** uWebSockets.js 20.30 closes an HTTP connection that has no request in progress after this long. */
export const UWS_HTTP_IDLE_SECONDS = 10;

/** `average` per `period` (ms) as a token bucket; null when average is 0 (off). Burst defaults to average. */
export function compileRate(config: RateConfig | undefined, defaultBurstShare = 1): RateSpec | null {
  if (config === undefined || !(config.average > 0)) return null;
  return { intervalMs: config.period / config.average, burst: config.burst ?? Math.max(1, Math.ceil(config.average * defaultBurstShare)) };
}

/** A list of IPs and CIDR ranges, each checked; the valid ones, as written. */
export function compileAddresses(list: readonly string[] | undefined, path: string, problems: Problems): string[] {
  const out: string[] = [];
  (list ?? []).forEach((text, i) => {
    const parsed = parseCidr(text);
    if (typeof parsed === 'string') problems.add(indexPath(path, i), `${parsed} (expected an IP like "10.0.0.1" or a CIDR range like "10.0.0.0/8")`);
    else out.push(text.trim());
  });
  return out;
}

const NO_STRATEGY: IpStrategySpec = { depth: 0, excludedIPs: [], ipv6Subnet: 0 };

function compileIpStrategy(config: IpStrategyConfig | undefined, path: string, problems: Problems): IpStrategySpec {
  if (config === undefined) return NO_STRATEGY;
  const excludedIPs = compileAddresses(config.excludedIPs, keyPath(path, 'excludedIPs'), problems);
  if (config.depth > 0 && excludedIPs.length > 0) {
    problems.warn(keyPath(path, 'excludedIPs'), 'ignored: depth is set and wins over excludedIPs (as in Traefik)');
  }
  return { depth: config.depth, excludedIPs: config.depth > 0 ? [] : excludedIPs, ipv6Subnet: config.ipv6Subnet ?? 0 };
}

function compileSource(config: SourceConfig, path: string, problems: Problems): SourceSpec {
  if (config === undefined) return { kind: 'ip', header: '', ipStrategy: NO_STRATEGY };
  const at = keyPath(path, 'sourceCriterion');
  const set = [config.ipStrategy !== undefined && 'ipStrategy', config.requestHeaderName !== undefined && 'requestHeaderName', config.requestHost && 'requestHost'].filter(Boolean);
  if (set.length > 1) problems.add(at, `${set.join(' and ')} are both set (expected only one of ipStrategy, requestHeaderName, requestHost)`);
  if (config.requestHeaderName !== undefined) {
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(config.requestHeaderName)) {
      problems.add(keyPath(at, 'requestHeaderName'), `'${config.requestHeaderName}' is not a header name (expected a name like "X-Api-Key")`);
    }
    return { kind: 'header', header: config.requestHeaderName.toLowerCase(), ipStrategy: NO_STRATEGY };
  }
  if (config.requestHost) return { kind: 'host', header: '', ipStrategy: NO_STRATEGY };
  return { kind: 'ip', header: '', ipStrategy: compileIpStrategy(config.ipStrategy, keyPath(at, 'ipStrategy'), problems) };
}

export function compileInFlightReq(name: string, config: Checked<typeof inFlightReqSchema>, path: string, problems: Problems): InFlightReqSpec | undefined {
  if (config.amount === undefined) return undefined;
  return { type: 'inFlightReq', name, amount: config.amount, source: compileSource(config.sourceCriterion, path, problems) };
}

export function compileRateLimit(name: string, config: Checked<typeof rateLimitSchema>, path: string, problems: Problems): RateLimitSpec {
  return { type: 'rateLimit', name, rate: compileRate(config), source: compileSource(config.sourceCriterion, path, problems) };
}

export function compileIpAllowList(name: string, config: Checked<typeof ipAllowListSchema>, path: string, problems: Problems): IpAllowListSpec | undefined {
  if (config.sourceRange === undefined) return undefined;
  return {
    type: 'ipAllowList',
    name,
    sourceRange: compileAddresses(config.sourceRange, keyPath(path, 'sourceRange'), problems),
    ipStrategy: compileIpStrategy(config.ipStrategy, keyPath(path, 'ipStrategy'), problems),
    rejectStatusCode: config.rejectStatusCode,
  };
}

function compileTrust(config: { readonly trustedIPs?: readonly string[]; readonly insecure: boolean } | undefined, path: string, problems: Problems): TrustSpec | null {
  if (config === undefined) return null;
  const trustedIPs = compileAddresses(config.trustedIPs, keyPath(path, 'trustedIPs'), problems);
  if (!config.insecure && trustedIPs.length === 0) {
    problems.warn(path, 'no trustedIPs and not insecure: no peer is believed, so this does nothing');
    return null;
  }
  return { insecure: config.insecure, trustedIPs };
}

export function compileEntryPointLimits(name: string, ep: EntryPointConfig, problems: Problems): EntryPointLimits {
  const path = keyPath('entryPoints', name);
  const timeouts = ep.transport.respondingTimeouts;
  if (timeouts.idleTimeout > 0 && timeouts.idleTimeout < UWS_HTTP_IDLE_SECONDS * 1000) {
    problems.warn(
      keyPath(keyPath(keyPath(path, 'transport'), 'respondingTimeouts'), 'idleTimeout'),
      `${formatDuration(timeouts.idleTimeout)} is not applied: uWebSockets.js closes idle keep-alive connections after its own ${UWS_HTTP_IDLE_SECONDS}s`,
    );
  }
  return {
    maxConnections: ep.websocket.maxConnections,
    proxyProtocol: compileTrust(ep.proxyProtocol, keyPath(path, 'proxyProtocol'), problems),
    forwardedHeaders: compileTrust(ep.forwardedHeaders, keyPath(path, 'forwardedHeaders'), problems),
    readTimeoutMs: timeouts.readTimeout,
    writeTimeoutMs: timeouts.writeTimeout,
  };
}

export function compileServiceLimits(lb: LoadBalancerConfig, config: CheckedConfig): ServiceLimits {
  return {
    maxConnections: lb?.maxConnections ?? config.loadBalancer.maxConnections,
    // A tenth of the rate at once: upgrades beyond it wait for their token (up to a second), so the backend
    // sees the rate itself rather than the bunches in which refused clients come back.
    admission: compileRate(lb?.admission ?? config.loadBalancer.admission, 0.1),
  };
}

export function compileConnectionLimits(config: CheckedConfig, problems: Problems): ConnectionLimitsSpec {
  const ws = config.websocket;
  const allowedOrigins: string[] = [];
  (ws.allowedOrigins ?? []).forEach((origin, i) => {
    const text = origin.trim().toLowerCase().replace(/\/+$/, '');
    if (text !== '*' && !/^[a-z][a-z0-9+.-]*:\/\/[^/?#\s]+$/.test(text)) {
      problems.add(indexPath('websocket.allowedOrigins', i), `'${origin}' is not an origin (expected scheme://host[:port] like "https://app.example.com", or "https://*.example.com")`);
    } else allowedOrigins.push(text);
  });
  const messageRate = compileRate(ws.messageRate);
  return {
    allowedOrigins: allowedOrigins.includes('*') ? [] : allowedOrigins,
    messageRate: messageRate === null ? null : { ...messageRate, onLimit: ws.messageRate!.onLimit },
    controlFrameRate: compileRate(ws.controlFrameRate),
    maxLifetimeMs: ws.maxLifetime,
  };
}
