/**
 * The one writer of the shared health bits (layout.ts backendUp, backendUpSince). A backend may
 * receive new connections when three things agree: it has an address (always, unless it is an
 * empty DNS discovery slot), its active health check has not marked it down (health-check.ts), and
 * passive checks have not ejected it (failures reported by the workers). The balancers only read
 * the bit, as Traefik's balancers only offer SetStatus and leave probing to pkg/healthcheck.
 *
 * Passive ejection (Traefik's passiveHealthCheck, Envoy's outlier detection): maxFailedAttempts
 * failures within failureWindow eject the backend for failureWindow, doubled for each ejection in a
 * row up to maxEjectionTime. It then comes back on probation for one failureWindow: a single
 * failure ejects it again (for twice as long); a probation without failure forgives the history.
 * Passive checks never eject the last backend of a service that is up (Envoy's panic threshold has the
 * same intent): with nowhere else to go, refusing every client with 503 would be worse than trying it,
 * and a lone backend that restarts would stay out for a whole window after it came back. Active checks
 * have no such limit: they ask the backend itself.
 *
 * What an operator needs in an incident is kept per backend and shown by the admin API: the last active
 * check (time, result, reason) and the last failure a worker reported (time, reason).
 *
 * State is kept per backend slot (backend-slots.ts), so a reload keeps the verdicts, ejections and
 * slow-start clocks of every backend that stays; a backend a reload adds joins with slow start, one it
 * removes is marked down at once (its open connections are drained or kept as its service says).
 */
import type { BackendSpec, ServiceSpec, Snapshot } from '../config/snapshot.js';
import type { SharedViews } from '../shared/layout.js';
import { Discovery } from './discovery.js';
import { HealthChecker } from './health-check.js';
import { log } from './log.js';
import type { Supervisor } from './supervisor.js';

export interface BackendStatus {
  readonly backend: number;
  readonly up: boolean;
  /** Has an address (false only for an empty discovery slot). */
  readonly present: boolean;
  /** The active health check's verdict (true without a health check). */
  readonly healthy: boolean;
  /** Ejected by passive checks until this time (0 = not ejected). */
  readonly ejectedUntil: number;
  readonly ejections: number;
  /** A discovery slot's address ('' when empty); the static host otherwise. */
  readonly address: string;
  /** The last active check (null before the first, or without active checks). */
  readonly lastCheck: CheckResult | null;
  /** The last failed attempt a worker reported (null when none). */
  readonly lastFailure: { readonly at: number; readonly reason: string } | null;
}

/** One active check's outcome: when it ended, whether it passed, and why not ('' when it passed). */
export interface CheckResult {
  readonly at: number;
  readonly ok: boolean;
  readonly reason: string;
}

interface State {
  spec: BackendSpec;
  service: ServiceSpec;
  present: boolean;
  healthy: boolean;
  ejectedUntil: number;
  ejections: number;
  probationUntil: number;
  /** Times of recent failures (passive), oldest first. */
  failures: number[];
  timer: NodeJS.Timeout | null;
  /** backendUp as last written. */
  up: boolean;
  /** No longer in the config in force (a reload removed it); down for good. */
  removed: boolean;
  lastCheck: CheckResult | null;
  lastFailure: { at: number; reason: string } | null;
  /** When "not ejected: last backend up" was last logged (once per failureWindow at most). */
  sparedLoggedAt: number;
}

export interface HealthHooks {
  /** Close the backend's tunnels in every worker, paced (onDown: drain, or an address that left DNS). */
  drain(backend: number, windowMs: number, reason: string, untilUp: boolean): void;
}

export class BackendHealth {
  private readonly states = new Map<number, State>();

  constructor(
    private readonly shared: SharedViews,
    private readonly hooks: HealthHooks,
  ) {}

  /** The address a discovery slot holds now (set by manageBackends; '' when empty). */
  addressOf: (backend: number) => string = () => '';

  /**
   * Take the backends of a (new) config: those that stay keep their state; new ones start up (static)
   * or empty (discovery), with slow start unless this is the first config; those gone are marked down.
   * Returns the slots that left the config.
   */
  apply(snapshot: Snapshot, first: boolean): number[] {
    const now = Date.now();
    const seen = new Set<number>();
    for (const spec of snapshot.backends) {
      seen.add(spec.index);
      const service = snapshot.services[spec.service]!;
      const existing = this.states.get(spec.index);
      if (existing !== undefined && !existing.removed) {
        existing.spec = spec;
        existing.service = service;
        continue;
      }
      const present = spec.dnsName === '';
      this.states.set(spec.index, {
        spec,
        service,
        present,
        healthy: true,
        ejectedUntil: 0,
        ejections: 0,
        probationUntil: 0,
        failures: [],
        timer: null,
        up: present,
        removed: false,
        lastCheck: null,
        lastFailure: null,
        sparedLoggedAt: 0,
      });
      // A backend a reload adds has no connections: without a ramp it would take every new one.
      this.shared.backendUpSince[spec.index] = present && !first ? now : 0;
      Atomics.store(this.shared.backendUp, spec.index, present ? 1 : 0);
    }
    const gone: number[] = [];
    for (const [slot, state] of this.states) {
      if (seen.has(slot) || state.removed) continue;
      state.removed = true;
      if (state.timer !== null) clearTimeout(state.timer);
      state.timer = null;
      state.up = false;
      Atomics.store(this.shared.backendUp, slot, 0);
      gone.push(slot);
    }
    return gone;
  }

