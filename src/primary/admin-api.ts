/**
 * The JSON documents of the admin API (/api/overview, /api/routers, /api/services, /api/backends) and the
 * health and readiness verdicts, built from the config in force, the summed counters (metrics-store.ts:
 * every live generation, by label set) and the supervisor's view of its workers. Plain functions of their
 * inputs, so the admin server stays a thin router.
 */
import type { BackendStatus } from './backend-health.js';
import type { Snapshot } from '../config/snapshot.js';
import { formatHostPort } from '../shared/address.js';
import { Total, Traffic } from '../shared/layout.js';
import { CONN_FIELDS, CONN_OUTCOMES, Conn, ERROR_REASONS, type RoutePlan } from '../shared/metrics-plan.js';
import { HEARTBEAT_STALE_MS, type MetricsStore, type MetricsView } from './metrics-store.js';
import type { HistoryRing } from './history.js';
import { ERROR_REASONS as REASONS, SIDES, UPGRADE_BUCKETS } from '../shared/metrics-plan.js';
import type { WorkerStatus } from './supervisor.js';
import { httpSummary } from './http-admin.js';

/** What /api/overview says about live configuration. */
export interface ReloadStatus {
  readonly generation: number;
  /** Reloads tried (success, failure and unchanged alike). */
  readonly attempts: number;
  readonly success: number;
  readonly failure: number;
  /** ISO time of the last reload attempt, null before the first. */
  readonly lastAttemptAt: string | null;
  readonly lastResult: 'success' | 'failure' | 'unchanged' | null;
  /** The last failed reload's problems, one line each as `sluice validate` prints them ([] when none). */
  readonly lastError: readonly string[];
  /** Config generations still alive because connections opened under them are open. */
  readonly liveGenerations: number;
}

export interface AdminContext {
  /** The config in force (changes with each reload). */
  snapshot(): Snapshot;
  readonly store: MetricsStore;
  workers(): WorkerStatus[];
  /** Every worker listened once (the first start finished). */
  started(): boolean;
  /** SIGTERM/SIGINT received: stop sending traffic here. */
  draining(): boolean;
  readonly startedAt: number;
  readonly adminAddress: string;
  /** Why a backend is up or down (backend-health.ts): its check verdict, a passive ejection, the
   *  address a DNS discovery slot holds. Absent in contexts without backend management. */
  backendHealth?(backend: number): BackendStatus;
  /** Live configuration (absent in contexts without reloads). */
  reloadStatus?(): ReloadStatus;
  /** The dashboard's recent samples (history.ts), served as /api/history. Absent in contexts without it. */
  readonly history?: HistoryRing;
  /** Fan-out (absent when off): totals for /api/overview, and the /api/fanout document. */
  readonly fanout?: { overview(): object; document(): object };
}

type Outcomes = Record<(typeof CONN_OUTCOMES)[number], number>;

function emptyOutcomes(): Outcomes {
  return { upgraded: 0, rejected_by_backend: 0, no_backend: 0, connect_failed: 0, limited: 0 };
}

function addOutcomes(into: Outcomes, view: MetricsView, cell: number): number {
  CONN_OUTCOMES.forEach((outcome, o) => (into[outcome] += view.slab(cell + o)));
  return view.slab(cell + Conn.Active);
}

/** Live connections and outcomes of a set of routes, restricted to one backend when `backend` ≥ 0. */
function routeTotals(view: MetricsView, routes: readonly RoutePlan[], backend = -1): { active: number; connections: Outcomes } {
  const connections = emptyOutcomes();
  let active = 0;
  for (const route of routes) {
    const pool = view.current.snapshot.services[route.service]!.backends;
    pool.forEach((b, position) => {
      if (backend < 0 || b === backend) active += addOutcomes(connections, view, route.base + position * CONN_FIELDS);
    });
    if (backend < 0) addOutcomes(connections, view, route.base + pool.length * CONN_FIELDS);
  }
  return { active, connections };
}

