/**
 * The worker's listeners: one uWebSockets.js app per entry point, all on the same ports in every
 * worker (uSockets sets SO_REUSEPORT, so the kernel spreads accepted connections over the workers).
 * TLS entry points pick their certificate by SNI, with the first certificate as the default.
 */
import uWS from 'uWebSockets.js';
import type { CertificateSpec, EntryPointSpec } from '../config/snapshot.js';
import type { RouteInput } from '../config/rule-ast.js';
import type { Balancer } from '../balancer/balancer.js';
import { Total } from '../shared/layout.js';
import { context, countTotal } from './context.js';
import type { RouterTable } from './router-table.js';
import { formatAddress } from './client-address.js';
import { readClientRequest } from './forwarded-request.js';
import { beginUpgrade, onClientOpen } from './upgrade.js';
import { onClientMessage, onClientDrain, onClientClose, type TunnelRef } from './tunnel.js';
import { sendError } from './http-responses.js';

export interface Listener {
  readonly entryPoint: EntryPointSpec;
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

/** The router for this request on `entryPoint`, or -1 after answering 404 (Traefik's text). */
function route(table: RouterTable, entryPoint: number, res: uWS.HttpResponse, req: uWS.HttpRequest): number {
  routeInput.set(req, formatAddress(res.getRemoteAddress()));
  const router = table.match(entryPoint, routeInput);
  routeInput.req = null;
  if (router < 0) {
    countTotal(Total.NoRoute);
    res.writeStatus('404 Not Found').end('404 page not found\n');
  }
  return router;
}

function tlsOptions(cert: CertificateSpec): uWS.AppOptions {
  return { cert_file_name: cert.certFile, key_file_name: cert.keyFile };
}

/**
 * The entry point's app, with `addRoutes` applied to every router it has. uWS routes a TLS request
 * by its SNI name first: each name given to addServerName gets a router of its own, and a request on
 * a name whose router is empty is dropped without an answer. So every name is given the same routes.
 */
/** Names a worker registers on the fly for wildcard certificates, per entry point. */
const MAX_WILDCARD_NAMES = 1000;

function createApp(entryPoint: EntryPointSpec, certificates: readonly CertificateSpec[], addRoutes: (app: uWS.TemplatedApp) => void): uWS.TemplatedApp {
  if (!entryPoint.tls) {
    const app = uWS.App();
    addRoutes(app);
    return app;
  }
  const app = uWS.SSLApp(tlsOptions(certificates[0]!));
  addRoutes(app);
  const addName = (name: string, cert: CertificateSpec): void => {
    app.addServerName(name, tlsOptions(cert));
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

/** Open every entry point; `done` gets the addresses that failed (empty when all listen). */
export function startListeners(table: RouterTable, balancers: readonly Balancer[], done: (failed: string[]) => void): Listener[] {
  const { snapshot } = context();
  const ws = snapshot.websocket;
  const listeners: Listener[] = [];
  const failed: string[] = [];
  let pending = snapshot.entryPoints.length;
  snapshot.entryPoints.forEach((entryPoint, index) => {
    const addRoutes = (app: uWS.TemplatedApp): void => {
      app.ws<TunnelRef>('/*', {
        // uWS drops a client past this limit with no close frame (1006), so it is set to twice
        // Sluice's limit, which onClientMessage enforces with a proper 1009.
        maxPayloadLength: Math.min(2 * ws.maxMessageSize, 0x7fffffff),
        maxBackpressure: ws.clientMaxBuffer,
        closeOnBackpressureLimit: 1,
        idleTimeout: ws.idleTimeoutSeconds,
        sendPingsAutomatically: true,
        compression: uWS.DISABLED,
        upgrade: (res, req, uwsContext) => {
          const router = route(table, index, res, req);
          if (router < 0) return;
          if (context().shuttingDown) {
            sendError(res, 503, 'Sluice is shutting down', [['retry-after', '1']]);
            return;
          }
          if (req.getHeader('sec-websocket-version') !== '13') {
            sendError(res, 426, 'unsupported WebSocket version (expected Sec-WebSocket-Version: 13)', [['sec-websocket-version', '13']]);
            return;
          }
          if (!/^[A-Za-z0-9+/]{22}==$/.test(req.getHeader('sec-websocket-key'))) {
            sendError(res, 400, 'invalid WebSocket handshake: Sec-WebSocket-Key must be 16 bytes in base64');
            return;
          }
          const client = readClientRequest(req, routeInput.clientIp, entryPoint.tls);
          beginUpgrade(res, uwsContext, client, router, index, balancers[snapshot.routers[router]!.service]!);
        },
        open: onClientOpen,
        message: onClientMessage,
        drain: onClientDrain,
        close: onClientClose,
      });
      app.any('/*', (res, req) => {
        const router = route(table, index, res, req);
        if (router < 0) return;
        // uWS hands a request to the ws route only when Sec-WebSocket-Key is 24 characters long, so a
        // WebSocket upgrade with a missing or short key lands here: it is a bad handshake, not plain HTTP.
        if (req.getHeader('upgrade').toLowerCase() === 'websocket') {
          sendError(res, 400, 'invalid WebSocket handshake: Sec-WebSocket-Key must be 16 bytes in base64');
          return;
        }
        sendError(res, 426, `router '${snapshot.routers[router]!.name}' serves WebSocket upgrades; plain HTTP proxying is not implemented yet`, [['upgrade', 'websocket']]);
      });
    };
    const app = createApp(entryPoint, snapshot.certificates, addRoutes);
    const listener: Listener = { entryPoint, app, socket: null };
    listeners.push(listener);
    const onListen = (socket: uWS.us_listen_socket | false): void => {
      if (socket) listener.socket = socket;
      else failed.push(`${entryPoint.name} (${entryPoint.host.includes(':') ? `[${entryPoint.host}]` : entryPoint.host}:${entryPoint.port})`);
      if (--pending === 0) done(failed);
    };
    if (entryPoint.host === '') app.listen(entryPoint.port, onListen);
    else app.listen(entryPoint.host, entryPoint.port, onListen);
  });
  return listeners;
}

export function closeListeners(listeners: readonly Listener[]): void {
  for (const listener of listeners) {
    if (listener.socket !== null) {
      uWS.us_listen_socket_close(listener.socket);
      listener.socket = null;
    }
  }
}

/** Last step of a drain: drop every connection still open (idle keep-alive HTTP ones included), so
 *  that the thread's loop runs dry and the thread can end. */
export function closeAllConnections(listeners: readonly Listener[]): void {
  closeListeners(listeners);
  for (const listener of listeners) (listener.app as ClosableApp).close?.();
}