  /** The slot left every live generation and may be reused: forget it. */
  forget(slot: number): void {
    const state = this.states.get(slot);
    if (state === undefined) return;
    if (state.timer !== null) clearTimeout(state.timer);
    this.states.delete(slot);
    Atomics.store(this.shared.backendUp, slot, 0);
    this.shared.backendUpSince[slot] = 0;
    // The next backend in this slot must not inherit a cool-down (no worker writes it now: no live
    // generation names the slot).
    this.shared.backendCoolUntil[slot] = 0;
  }

  /** Label for logs: `service 'chat' backend ws://10.0.0.1:9000`, or `… ws://chat:9000#2 (10.0.0.7)`. */
  describe(backend: number): string {
    const state = this.states.get(backend);
    if (state === undefined) return `backend slot ${backend}`;
    const address = state.spec.dnsName === '' ? '' : this.addressOf(backend);
    return `service '${state.service.name}' backend ${state.spec.url}${address === '' ? '' : ` (${address})`}`;
  }

  /** Active check verdict (health-check.ts, after rise/fall); `why` is logged with it. */
  setHealthy(backend: number, healthy: boolean, why = ''): void {
    const state = this.states.get(backend);
    if (state === undefined || state.removed || state.healthy === healthy) return;
    state.healthy = healthy;
    this.update(backend, state, true, why);
    if (!healthy && state.service.healthCheck?.onDown === 'drain') {
      this.hooks.drain(backend, state.service.drainWindowMs, 'backend failed its health check', true);
    }
  }

  /** Discovery: the slot holds an address (or no longer does). `rampUp`: join with slow start. */
  setPresent(backend: number, present: boolean, rampUp: boolean): void {
    const state = this.states.get(backend);
    if (state === undefined || state.removed || state.present === present) return;
    state.present = present;
    if (present) {
      // A new address starts with a clean slate.
      state.healthy = true;
      state.failures.length = 0;
      state.ejections = 0;
      state.ejectedUntil = 0;
      state.probationUntil = 0;
      if (state.timer !== null) clearTimeout(state.timer);
      state.timer = null;
    }
    this.update(backend, state, rampUp, present ? 'its address is back' : 'its address left DNS');
  }

  /** One active check ended (health-check.ts): kept for the admin API. */
  recordCheck(backend: number, result: CheckResult): void {
    const state = this.states.get(backend);
    if (state !== undefined) state.lastCheck = result;
  }

  /** Passive: a worker saw an attempt on `backend` fail (`reason` from worker/backend-failures.ts). */
  reportFailure(backend: number, reason = ''): void {
    const state = this.states.get(backend);
    const passive = state?.service.passiveHealthCheck ?? null;
    if (state === undefined || state.removed) return;
    const now = Date.now();
    state.lastFailure = { at: now, reason };
    if (passive === null || !state.present || state.ejectedUntil !== 0) return;
    if (state.probationUntil !== 0 && now >= state.probationUntil) {
      state.probationUntil = 0;
      state.ejections = 0;
    }
    if (state.probationUntil !== 0) {
      if (this.spare(backend, state, now, 'failed on probation')) return;
      this.eject(backend, state, now, `failed on probation (${reason})`);
      return;
    }
    const failures = state.failures;
    failures.push(now);
    while (failures.length > 0 && failures[0]! <= now - passive.failureWindowMs) failures.shift();
    if (failures.length < passive.maxFailedAttempts) return;
    const why = `${failures.length} failed attempt(s) within ${passive.failureWindowMs} ms, the last: ${reason}`;
    if (!this.spare(backend, state, now, why)) this.eject(backend, state, now, why);
  }

  /** The last backend up of its service is not ejected (see the file comment); say so once a window. */
  private spare(backend: number, state: State, now: number, why: string): boolean {
    for (const other of state.service.backends) if (other !== backend && this.states.get(other)?.up === true) return false;
    const windowMs = state.service.passiveHealthCheck!.failureWindowMs;
    if (now - state.sparedLoggedAt >= windowMs) {
      state.sparedLoggedAt = now;
      log.warn(`${this.describe(backend)} not ejected although failing (${why}): it is the last backend of service '${state.service.name}' that is up`);
    }
    return true;
  }