function traffic(view: MetricsView, backends: readonly number[]): { messages: { clientToBackend: number; backendToClient: number }; bytes: { clientToBackend: number; backendToClient: number } } {
  const at = (b: number, t: Traffic): number => view.traffic(b, t);
  let mIn = 0, mOut = 0, bIn = 0, bOut = 0;
  for (const b of backends) {
    mIn += at(b, Traffic.MessagesToBackend);
    mOut += at(b, Traffic.MessagesToClient);
    bIn += at(b, Traffic.BytesToBackend);
    bOut += at(b, Traffic.BytesToClient);
  }
  return { messages: { clientToBackend: mIn, backendToClient: mOut }, bytes: { clientToBackend: bIn, backendToClient: bOut } };
}

function errors(view: MetricsView, backends: readonly number[]): Record<string, number> {
  const out: Record<string, number> = {};
  const { plan } = view.current;
  ERROR_REASONS.forEach((reason, r) => {
    let n = 0;
    for (const b of backends) n += view.slab(plan.errorsBase + plan.backendLocal[b]! * ERROR_REASONS.length + r);
    out[reason] = n;
  });
  return out;
}

export function backendsDocument(ctx: AdminContext, view = ctx.store.read()): object[] {
  const { store } = ctx;
  const { snapshot, plan } = view.current;
  return snapshot.backends.map((spec) => {
    const b = spec.index;
    const routes = plan.routes.filter((r) => r.service === spec.service);
    const up = Atomics.load(store.shared.backendUp, b) > 0;
    return {
      service: snapshot.services[spec.service]!.name,
      url: spec.url,
      state: up ? 'up' : 'down',
      healthy: up,
      held: Atomics.load(store.shared.backendActive, b),
      ...(ctx.backendHealth === undefined ? {} : { health: healthDetails(ctx.backendHealth(b), store.shared.backendCoolUntil[b]!) }),
      ...routeTotals(view, routes, b),
      ...traffic(view, [b]),
      errors: errors(view, [b]),
      http: httpSummary(view, store.shared, routes, [b], b),
    };
  });
}

/** The reasons behind `state`, as the JSON API shows them (times as ISO strings, null when none). */
function healthDetails(status: BackendStatus, coolUntil: number): object {
  const check = status.lastCheck;
  const failure = status.lastFailure;
  return {
    passingChecks: status.healthy,
    lastCheck: check === null ? null : { time: new Date(check.at).toISOString(), result: check.ok ? 'pass' : 'fail', reason: check.reason },
    ejectedUntil: status.ejectedUntil === 0 ? null : new Date(status.ejectedUntil).toISOString(),
    ejections: status.ejections,
    lastPassiveFailure: failure === null ? null : { time: new Date(failure.at).toISOString(), reason: failure.reason },
    // Picks pass the backend over until then (a refused or timed-out connect, balancer/pool.ts).
    coolingDownUntil: coolUntil > Date.now() ? new Date(coolUntil).toISOString() : null,
    address: status.address,
  };
}

export function servicesDocument(ctx: AdminContext, view = ctx.store.read()): object[] {
  const { store } = ctx;
  const { snapshot, plan } = view.current;
  return snapshot.services.map((service, s) => ({
    name: service.name,
    strategy: service.strategy,
    backends: service.backends.map((b) => ({ url: snapshot.backends[plan.backendLocal[b]!]!.url, state: Atomics.load(store.shared.backendUp, b) > 0 ? 'up' : 'down' })),
    ...routeTotals(view, plan.routes.filter((r) => r.service === s)),
    ...traffic(view, service.backends),
    errors: errors(view, service.backends),
    http: httpSummary(view, store.shared, plan.routes.filter((r) => r.service === s), service.backends),
  }));
}

