/**
 * A WebSocket upgrade through its router's middlewares (src/middleware/chain.ts) before beginUpgrade takes
 * it to a backend: path rewrites, request headers (Origin for a backend that checks it), basicAuth and
 * forwardAuth deciding who may upgrade at all. A middleware's answer (401, a redirect) goes to the client
 * instead of a 101; the response headers middlewares set go out with the 101 or the backend's refusal.
 * Routers without middlewares never come here.
 *
 * For middlewares that count (onEnd: inFlightReq), a WebSocket is in flight for its whole life: when the
 * upgrade goes on to a backend, the end hooks move to the connection's limits object (limits-connection.ts)
 * and run when the tunnel is released (the upgrade failed, or the WebSocket closed); when a middleware answers
 * or the client leaves first, they run then.
 */
import { STATUS_CODES } from 'node:http';
import type uWS from 'uWebSockets.js';
import { ChainedExchange, type HeaderList } from '../middleware/chain.js';
import type { HeaderPair } from '../middleware/response-headers.js';
import type { ClientRequestInfo } from './forwarded-request.js';
import type { Generation } from './generation.js';
import { upgradeClientInfo, upgradeRequest, type ProxyRequest } from './http-request.js';
import type { CompressionSpec } from '../config/snapshot.js';
import { beginUpgrade } from './upgrade.js';
import { logMiddlewareAnswer } from './refusals.js';
import type { ConnectionLimits } from './limits-connection.js';
import { newConnectionLimits } from './admission.js';
import { countLimited } from './limits.js';
import { LimitKind, type LimitReason } from '../shared/metrics-plan.js';

export class UpgradeExchange extends ChainedExchange {
  readonly kind = 'upgrade';
  aborted = false;
  readonly request: ProxyRequest;
  private done = false;

  constructor(
    private readonly res: uWS.HttpResponse,
    private readonly uwsContext: uWS.us_socket_context_t,
    private readonly client: ClientRequestInfo,
    clientForwarded: string[],
    private readonly gen: Generation,
    private readonly router: number,
    private readonly entryPoint: number,
    private readonly compression: CompressionSpec | null,
    /** What the entry point's limits hold for this upgrade (admission.ts); given to the tunnel or released. */
    private limits: ConnectionLimits | null,
  ) {
    super();
    gen.acquire();
    this.request = upgradeRequest(client, clientForwarded, gen.snapshot.entryPoints[entryPoint]!.port);
    res.onAborted(() => {
      this.aborted = true;
      this.end();
    });
  }

  start(): void {
    this.runChain(this.gen.chains[this.router]!);
  }

  protected proceed(): void {
    const edits = this.responseEdits;
    const extra = edits === null ? null : (edits.apply([]) as [string, string][]);
    const client = upgradeClientInfo(this.client, this.request);
    const hooks = this.takeEndHooks();
    let limits = this.limits;
    if (hooks !== null) (limits ??= newConnectionLimits(this.gen)).addHooks(hooks);
    this.limits = null;
    // beginUpgrade takes its own reference on the generation and replaces the abort handler; the tunnel
    // releases the limits when it ends.
    beginUpgrade(this.res, this.uwsContext, client, this.gen, this.router, this.entryPoint, this.compression, extra, limits);
    this.end();
  }

  protected countRefusal(reason: LimitReason): void {
    countLimited(this.gen, this.entryPoint, this.router, LimitKind.Upgrade, reason);
  }

  respond(status: number, headers: HeaderList, body: string | Uint8Array): void {
    if (this.aborted || this.done) return;
    const pairs: HeaderPair[] = headers.map(([name, value]) => [name, value]);
    this.responseEdits?.apply(pairs);
    logMiddlewareAnswer(this.gen, this.entryPoint, this.router, this.client, status);
    const res = this.res;
    res.cork(() => {
      res.writeStatus(`${status} ${STATUS_CODES[status] ?? ''}`);
      for (const [name, value] of pairs) res.writeHeader(name, value);
      res.end(body, true);
    });
    this.end();
  }

  private end(): void {
    if (this.done) return;
    this.done = true;
    this.runEndHooks();
    this.limits?.release(null);
    this.limits = null;
    this.gen.release();
  }
}

/** Run the upgrade through its router's middlewares, then on to the backend (call inside the uWS handler). */
export function upgradeThroughChain(
  res: uWS.HttpResponse,
  uwsContext: uWS.us_socket_context_t,
  client: ClientRequestInfo,
  clientForwarded: string[],
  gen: Generation,
  router: number,
  entryPoint: number,
  compression: CompressionSpec | null,
  limits: ConnectionLimits | null = null,
): void {
  new UpgradeExchange(res, uwsContext, client, clientForwarded, gen, router, entryPoint, compression, limits).start();
}
