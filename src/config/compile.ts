/**
 * Turns a checked config (validate.ts) into the Snapshot the workers run: cross-references resolved to
 * indexes, TLS decided per entry point, certificate and CA files read and checked, defaults that depend on
 * other keys applied, routers sorted. Problems found here join the same list as validation's; the caller
 * throws when the list is not empty, so a partly built snapshot never escapes.
 */
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';

import { formatDuration, formatSize } from './duration.js';
import { Problems, indexPath, keyPath, unknownName } from './errors.js';
import { parseRule } from './rule-parser.js';
import type { RuleNode } from './rule-ast.js';
import { CONFIG_SCHEMA, defaultOf } from './schema.js';
import { serversTransportSchema } from './schema-services.js';
import {
  SNAPSHOT_VERSION,
  type LogLevel,
  type BackendSpec,
  type EntryPointSpec,
  type RouterSpec,
  type ServiceSpec,
  type Snapshot,
  type TransportSpec,
  type WebSocketSettings,
} from './snapshot.js';
import { defaultsOf, type CheckedConfig } from './validate.js';
import { compileCompression } from './compile-compression.js';
import { compileFanout } from './compile-fanout.js';
import { compileDnsServers, compileHash, compileHealthCheck, compilePassiveHealthCheck, compileSticky, stickySecret } from './compile-balancing.js';
import { NO_TLS_ENTRY_POINT, addDefaultCertificate, assignTlsOptions, compileTlsOptionSets, decideTlsEntryPoints } from './compile-tls.js';
import { compileMiddlewares, type MiddlewareTable } from './compile-middlewares.js';
import { compileConnectionLimits, compileEntryPointLimits, compileServiceLimits } from './compile-limits.js';
import { compileSourceAddresses } from './source-addresses.js';
import { baseDirOf, compileCertificates, readCaBundle, readConfigFile } from './compile-certificates.js';

export interface CompileContext {
  /** The config file as the user named it; becomes Snapshot.source. */
  readonly source: string;
  /** Relative file paths in the config (certificates, CAs) are resolved from here. */
  readonly baseDir: string;
  /** `--workers` on the command line; wins over the file. */
  readonly workers?: number | undefined;
  /** When the configuration spans several files: the directory relative paths of the key at `path` are
   *  resolved from (the file that key came from). Default: baseDir. */
  readonly baseDirFor?: ((path: string) => string) | undefined;
  /**
   * The shared-memory slot of a backend, by its identity (service name, server URL as written; `URL#N` for
   * discovery slots). The primary keeps slots stable across reloads (src/primary/backend-slots.ts); without
   * an assigner, backends are numbered in config order.
   */
  readonly assignSlot?: ((service: string, url: string) => number) | undefined;
}

/** Built-in transport for services that name none (a transport declared with no keys); a user transport
 *  called 'default' replaces it. */
const DEFAULT_TRANSPORT: TransportSpec = transportSpec('default', defaultsOf(serversTransportSchema), '');

/** What validate fills in for a service whose loadBalancer is missing or invalid (already reported). */
const EMPTY_LOAD_BALANCER = defaultsOf(CONFIG_SCHEMA.fields.http.fields.services.value.fields.loadBalancer);

type MutableEntryPoint = { -readonly [K in keyof EntryPointSpec]: EntryPointSpec[K] };

/** uWebSockets.js checks idleTimeout in whole seconds, 0 or 8..960, and aborts the process otherwise. */
const IDLE_TIMEOUT_MIN_S = 8;
const IDLE_TIMEOUT_MAX_S = 960;

