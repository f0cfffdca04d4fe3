/**
 * The middleware framework: how Traefik's middlewares (http.middlewares) run on plain HTTP requests and on
 * WebSocket upgrades alike.
 *
 * How to add one:
 *  - One file per middleware type in src/middleware/, exporting a class that implements `Middleware`, and one
 *    line in CONSTRUCTORS below. The config side is src/config/schema-middlewares.ts (keys, defaults, docs),
 *    src/config/middleware-spec.ts (the compiled, structured-clone-safe spec) and compile-middlewares.ts.
 *  - A middleware is constructed once per config generation per spec (`new X(spec)`), when the worker's
 *    Generation is built: no per-request lookup by name. It may hold per-generation state in its fields
 *    (counters, caches, connection pools); the state starts fresh with each reload and is dropped with the
 *    generation, after `close()`. A middleware named by several routers is one instance shared by them.
 *  - Each request runs through `Exchange.next()`: a middleware's `handle(exchange)` does its work and then
 *    either calls `exchange.next()` (go on: the next middleware, or the backend after the last) or
 *    `exchange.respond(...)` (answer the client; nothing reaches the backend). It may do either later, from
 *    a callback (forwardAuth asks another service): the exchange is registered for the client's abort before
 *    the chain starts, and `exchange.aborted` says whether the client is still there. Exactly one of
 *    next()/respond() per handle() call.
 *  - `exchange.request` is the request as it will be forwarded (path, query, headers, Host); changing it
 *    changes what the backend gets. `exchange.responseHeaders` edits whatever answer goes back (the
 *    backend's, a later middleware's, or Sluice's own error), for response headers and CORS.
 *  - `exchange.kind` is 'http' or 'upgrade'. Everything applies to both; a middleware that makes no sense for
 *    one kind decides so itself (CORS preflights only exist in HTTP).
 *  - `exchange.onEnd(fn)` runs `fn` once when the request is over, however it ended, for middlewares that
 *    undo something then (inFlightReq's count). For an upgrade that reaches its backend, "over" is when the
 *    WebSocket closes: the hooks move to the tunnel (http-upgrade.ts) and run when it is released. It
 *    allocates, so only middlewares that need it use it.
 *  - A middleware that refuses for a limit (inFlightReq, rateLimit, ipAllowList) answers with
 *    `exchange.refuse(reason, …)`: the same answer as respond(), counted in sluice_limited_total (and for an
 *    upgrade in websocket_connections_total{outcome="limited"}).
 *  - A throw inside handle() answers 500 and is logged once per middleware; never let a promise reject
 *    unhandled.
 * Cost: a router without middlewares goes straight to the backend; with some, one array walk and whatever the
 * middlewares themselves do. Nothing here allocates per request besides the exchange itself.
 */
import type { MiddlewareSpec, Snapshot } from '../config/snapshot.js';
import type { ProxyRequest } from '../worker/http-request.js';
import type { LimitReason } from '../shared/metrics-plan.js';
import { AddPrefix } from './add-prefix.js';
import { BasicAuth } from './basic-auth.js';
import { ForwardAuth } from './forward-auth.js';
import { Headers } from './headers.js';
import { RedirectRegex } from './redirect-regex.js';
import { RedirectScheme } from './redirect-scheme.js';
import { ReplacePath } from './replace-path.js';
import { ReplacePathRegex } from './replace-path-regex.js';
import { StripPrefix } from './strip-prefix.js';
import { StripPrefixRegex } from './strip-prefix-regex.js';
import { ResponseHeaders } from './response-headers.js';
import { InFlightReq } from './in-flight-req.js';
import { RateLimit } from './rate-limit.js';
import { IpAllowList } from './ip-allow-list.js';

export { ResponseHeaders };

export type HeaderList = readonly (readonly [string, string])[];

/** What a middleware sees of one request. */
export interface Exchange {
  readonly kind: 'http' | 'upgrade';
  readonly request: ProxyRequest;
  /** Edits to the response headers, applied to whatever answer goes back to the client. */
  readonly responseHeaders: ResponseHeaders;
  /** True once the client went away: an asynchronous middleware stops there (neither next nor respond). */
  readonly aborted: boolean;
  /** Go on: the next middleware, or the backend after the last. */
  next(): void;
  /** Answer the client now; the request goes no further. `headers` names are lowercase. */
  respond(status: number, headers: HeaderList, body: string | Uint8Array): void;
  /** Run `fn` once when the request is over (answered, proxied, failed or aborted; an upgrade: closed). */
  onEnd(fn: () => void): void;
  /** respond(), counted as a refusal by a limit. */
  refuse(reason: LimitReason, status: number, headers: HeaderList, body: string): void;
}