  private eject(backend: number, state: State, now: number, why: string): void {
    const passive = state.service.passiveHealthCheck!;
    const ms = Math.min(passive.failureWindowMs * 2 ** state.ejections, passive.maxEjectionMs);
    state.ejections++;
    state.ejectedUntil = now + ms;
    state.failures.length = 0;
    state.probationUntil = 0;
    log.warn(`${this.describe(backend)} ejected for ${ms} ms: ${why}`);
    this.update(backend, state, false, null);
    state.timer = setTimeout(() => {
      state.timer = null;
      state.ejectedUntil = 0;
      state.probationUntil = Date.now() + (state.service.passiveHealthCheck?.failureWindowMs ?? 0);
      log.info(`${this.describe(backend)} back on probation`);
      this.update(backend, state, true, null);
    }, ms);
    state.timer.unref();
  }

  /**
   * Write the bit (and, when it turns on with rampUp, the slow start clock). A change is logged with
   * `why`, down at warn (an operator wants it seen), up at info; null: the caller logged it already.
   */
  private update(backend: number, state: State, rampUp: boolean, why: string | null): void {
    const up = !state.removed && state.present && state.healthy && state.ejectedUntil === 0;
    if (up === state.up) return;
    state.up = up;
    if (up) this.shared.backendUpSince[backend] = rampUp ? Date.now() : 0;
    Atomics.store(this.shared.backendUp, backend, up ? 1 : 0);
    if (!state.present || why === null) return;
    const line = `${this.describe(backend)} is ${up ? 'up' : 'down'}${why === '' ? '' : `: ${why}`}`;
    if (up) log.info(line);
    else log.warn(line);
  }

  status(backend: number): BackendStatus {
    const s = this.states.get(backend);
    if (s === undefined) return { backend, up: false, present: false, healthy: false, ejectedUntil: 0, ejections: 0, address: '', lastCheck: null, lastFailure: null };
    const address = s.spec.dnsName === '' ? s.spec.host : this.addressOf(backend);
    return { backend, up: s.up, present: s.present, healthy: s.healthy, ejectedUntil: s.ejectedUntil, ejections: s.ejections, address, lastCheck: s.lastCheck, lastFailure: s.lastFailure };
  }

  stop(): void {
    for (const state of this.states.values()) if (state.timer !== null) clearTimeout(state.timer);
  }
}

/** The primary's backend management: health bits, active checks and DNS discovery, wired to the workers. */
export interface BackendManagement {
  readonly health: BackendHealth;
  readonly discovery: Discovery;
  /** Resolve discovered names once and start the checks; call before the workers start, so they
   *  begin with the address table. */
  start(): Promise<void>;
  /** A reload: carry every backend that stays, start what is new, stop what left. Returns the slots
   *  that left the config. */
  apply(snapshot: Snapshot): number[];
  /** A slot left every live generation. */
  forget(slot: number): void;
  stop(): void;
}

export function manageBackends(snapshot: Snapshot, shared: SharedViews, supervisor: Supervisor): BackendManagement {
  const drain = (backend: number, windowMs: number, reason: string, untilUp: boolean): void =>
    supervisor.broadcast({ type: 'drain-backend', backend, windowMs, reason, untilUp });
  const health = new BackendHealth(shared, { drain });
  health.apply(snapshot, true);
  const discovery = new Discovery(snapshot, shared, health, {
    publish: (addresses) => supervisor.broadcast({ type: 'backend-addresses', addresses }),
    drain,
  });
  health.addressOf = (backend) => discovery.addressOf(backend);
  const checker = new HealthChecker(snapshot, health, (spec) => (spec.dnsName === '' ? spec.host : discovery.addressOf(spec.index)));
  supervisor.onBackendFailed = (backend, reason) => health.reportFailure(backend, reason);
  supervisor.onDrainEnded = (worker, backend, closed, kept) => {
    if (kept > 0) log.info(`${health.describe(backend)}: drain stopped in worker ${worker}, the backend is up again: ${closed} closed, ${kept} kept`);
    else log.info(`${health.describe(backend)}: drain done in worker ${worker}: ${closed} closed`);
  };
  supervisor.welcomeMessages = () => (discovery.active ? [{ type: 'backend-addresses', addresses: discovery.table() }] : []);
  const warnGeneratedSecret = (s: Snapshot): void => {
    if (s.stickySecretGenerated) {
      log.warn('sticky cookies are signed with a random secret: set loadBalancer.stickySecret or SLUICE_STICKY_SECRET so that replicas and restarts honour them');
    }
  };
  warnGeneratedSecret(snapshot);
  let started = false;
  return {
    health,
    discovery,
    async start() {
      await discovery.start();
      checker.start();
      started = true;
    },
    apply(next) {
      const gone = health.apply(next, false);
      discovery.apply(next, started);
      checker.apply(next, started);
      return gone;
    },
    forget(slot) {
      health.forget(slot);
    },
    stop() {
      checker.stop();
      discovery.stop();
      health.stop();
    },
  };
}
