/**
 * The worker's listeners: one uWebSockets.js app per entry point, all on the same ports in every worker
 * (uSockets sets SO_REUSEPORT, so the kernel spreads accepted connections over the workers). TLS entry
 * points pick their certificate by SNI, with the first certificate as the default.
 *
 * Across reloads: an app's handlers read the generation current when a request arrives, so a change of
 * routes, services or middlewares needs no new app. But uWebSockets.js fixes maxPayloadLength,
 * idleTimeout, maxBackpressure and compression per `app.ws()`, cannot take an SNI entry back under live
 * connections, and binds one address per listen; when any of that changes for an entry point, a new app
 * is opened beside the old one (SO_REUSEPORT), and once it listens the old listen socket is closed: the
 * old app's connections live on in it until they end. (Closing a SO_REUSEPORT listen socket resets the
 * connections still queued on it unless the kernel migrates them: net.ipv4.tcp_migrate_req=1, see
 * docs/operations.md.)
 */
import uWS from 'uWebSockets.js';
import type { CertificateSpec, EntryPointSpec, TlsOptionsSpec } from '../config/snapshot.js';
import type { RouteInput } from '../config/rule-ast.js';
import { formatHostPort } from '../shared/address.js';
import { context } from './context.js';
import type { Generation } from './generation.js';
import { lastRequestHeadBytes, readClientRequest } from './forwarded-request.js';
import { beginUpgrade, onClientOpen } from './upgrade.js';
import { onClientMessage, onClientDrain, type TunnelRef } from './tunnel.js';
import { answerUnrouted, refuseRequest } from './refusals.js';
import { lastForwarding, resolveClient } from './real-client.js';
import { REFUSED, admitUpgrade } from './admission.js';
import { onClientClosed, onClientControlFrame } from './limits-connection.js';
import { handleHttp } from './http-proxy.js';
import { readClientForwarded } from './http-request.js';
import { upgradeThroughChain } from './http-upgrade.js';
import { uwsCompression } from './compression.js';

/** An entry point by name, as long as any app serves it: handlers of the old and new app of a replaced
 *  entry point share it, so both route with the current generation's index of that entry point. */
interface EntryPointRef {
  readonly name: string;
  /** Index in the current generation's entryPoints; -1 once the entry point was removed. */
  index: number;
}

export interface Listener {
  readonly entryPoint: EntryPointRef;
  /** host:port as configured, for messages. */
  readonly address: string;
  /** What, when it changes, needs a new app (see listenerKey). */
  readonly key: string;
  readonly app: uWS.TemplatedApp;
  socket: uWS.us_listen_socket | null;
}

/** `close()` exists on native uWS apps of this version (it closes the listen socket and every
 *  connection of the app) but is missing from the shipped typings. */
type ClosableApp = uWS.TemplatedApp & { close?: () => void };

/** RouteInput over the live uWS request; reused for every request (routing is synchronous). */
class UwsRouteInput implements RouteInput {
  req: uWS.HttpRequest | null = null;
  host = '';
  path = '';
  query = '';
  method = '';
  clientIp = '';

  set(req: uWS.HttpRequest, clientIp: string): void {
    this.req = req;
    this.host = hostnameOf(req.getHeader('host'));
    this.path = req.getUrl();
    this.query = req.getQuery() ?? '';
    this.method = req.getCaseSensitiveMethod();
    this.clientIp = clientIp;
  }

  header(lowerCaseName: string): string {
    return this.req!.getHeader(lowerCaseName);
  }
}

/** Host header without port, lowercased; IPv6 literals lose their brackets. */
export function hostnameOf(host: string): string {
  if (host.startsWith('[')) {
    const close = host.indexOf(']');
    return (close < 0 ? host.slice(1) : host.slice(1, close)).toLowerCase();
  }
  const colon = host.indexOf(':');
  return (colon < 0 ? host : host.slice(0, colon)).toLowerCase();
}