export function compile(config: CheckedConfig, context: CompileContext, problems: Problems): Snapshot {
  const entryPointConfigs = Object.entries(config.entryPoints ?? {});
  const entryPoints = entryPointConfigs.map(([name, ep]): MutableEntryPoint => ({
    name,
    host: ep.address?.host ?? '',
    port: ep.address?.port ?? 0,
    tls: ep.http?.tls !== undefined,
    tlsBy: ep.http?.tls !== undefined ? 'http.tls' : '',
    tlsOptions: null,
    lifeCycle: {
      acceptGraceMs: ep.transport.lifeCycle.requestAcceptGraceTimeout,
      graceMs: ep.transport.lifeCycle.graceTimeOut,
    },
    maxHeaderBytes: ep.http.maxHeaderBytes,
    compression: compileCompression(config.websocket, ep.websocket, name, problems),
    limits: compileEntryPointLimits(name, ep, problems),
  }));
  checkPortsUnique(entryPoints, problems);
  if (config.entryPoints !== undefined && entryPoints.length === 0) {
    problems.add('entryPoints', 'no entry points (expected at least one, like web: { address: ":8080" })');
  }

  const transports = compileTransports(config, context, problems);
  const { services, backends } = compileServices(config, transports, problems, context.assignSlot);
  const middlewares = compileMiddlewares(config.http?.middlewares ?? {}, (file, path, what) => readConfigFile(file, context, path, problems, what), problems);
  const routers = compileRouters(config, entryPoints, services, middlewares, problems);
  const certificates = compileCertificates(config, context, problems);
  assignTlsOptions(config, entryPoints, routers, compileTlsOptionSets(config, problems), problems);
  addDefaultCertificate(config, entryPoints, routers, certificates, problems);

  return {
    version: SNAPSHOT_VERSION,
    source: context.source,
    workers: context.workers ?? config.workers ?? availableParallelism(),
    entryPoints,
    certificates,
    routers,
    services,
    backends,
    transports,
    middlewares: middlewares.specs,
    websocket: compileWebSocket(config, problems),
    limits: compileConnectionLimits(config, problems),
    onRemove: config.loadBalancer.onRemove,
    ...stickySecret(config, services),
    dnsServers: compileDnsServers(config.dns?.servers ?? [], problems),
    admin: { ...config.admin.address, token: config.admin.token ?? process.env.SLUICE_ADMIN_TOKEN ?? '' },
    logLevel: config.log.level.toLowerCase() as LogLevel,
    accessLog: {
      enabled: config.accessLog !== undefined,
      filePath: config.accessLog?.filePath !== undefined ? resolve(baseDirOf(context, 'accessLog.filePath'), config.accessLog.filePath) : '',
      format: 'json',
    },
    fanout: compileFanout(config, problems),
  };
}

function checkPortsUnique(entryPoints: readonly EntryPointSpec[], problems: Problems): void {
  entryPoints.forEach((ep, i) => {
    if (ep.port === 0) return; // its address was invalid and is reported already
    const clash = entryPoints
      .slice(0, i)
      .find((other) => other.port === ep.port && (other.host === ep.host || other.host === '' || ep.host === ''));
    if (clash !== undefined) {
      problems.add(
        keyPath(keyPath('entryPoints', ep.name), 'address'),
        `port ${ep.port} is already used by entry point '${clash.name}' (expected a different port or host)`,
      );
    }
  });
}

function compileTransports(config: CheckedConfig, context: CompileContext, problems: Problems): TransportSpec[] {
  const transports: TransportSpec[] = [DEFAULT_TRANSPORT];
  for (const [name, transport] of Object.entries(config.http?.serversTransports ?? {})) {
    const path = keyPath('http.serversTransports', name);
    const rootCAs = readCaBundle(transport.rootCAs ?? [], context, keyPath(path, 'rootCAs'), problems);
    const sourceAddresses = compileSourceAddresses(transport.sourceAddresses ?? [], keyPath(path, 'sourceAddresses'), problems);
    const spec = transportSpec(name, transport, rootCAs, sourceAddresses);
    if (name === 'default') transports[0] = spec;
    else transports.push(spec);
  }
  return transports;
}

type CheckedTransport = NonNullable<CheckedConfig['http']['serversTransports']>[string];

function transportSpec(name: string, transport: CheckedTransport, rootCAs: string, sourceAddresses: readonly string[] = []): TransportSpec {
  return {
    name,
    insecureSkipVerify: transport.insecureSkipVerify,
    rootCAs,
    serverName: transport.serverName ?? '',
    dialTimeoutMs: transport.forwardingTimeouts.dialTimeout,
    responseHeaderTimeoutMs: transport.forwardingTimeouts.responseHeaderTimeout,
    idleConnTimeoutMs: transport.forwardingTimeouts.idleConnTimeout,
    // Traefik's meaning: 0 takes the default, a negative value keeps no idle connection.
    maxIdleConnsPerHost: transport.maxIdleConnsPerHost === 0 ? defaultOf('http.serversTransports.<name>.maxIdleConnsPerHost') : Math.max(0, transport.maxIdleConnsPerHost),
    websocketCompression: transport.websocketCompression,
    ...(sourceAddresses.length > 0 ? { sourceAddresses } : {}),
  };
}

