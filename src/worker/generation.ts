/**
 * One compiled config as a worker runs it: the snapshot, its routing table, one balancer (and sticky
 * cookie signer) per service, and its metrics plan and slab. A new connection or request takes a
 * reference to the generation current when it arrives and keeps it until it ends, so a reload never
 * touches what is open: its router, service, limits and counters stay those it started with. When the
 * last connection of a generation that is no longer current closes, the generation is released (the
 * primary then folds its counters and may reuse the backend slots only it named).
 *
 * Plain HTTP has its own objects here too: a balancer per service fed with HTTP requests in flight (not
 * WebSocket connections), the middleware instances and each router's chain, and the keep-alive pools to the
 * backends (made on first use); the pools and middleware resources close when the generation is released.
 *
 * Nothing here is module-level: a worker holds as many generations as have connections left, and tests
 * can build one without a thread.
 */
import type { BackendSpec, ServiceSpec, Snapshot, WebSocketSettings } from '../config/snapshot.js';
import { createBalancer, type Balancer, type BackendState } from '../balancer/balancer.js';
import { StickyCookies } from '../balancer/sticky.js';
import { planMetrics, type MetricsPlan } from '../shared/metrics-plan.js';
import type { GenerationInit } from '../shared/messages.js';
import { RouterTable } from './router-table.js';
import { buildMiddlewares, closeMiddlewares, type Middleware, type Middlewares } from '../middleware/chain.js';
import { BackendPool } from './http-pool.js';
import { GenerationLimits } from './limits.js';

export class Generation {
  readonly id: number;
  readonly snapshot: Snapshot;
  readonly websocket: WebSocketSettings;
  readonly routes: RouterTable;
  readonly balancers: readonly Balancer[];
  readonly stickies: readonly (StickyCookies | null)[];
  /** Per service: the same policy as `balancers`, counting HTTP requests in flight (least outstanding requests). */
  readonly httpBalancers: readonly Balancer[];
  /** Per router: its middlewares, in order (empty when it has none). */
  readonly chains: readonly (readonly Middleware[])[];
  private readonly middlewares: Middlewares;
  /** Entry point trust and connection limits, allowed origins, admission keys (limits.ts). */
  readonly limits: GenerationLimits;
  /** Keep-alive connections per backend slot, made on first use. */
  private readonly pools = new Map<number, BackendPool>();
  readonly plan: MetricsPlan;
  /** The whole metrics buffer of this generation; this worker writes only its own slab in it. */
  readonly slab: Float64Array;
  /** Offset of this worker's slab in `slab`. */
  readonly slabBase: number;
  /** Backend specs by slot (holes for slots this generation does not use). */
  private readonly bySlot: BackendSpec[];
  /** Connections and requests that started in this generation and have not ended. */
  private refs = 0;
  /** False once a newer generation took over: the last release then lets this one go. */
  current = true;

  constructor(
    init: GenerationInit,
    workerIndex: number,
    state: BackendState & { readonly backendSlots: number; readonly backendHttpActive?: Int32Array },
    private readonly onReleased: (generation: Generation) => void,
  ) {
    this.id = init.id;
    this.snapshot = init.snapshot;
    this.websocket = init.snapshot.websocket;
    this.routes = new RouterTable(init.snapshot.routers, init.snapshot.entryPoints.length);
    const bySlot: BackendSpec[] = [];
    for (const spec of init.snapshot.backends) bySlot[spec.index] = spec;
    this.bySlot = bySlot;
    this.balancers = init.snapshot.services.map((service) => createBalancer(service, state, bySlot));
    // The same health bits, slow-start clocks and cool-downs; in-flight requests instead of connections.
    const httpState: BackendState = { ...state, backendActive: state.backendHttpActive ?? state.backendActive };
    this.httpBalancers = init.snapshot.services.map((service) => createBalancer(service, httpState, bySlot));
    this.limits = new GenerationLimits(init.snapshot);
    this.middlewares = buildMiddlewares(init.snapshot);
    this.chains = this.middlewares.chains;
    this.stickies = init.snapshot.services.map((service) => (service.sticky === null ? null : new StickyCookies(service, bySlot, init.snapshot.stickySecret)));
    this.plan = planMetrics(init.snapshot, state.backendSlots);
    this.slab = new Float64Array(init.metricsBuffer);
    this.slabBase = workerIndex * this.plan.slabFloats;
    if (this.slab.length < this.slabBase + this.plan.slabFloats) {
      throw new Error(`generation ${this.id}: metrics buffer holds ${this.slab.length} counters, worker ${workerIndex} needs ${this.slabBase + this.plan.slabFloats}`);
    }
  }

  backend(slot: number): BackendSpec {
    return this.bySlot[slot]!;
  }

  service(index: number): ServiceSpec {
    return this.snapshot.services[index]!;
  }

  /** The keep-alive pool of backend slot `slot` for plain HTTP. */
  httpPool(slot: number): BackendPool {
    let pool = this.pools.get(slot);
    if (pool === undefined) {
      const spec = this.bySlot[slot]!;
      const transport = this.snapshot.transports[this.snapshot.services[spec.service]!.transport]!;
      this.pools.set(slot, (pool = new BackendPool(spec, transport)));
    }
    return pool;
  }

  /** Close the HTTP pools and the middlewares' resources (nothing of this generation is in flight any more,
   *  or the worker is exiting). */
  closeHttp(): void {
    for (const pool of this.pools.values()) pool.close();
    this.pools.clear();
    closeMiddlewares(this.middlewares);
  }

  /** A discovered slot holds a new address (identity '' = empty): sticky cookies and hash rings follow. */
  setIdentity(slot: number, identity: string): void {
    const spec = this.bySlot[slot];
    if (spec === undefined || spec.dnsName === '') return;
    this.balancers[spec.service]!.setIdentity?.(slot, identity);
    this.httpBalancers[spec.service]!.setIdentity?.(slot, identity);
    this.stickies[spec.service]?.setIdentity(slot, identity);
  }

  acquire(): void {
    this.refs++;
  }

  release(): void {
    if (--this.refs === 0 && !this.current) this.released();
  }

  /** A newer generation took over. Released at once when nothing is left in it. */
  retire(): void {
    this.current = false;
    if (this.refs === 0) this.released();
  }

  private released(): void {
    this.closeHttp();
    this.onReleased(this);
  }

  get references(): number {
    return this.refs;
  }
}