export function routersDocument(ctx: AdminContext, view = ctx.store.read()): object[] {
  const { snapshot, plan } = view.current;
  return snapshot.routers.map((router, r) => ({
    name: router.name,
    rule: router.rule,
    priority: router.priority,
    tls: router.tls,
    service: snapshot.services[router.service]!.name,
    entryPoints: router.entryPoints.map((e) => snapshot.entryPoints[e]!.name),
    ...routeTotals(view, plan.routes.filter((route) => route.router === r)),
    http: httpSummary(view, ctx.store.shared, plan.routes.filter((route) => route.router === r), []),
    middlewares: router.middlewares.map((m) => snapshot.middlewares[m]!.name),
  }));
}

export interface Verdict {
  readonly ok: boolean;
  readonly body: object;
}

/** Liveness: the primary answers (this code runs) and every worker runs with a fresh heartbeat. */
export function health(ctx: AdminContext): Verdict {
  const now = Date.now();
  const workers = ctx.workers().map((w) => {
    const age = ctx.store.heartbeatAge(w.index, now);
    const stuck = w.running && age > HEARTBEAT_STALE_MS;
    return { index: w.index, running: w.running, listening: w.listening, heartbeatAgeMs: Number.isFinite(age) ? age : null, stuck };
  });
  // A worker being restarted after a crash is not running for a moment; the supervisor handles that, so
  // only a stuck loop (alive but not ticking) or no running worker at all fails liveness.
  const ok = workers.every((w) => !w.stuck) && workers.some((w) => w.running);
  return { ok, body: { status: ok ? 'ok' : 'failing', workers } };
}

/** Readiness: the config is loaded, every worker listened once, Sluice is not draining, and some worker listens now. */
export function readiness(ctx: AdminContext): Verdict {
  const listening = ctx.workers().filter((w) => w.listening).length;
  const draining = ctx.draining();
  const ok = ctx.started() && !draining && listening > 0;
  const reason = draining ? 'draining' : !ctx.started() ? 'starting' : listening === 0 ? 'no worker listens' : 'ready';
  return { ok, body: { status: ok ? 'ready' : 'not ready', reason, workersListening: listening, workers: ctx.snapshot().workers } };
}

export function overviewDocument(ctx: AdminContext): object {
  const view = ctx.store.read();
  const { snapshot, plan } = view.current;
  const all = routeTotals(view, plan.routes);
  const allBackends = snapshot.backends.map((b) => b.index);
  return {
    version: 1,
    config: snapshot.source,
    ...(ctx.reloadStatus === undefined ? {} : { reload: ctx.reloadStatus() }),
    uptimeSeconds: Math.round((Date.now() - ctx.startedAt) / 1000),
    ready: readiness(ctx).ok,
    draining: ctx.draining(),
    admin: ctx.adminAddress,
    entryPoints: snapshot.entryPoints.map((e) => ({ name: e.name, address: formatHostPort(e.host, e.port, ''), tls: e.tls })),
    workers: ctx.workers().map((w) => ({ ...w, eventLoopLagSeconds: ctx.store.workerLag(w.index) })),
    counts: { routers: snapshot.routers.length, services: snapshot.services.length, backends: snapshot.backends.length },
    ...all,
    ...traffic(view, allBackends),
    errors: errors(view, allBackends),
    http: httpSummary(view, ctx.store.shared, plan.routes, allBackends),
    unroutedRequests: view.totals[Total.NoRoute],
    ...(ctx.fanout === undefined ? {} : { fanout: ctx.fanout.overview() }),
  };
}

/** What the dashboard samples once per second (history.ts): totals over every service, plus live
 *  connections and health per service and backend. Backends are keyed `service url`. */