function compileServices(
  config: CheckedConfig,
  transports: readonly TransportSpec[],
  problems: Problems,
  assignSlot: CompileContext['assignSlot'],
): { services: ServiceSpec[]; backends: BackendSpec[] } {
  const services: ServiceSpec[] = [];
  const backends: BackendSpec[] = [];
  const slotOf = (service: string, url: string): number => (assignSlot === undefined ? backends.length : assignSlot(service, url));
  const transportNames = transports.map((t) => t.name);
  for (const [name, service] of Object.entries(config.http?.services ?? {})) {
    const path = keyPath('http.services', name);
    const lb = service.loadBalancer ?? EMPTY_LOAD_BALANCER;
    let transport = 0;
    if (lb.serversTransport !== undefined) {
      transport = transportNames.indexOf(stripFileProvider(lb.serversTransport));
      if (transport < 0) {
        problems.add(
          keyPath(keyPath(path, 'loadBalancer'), 'serversTransport'),
          unknownName('servers transport', lb.serversTransport, transportNames),
        );
        transport = 0;
      }
    }
    const serviceIndex = services.length;
    const backendIndexes: number[] = [];
    const lbPath = keyPath(path, 'loadBalancer');
    const discovery = lb.discovery?.type === 'dns'
      ? {
          refreshIntervalMs: lb.discovery.refreshInterval,
          maxAddresses: lb.discovery.maxAddresses,
        }
      : null;
    for (const server of lb.servers ?? []) {
      if (server.url === undefined) continue;
      const weight = server.weight;
      if (discovery === null) {
        const index = slotOf(name, server.url.url);
        backendIndexes.push(index);
        backends.push({ index, service: serviceIndex, ...server.url, weight, dnsName: '' });
        continue;
      }
      // One slot per address the name may resolve to; each starts empty (down) until the primary fills it.
      // `url#N` names the slot wherever backends are listed by URL (metrics labels, admin API, logs).
      for (let slot = 0; slot < discovery.maxAddresses; slot++) {
        const url = `${server.url.url}#${slot}`;
        const index = slotOf(name, url);
        backendIndexes.push(index);
        backends.push({ index, service: serviceIndex, ...server.url, url, weight, dnsName: server.url.host });
      }
    }
    const strategy = lb.strategy ?? config.loadBalancer.strategy;
    const hash = strategy === 'hash' ? compileHash(lb.hash, keyPath(lbPath, 'hash'), problems) : null;
    if (strategy !== 'hash' && lb.hash !== undefined) {
      problems.add(keyPath(lbPath, 'hash'), `hash settings need strategy: hash (the service's strategy is '${strategy}')`);
    }
    const healthCheck = compileHealthCheck(lb.healthCheck);
    const passive = compilePassiveHealthCheck(lb.passiveHealthCheck);
    // A client refused because every backend is down is told to come back about when the next check
    // (or the end of an ejection) could bring one back.
    // (Not the implied passive default's window: it never ejects a service's last backend up.)
    const retryAfterMs = healthCheck !== null ? healthCheck.unhealthyIntervalMs : passive !== null && lb.passiveHealthCheck !== undefined ? passive.failureWindowMs : 1000;
    services.push({
      name,
      strategy,
      retries: lb.retries ?? config.loadBalancer.retries,
      passHostHeader: lb.passHostHeader,
      transport,
      backends: backendIndexes,
      hash,
      sticky: lb.sticky === undefined ? null : compileSticky(name, lb.sticky.cookie),
      healthCheck,
      passiveHealthCheck: passive,
      slowStartMs: lb.slowStart ?? config.loadBalancer.slowStart,
      drainWindowMs: lb.drainWindow ?? config.loadBalancer.drainWindow,
      onRemove: lb.onRemove ?? config.loadBalancer.onRemove,
      discovery,
      retryAfterSeconds: Math.max(1, Math.ceil(retryAfterMs / 1000)),
      limits: compileServiceLimits(service.loadBalancer, config),
    });
  }
  return { services, backends };
}

/** Traefik qualifies names with their provider (`chat@file`); this file is the only provider Sluice has. */
function stripFileProvider(name: string): string {
  return name.endsWith('@file') ? name.slice(0, -'@file'.length) : name;
}