const routeInput = new UwsRouteInput();

/** The router for this request in `gen` on entry point `index`, or -1 after answering 404 (Traefik's text). */
function route(gen: Generation, index: number, res: uWS.HttpResponse, req: uWS.HttpRequest): number {
  routeInput.set(req, resolveClient(index < 0 ? undefined : gen.limits.entryPoints[index], res, req));
  const router = index < 0 ? -1 : gen.routes.match(index, routeInput);
  routeInput.req = null;
  if (router < 0) answerUnrouted(res, req, routeInput, gen, index);
  return router;
}

function tlsOptions(cert: CertificateSpec | null, settings: TlsOptionsSpec | null): uWS.AppOptions {
  const options: uWS.AppOptions = cert === null ? {} : { cert_file_name: cert.certFile, key_file_name: cert.keyFile };
  if (settings !== null && settings.ciphers !== '') options.ssl_ciphers = settings.ciphers;
  return options;
}

/** Names a worker registers on the fly for wildcard certificates, per entry point. */
const MAX_WILDCARD_NAMES = 1000;

/**
 * The entry point's app, with `addRoutes` applied to every router it has. uWS routes a TLS request
 * by its SNI name first: each name given to addServerName gets a router of its own, and a request on
 * a name whose router is empty is dropped without an answer. So every name is given the same routes.
 */
function createApp(entryPoint: EntryPointSpec, certificates: readonly CertificateSpec[], addRoutes: (app: uWS.TemplatedApp) => void): uWS.TemplatedApp {
  if (!entryPoint.tls) {
    const app = uWS.App();
    addRoutes(app);
    return app;
  }
  // sniStrict: the app's own context has no certificate, so a handshake whose SNI names no certificate fails.
  const settings = entryPoint.tlsOptions;
  const app = uWS.SSLApp(tlsOptions(settings?.sniStrict === true ? null : certificates[0]!, settings));
  addRoutes(app);
  const addName = (name: string, cert: CertificateSpec): void => {
    app.addServerName(name, tlsOptions(cert, settings));
    addRoutes(app.domain(name));
  };
  const wildcards: [string, CertificateSpec][] = [];
  for (const cert of certificates) {
    for (const name of cert.names) {
      if (name.startsWith('*.')) wildcards.push([name.slice(1), cert]);
      else addName(name, cert);
    }
  }
  if (wildcards.length > 0) {
    // uSockets matches exact names only: register a wildcard's certificate for each new name it covers.
    // Each registration holds a TLS context and a route table for good (removing one under live
    // connections is not safe in uWS), so a client inventing subdomains could grow memory without
    // end: past MAX_WILDCARD_NAMES, new names are served the default certificate instead.
    let added = 0;
    app.missingServerName((hostname) => {
      if (added >= MAX_WILDCARD_NAMES) return;
      const name = hostname.toLowerCase();
      for (const [suffix, cert] of wildcards) {
        if (name.endsWith(suffix) && name.indexOf('.') === name.length - suffix.length) {
          addName(hostname, cert);
          added++;
          return;
        }
      }
    });
  }
  return app;
}

/** Everything about an entry point that an app fixes when it is made: a change needs a new app. */
export function listenerKey(entryPoint: EntryPointSpec, gen: Generation): string {
  const ws = gen.websocket;
  const certificates = entryPoint.tls ? gen.snapshot.certificates.map((c) => [c.certFile, c.keyFile, c.fingerprint, c.names.join(',')]) : [];
  const controlFrames = gen.snapshot.limits.controlFrameRate !== null;
  return JSON.stringify([entryPoint.host, entryPoint.port, entryPoint.tls, entryPoint.tlsOptions, certificates, ws.maxMessageSize, ws.clientMaxBuffer, ws.idleTimeoutSeconds, entryPoint.compression, controlFrames]);
}