export interface Middleware {
  readonly name: string;
  handle(exchange: Exchange): void;
  /** The generation ends: let go of pools and timers. */
  close?(): void;
}

type Constructor = new (spec: never) => Middleware;

const CONSTRUCTORS: Record<MiddlewareSpec['type'], Constructor> = {
  headers: Headers,
  stripPrefix: StripPrefix,
  stripPrefixRegex: StripPrefixRegex,
  replacePath: ReplacePath,
  replacePathRegex: ReplacePathRegex,
  addPrefix: AddPrefix,
  redirectScheme: RedirectScheme,
  redirectRegex: RedirectRegex,
  basicAuth: BasicAuth,
  forwardAuth: ForwardAuth,
  inFlightReq: InFlightReq,
  rateLimit: RateLimit,
  ipAllowList: IpAllowList,
};

/** One generation's middlewares: an instance per spec, and each router's chain (empty when it has none). */
export interface Middlewares {
  readonly instances: readonly Middleware[];
  /** By router index. */
  readonly chains: readonly (readonly Middleware[])[];
}

export function buildMiddlewares(snapshot: Snapshot): Middlewares {
  const instances = snapshot.middlewares.map((spec) => new CONSTRUCTORS[spec.type](spec as never));
  const chains = snapshot.routers.map((router) => router.middlewares.map((m) => instances[m]!));
  return { instances, chains };
}

export function closeMiddlewares(middlewares: Middlewares): void {
  for (const m of middlewares.instances) m.close?.();
}

const NO_CHAIN: readonly Middleware[] = [];

/**
 * The walk through a chain, shared by the HTTP and the upgrade exchange: `next()` hands the exchange to the
 * next middleware, and to `proceed()` after the last. Subclasses say how to answer and how to go on.
 */
export abstract class ChainedExchange implements Exchange {
  abstract readonly kind: 'http' | 'upgrade';
  abstract readonly request: ProxyRequest;
  abstract readonly aborted: boolean;
  private chain: readonly Middleware[] = NO_CHAIN;
  private step = 0;
  private edits: ResponseHeaders | null = null;
  private endHooks: (() => void)[] | null = null;

  get responseHeaders(): ResponseHeaders {
    return (this.edits ??= new ResponseHeaders());
  }

  /** The response header edits, null when no middleware made any. */
  protected get responseEdits(): ResponseHeaders | null {
    return this.edits;
  }

  /** Start the chain (or go straight on when it is empty). */
  protected runChain(chain: readonly Middleware[]): void {
    this.chain = chain;
    this.step = 0;
    this.next();
  }

  next(): void {
    if (this.aborted) return;
    if (this.step >= this.chain.length) {
      this.proceed();
      return;
    }
    const middleware = this.chain[this.step++]!;
    try {
      middleware.handle(this);
    } catch (error) {
      reportFailure(middleware, error);
      if (!this.aborted) this.respond(500, [['content-type', 'text/plain; charset=utf-8']], `500 Internal Server Error: middleware '${middleware.name}' failed\n`);
    }
  }

  onEnd(fn: () => void): void {
    (this.endHooks ??= []).push(fn);
  }

  refuse(reason: LimitReason, status: number, headers: HeaderList, body: string): void {
    if (this.aborted) return;
    this.countRefusal(reason);
    this.respond(status, headers, body);
  }

  /** The end hooks registered so far, handed over to whatever lives on after the exchange (a tunnel). */
  protected takeEndHooks(): (() => void)[] | null {
    const hooks = this.endHooks;
    this.endHooks = null;
    return hooks;
  }

  /** Call once the request is over, however it ended. */
  protected runEndHooks(): void {
    const hooks = this.endHooks;
    if (hooks === null) return;
    this.endHooks = null;
    for (const fn of hooks) fn();
  }

  abstract respond(status: number, headers: HeaderList, body: string | Uint8Array): void;
  /** Count a refusal by a limit (refuse() answers right after). */
  protected abstract countRefusal(reason: LimitReason): void;
  /** Past the last middleware: forward the request. */
  protected abstract proceed(): void;
}

const reported = new WeakSet<Middleware>();

/** A middleware that throws is a bug: say so on stderr once per middleware, not once per request. */
export function reportFailure(middleware: Middleware, error: unknown): void {
  if (reported.has(middleware)) return;
  reported.add(middleware);
  process.stderr.write(`${JSON.stringify({ level: 'error', msg: `middleware '${middleware.name}' failed`, error: String((error as Error)?.stack ?? error) })}\n`);
}