export interface DashboardTotals {
  readonly active: number;
  readonly activeByService: Record<string, number>;
  readonly activeByBackend: Record<string, number>;
  /** 1 when the backend may receive new connections, 0 when it is marked down. */
  readonly backendUp: Record<string, number>;
  readonly upgrades: number;
  readonly messages: { readonly clientToBackend: number; readonly backendToClient: number };
  readonly bytes: { readonly clientToBackend: number; readonly backendToClient: number };
  readonly errors: Record<string, number>;
  /** By the side that started the close, then by websocket_closes_total's `code` label. */
  readonly closes: Record<string, Record<string, number>>;
  /** websocket_upgrade_duration_seconds over every service: upper bounds (seconds) and per-bucket
   *  (not cumulative) counts, one more count than bounds for +Inf. */
  readonly upgradeBuckets: { readonly le: readonly number[]; readonly counts: readonly number[] };
  /** HTTP requests by code class (`2xx`…); absent until HTTP proxying exists. */
  readonly httpRequests?: Record<string, number>;
  /** Upgrades and requests refused by a limit, by `kind reason` (sluice_limited_total). */
  readonly limited?: Record<string, number>;
}

/**
 * The dashboard's one read of the counters, kept apart from the documents above so that the history
 * sampler depends on this shape only and not on the slab layout: when the store changes, this function
 * is the one place to re-point. Costs one sums() and a pass over the plan, once per sample.
 */
export function dashboardTotals(ctx: AdminContext, view = ctx.store.read()): DashboardTotals {
  const snapshot = ctx.snapshot();
  const { store } = ctx;
  const activeByService: Record<string, number> = {};
  const activeByBackend: Record<string, number> = {};
  const backendUp: Record<string, number> = {};
  for (const service of snapshot.services) activeByService[service.name] = 0;
  for (const spec of snapshot.backends) {
    const key = `${snapshot.services[spec.service]!.name} ${spec.url}`;
    activeByBackend[key] = 0;
    backendUp[key] = Atomics.load(store.shared.backendUp, spec.index) > 0 ? 1 : 0;
  }
  const messages = { clientToBackend: 0, backendToClient: 0 };
  const bytes = { clientToBackend: 0, backendToClient: 0 };
  const errors: Record<string, number> = Object.fromEntries(REASONS.map((r) => [r, 0]));
  const closes: Record<string, Record<string, number>> = Object.fromEntries(SIDES.map((side) => [side, {}]));
  const counts = new Array<number>(UPGRADE_BUCKETS.length + 1).fill(0);
  const httpRequests: Record<string, number> = {};
  const limited: Record<string, number> = {};
  let active = 0;
  let upgrades = 0;
  // Every series, whichever generation it was counted in: totals never drop at a reload.
  for (const [id, series] of store.series()) {
    const value = view.values[id]!;
    const { labels } = series;
    switch (series.metric) {
      case 'websocket_connections_active': {
        active += value;
        if (labels.service! in activeByService) activeByService[labels.service!]! += value;
        const key = `${labels.service} ${labels.backend}`;
        if (key in activeByBackend) activeByBackend[key]! += value;
        break;
      }
      case 'websocket_connections_total':
        if (labels.outcome === 'upgraded') upgrades += value;
        break;
      case 'websocket_messages_total':
      case 'websocket_bytes_total': {
        const into = series.metric === 'websocket_messages_total' ? messages : bytes;
        if (labels.direction === 'client_to_backend') into.clientToBackend += value;
        else into.backendToClient += value;
        break;
      }
      case 'websocket_errors_total':
        errors[labels.reason!] = (errors[labels.reason!] ?? 0) + value;
        break;
      case 'websocket_closes_total': {
        const bySide = closes[labels.side!]!;
        bySide[labels.code!] = (bySide[labels.code!] ?? 0) + value;
        break;
      }
      case 'websocket_upgrade_duration_seconds':
        if (series.part >= 0 && series.part < counts.length) counts[series.part]! += value;
        break;
      case 'http_requests_total':
        httpRequests[labels.code!] = (httpRequests[labels.code!] ?? 0) + value;
        break;
      case 'sluice_limited_total': {
        const key = `${labels.kind} ${labels.reason}`;
        limited[key] = (limited[key] ?? 0) + value;
        break;
      }
    }
  }
  return { active, activeByService, activeByBackend, backendUp, upgrades, messages, bytes, errors, closes, upgradeBuckets: { le: UPGRADE_BUCKETS, counts }, httpRequests, limited };
}