/** The worker's listeners: the app serving each entry point now, and apps kept for their connections. */
export class ListenerSet {
  private readonly refs = new Map<string, EntryPointRef>();
  private readonly active = new Map<string, Listener>();
  /** Apps whose listen socket is closed but whose connections may still be open. */
  private readonly retired: Listener[] = [];

  /**
   * Make the listeners match `gen`: new entry points open, removed ones stop accepting, changed ones get
   * a new app. `done` gets the addresses that could not be opened (empty when all listen). Every entry
   * point routes with `gen` from the moment it is current (context().current), whichever app serves it.
   */
  apply(gen: Generation, done: (failed: string[]) => void): void {
    const entryPoints = gen.snapshot.entryPoints;
    const failed: string[] = [];
    let pending = 1;
    const settle = (): void => {
      if (--pending === 0) done(failed);
    };
    const names = new Set(entryPoints.map((ep) => ep.name));
    for (const [name, listener] of this.active) {
      if (names.has(name)) continue;
      this.retire(listener);
      this.active.delete(name);
      this.refs.get(name)!.index = -1;
    }
    entryPoints.forEach((entryPoint, index) => {
      let ref = this.refs.get(entryPoint.name);
      if (ref === undefined) this.refs.set(entryPoint.name, (ref = { name: entryPoint.name, index }));
      ref.index = index;
      const key = listenerKey(entryPoint, gen);
      const existing = this.active.get(entryPoint.name);
      if (existing !== undefined && existing.key === key) return;
      pending++;
      const listener = this.open(entryPoint, ref, key, gen);
      const onListen = (socket: uWS.us_listen_socket | false): void => {
        if (socket) {
          listener.socket = socket;
          // The new app accepts now: only then stop the old one accepting, so no connection is refused.
          if (existing !== undefined) this.retire(existing);
          this.active.set(entryPoint.name, listener);
        } else {
          // The old app (if any) keeps serving this entry point with its old settings.
          failed.push(`${entryPoint.name} (${listener.address})`);
          this.retired.push(listener);
        }
        settle();
      };
      if (entryPoint.host === '') listener.app.listen(entryPoint.port, onListen);
      else listener.app.listen(entryPoint.host, entryPoint.port, onListen);
    });
    settle();
  }