function compileRouters(
  config: CheckedConfig,
  entryPoints: MutableEntryPoint[],
  services: readonly ServiceSpec[],
  middlewares: MiddlewareTable,
  problems: Problems,
): RouterSpec[] {
  const epNames = entryPoints.map((ep) => ep.name);
  const serviceNames = services.map((s) => s.name);
  const routerConfigs = Object.entries(config.http?.routers ?? {});

  // TLS-ness must be known for every entry point before any router is attached.
  decideTlsEntryPoints(config, entryPoints);

  const routers: RouterSpec[] = [];
  for (const [name, router] of routerConfigs) {
    const path = keyPath('http.routers', name);
    const tls = router.tls !== undefined;
    let ast: RuleNode | undefined;
    if (router.rule !== undefined) {
      const warnings: string[] = [];
      try {
        ast = parseRule(router.rule, warnings);
      } catch (error) {
        problems.add(keyPath(path, 'rule'), error instanceof Error ? error.message : String(error));
      }
      for (const warning of warnings) problems.warn(keyPath(path, 'rule'), warning);
    }
    let service = -1;
    if (router.service !== undefined) {
      const wanted = router.service;
      if (wanted.includes('@') && !wanted.endsWith('@file')) {
        problems.add(
          keyPath(path, 'service'),
          `service '${wanted}' belongs to another Traefik provider (expected the name of a service in http.services)`,
        );
      } else {
        service = serviceNames.indexOf(stripFileProvider(wanted));
        if (service < 0) {
          problems.add(
            keyPath(path, 'service'),
            unknownName('service', wanted, serviceNames, 'a service defined in http.services'),
          );
        }
      }
    }
    const attached = attachRouter(name, router.entryPoints, tls, entryPoints, epNames, problems);
    const chain = middlewares.resolve(router.middlewares, keyPath(path, 'middlewares'));
    if (ast === undefined || service < 0 || router.rule === undefined || attached === undefined) continue;
    routers.push({
      name,
      rule: router.rule,
      ast,
      // Traefik: priority 0 (or none) means the rule's length, so longer (more specific) rules win.
      priority: router.priority || router.rule.length,
      service,
      entryPoints: attached,
      tls,
      middlewares: chain,
    });
  }
  return routers.sort(
    (a, b) => b.priority - a.priority || b.rule.length - a.rule.length || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
  );
}

/** Returns the entry point indexes a router serves, or undefined after recording why it serves none. */
function attachRouter(
  name: string,
  listed: readonly string[] | undefined,
  tls: boolean,
  entryPoints: readonly EntryPointSpec[],
  epNames: readonly string[],
  problems: Problems,
): number[] | undefined {
  const path = keyPath('http.routers', name);
  const indexes: number[] = [];
  let reported = false;
  if (listed === undefined) {
    entryPoints.forEach((ep, i) => {
      if (ep.tls === tls) indexes.push(i);
    });
  } else {
    listed.forEach((epName, i) => {
      const at = indexPath(keyPath(path, 'entryPoints'), i);
      const index = epNames.indexOf(epName);
      if (index < 0) {
        problems.add(at, unknownName('entry point', epName, epNames, 'an entry point defined in entryPoints'));
        reported = true;
      } else if (entryPoints[index]!.tls && !tls) {
        problems.add(
          at,
          `entry point '${epName}' terminates TLS but the router has no tls (expected tls: {} on the router, or a plain entry point)`,
        );
        reported = true;
      } else if (!indexes.includes(index)) {
        indexes.push(index);
      }
    });
  }
  if (indexes.length > 0) return indexes;
  if (!reported && epNames.length > 0) {
    problems.add(
      path,
      tls
        ? NO_TLS_ENTRY_POINT
        : 'router has no plain entry point to listen on: every entry point terminates TLS (expected tls: {} on the router, or a plain entry point)',
    );
  }
  return undefined;
}

function compileWebSocket(config: CheckedConfig, problems: Problems): WebSocketSettings {
  const ws = config.websocket;
  const settings = {
    maxMessageSize: ws.maxMessageSize,
    clientHighWaterMark: ws.clientHighWaterMark,
    clientMaxBuffer: ws.clientMaxBuffer,
    upstreamWriteBudget: ws.upstreamWriteBudget,
    idleTimeoutSeconds: ws.idleTimeout / 1000,
    handshakeTimeoutMs: ws.handshakeTimeout,
    pingIntervalMs: ws.pingInterval,
    pongTimeoutMs: ws.pongTimeout,
  };
  // A buffer smaller than one message would close every client that receives a large one.
  for (const key of ['clientMaxBuffer', 'upstreamWriteBudget'] as const) {
    if (settings[key] < settings.maxMessageSize) {
      problems.add(
        `websocket.${key}`,
        `${formatSize(settings[key])} is smaller than maxMessageSize ${formatSize(settings.maxMessageSize)} (expected at least websocket.maxMessageSize)`,
      );
    }
  }
  if (settings.clientHighWaterMark > settings.clientMaxBuffer) {
    problems.add(
      'websocket.clientHighWaterMark',
      `${formatSize(settings.clientHighWaterMark)} is larger than clientMaxBuffer ${formatSize(settings.clientMaxBuffer)} (expected at most websocket.clientMaxBuffer)`,
    );
  }
  const seconds = settings.idleTimeoutSeconds;
  if (seconds !== 0 && (!Number.isInteger(seconds) || seconds < IDLE_TIMEOUT_MIN_S || seconds > IDLE_TIMEOUT_MAX_S)) {
    problems.add(
      'websocket.idleTimeout',
      `${formatDuration(ws.idleTimeout)} is out of range: uWebSockets.js times idle connections in 4-second ticks (expected 0, or whole seconds from 8s to 960s)`,
    );
  }
  return settings;
}