  private open(entryPoint: EntryPointSpec, ref: EntryPointRef, key: string, gen: Generation): Listener {
    const ws = gen.websocket;
    const addRoutes = (app: uWS.TemplatedApp): void => {
      app.ws<TunnelRef>('/*', {
        // uWS drops a client past this limit with no close frame (1006), so it is set to twice
        // Sluice's limit, which onClientMessage enforces with a proper 1009.
        maxPayloadLength: Math.min(2 * ws.maxMessageSize, 0x7fffffff),
        maxBackpressure: ws.clientMaxBuffer,
        closeOnBackpressureLimit: 1,
        idleTimeout: ws.idleTimeoutSeconds,
        sendPingsAutomatically: true,
        // uWS inflates a client's compressed message up to maxPayloadLength too, so Sluice's 1009 applies
        // to the inflated size; past twice the limit uWS drops the client (1006) before Sluice sees it.
        compression: uwsCompression(entryPoint.compression),
        upgrade: (res, req, uwsContext) => {
          const ctx = context();
          const current = ctx.current;
          const index = ref.index;
          const router = route(current, index, res, req);
          if (router < 0) return;
          if (ctx.closing.has(ref.name)) {
            refuseRequest(res, routeInput, current, index, router, true, 503, 'Sluice is shutting down', [['retry-after', '1']]);
            return;
          }
          if (req.getHeader('sec-websocket-version') !== '13') {
            refuseRequest(res, routeInput, current, index, router, true, 426, 'unsupported WebSocket version (expected Sec-WebSocket-Version: 13)', [['sec-websocket-version', '13']]);
            return;
          }
          if (!/^[A-Za-z0-9+/]{22}==$/.test(req.getHeader('sec-websocket-key'))) {
            refuseRequest(res, routeInput, current, index, router, true, 400, 'invalid WebSocket handshake: Sec-WebSocket-Key must be 16 bytes in base64');
            return;
          }
          const ep = current.snapshot.entryPoints[index]!;
          const client = readClientRequest(req, routeInput.clientIp, ep.tls, lastForwarding());
          if (lastRequestHeadBytes() > ep.maxHeaderBytes) {
            refuseRequest(res, routeInput, current, index, router, true, 431, `request header fields too large (the limit is ${ep.maxHeaderBytes} bytes)`);
            return;
          }
          // Origins and the entry point's maxConnections (admission.ts); what it holds goes with the upgrade.
          const limits = admitUpgrade(current, index, router, res, req, routeInput);
          if (limits === REFUSED) return;
          if (current.chains[router]!.length > 0) upgradeThroughChain(res, uwsContext, client, readClientForwarded(req), current, router, index, entryPoint.compression, limits);
          else beginUpgrade(res, uwsContext, client, current, router, index, entryPoint.compression, null, limits);
        },
        open: onClientOpen,
        message: onClientMessage,
        drain: onClientDrain,
        close: onClientClosed,
        // uWS answers pings itself; these handlers exist only to count them against controlFrameRate (uWS
        // calls into JavaScript for control frames only when a handler is set).
        ...(gen.snapshot.limits.controlFrameRate === null ? {} : { ping: onClientControlFrame, pong: onClientControlFrame }),
      });
      app.any('/*', (res, req) => {
        const ctx = context();
        const current = ctx.current;
        const router = route(current, ref.index, res, req);
        if (router < 0) return;
        // uWS hands a request to the ws route only when Sec-WebSocket-Key is 24 characters long, so a
        // WebSocket upgrade with a missing or short key lands here: it is a bad handshake, not plain HTTP.
        if (req.getHeader('upgrade').toLowerCase() === 'websocket') {
          refuseRequest(res, routeInput, current, ref.index, router, true, 400, 'invalid WebSocket handshake: Sec-WebSocket-Key must be 16 bytes in base64');
          return;
        }
        if (ctx.closing.has(ref.name)) {
          refuseRequest(res, routeInput, current, ref.index, router, false, 503, 'Sluice is shutting down', [['retry-after', '1']]);
          return;
        }
        handleHttp(res, req, current, router, ref.index, routeInput.clientIp, lastForwarding());
      });
    };
    const app = createApp(entryPoint, gen.snapshot.certificates, addRoutes);
    return { entryPoint: ref, address: formatHostPort(entryPoint.host, entryPoint.port), key, app, socket: null };
  }

  private retire(listener: Listener): void {
    if (listener.socket !== null) {
      uWS.us_listen_socket_close(listener.socket);
      listener.socket = null;
    }
    this.retired.push(listener);
  }

  /** Every app that may hold connections (serving or retired): fan-out publishes to each, since uWS
   *  topics belong to one app. */
  apps(): uWS.TemplatedApp[] {
    const apps: uWS.TemplatedApp[] = [];
    for (const listener of this.active.values()) apps.push(listener.app);
    for (const listener of this.retired) apps.push(listener.app);
    return apps;
  }

  /** Stop accepting on entry point `name` (or on every one); open connections are left alone. */
  stopAccepting(name?: string): void {
    for (const listener of this.active.values()) {
      if (name !== undefined && listener.entryPoint.name !== name) continue;
      if (listener.socket !== null) {
        uWS.us_listen_socket_close(listener.socket);
        listener.socket = null;
      }
    }
  }

  /** Last step of a drain: drop every connection still open (idle keep-alive HTTP ones included), so
   *  that the thread's loop runs dry and the thread can end. */
  closeAll(): void {
    this.stopAccepting();
    for (const listener of [...this.active.values(), ...this.retired]) (listener.app as ClosableApp).close?.();
  }
}
