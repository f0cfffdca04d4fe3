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
 */
import type { Snapshot } from '../config/snapshot.js';
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
}

interface State {
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
}

export interface HealthHooks {
  /** Close the backend's tunnels in every worker, paced (onDown: drain, or an address that left DNS). */
  drain(backend: number, windowMs: number, reason: string, untilUp: boolean): void;
}

export class BackendHealth {
  private readonly states: State[];

  constructor(
    private readonly snapshot: Snapshot,
    private readonly shared: SharedViews,
    private readonly hooks: HealthHooks,
  ) {
    this.states = snapshot.backends.map((b) => {
      const present = b.dnsName === '';
      Atomics.store(shared.backendUp, b.index, present ? 1 : 0);
      shared.backendUpSince[b.index] = 0;
      return { present, healthy: true, ejectedUntil: 0, ejections: 0, probationUntil: 0, failures: [], timer: null, up: present };
    });
  }

  /** The address a discovery slot holds now (set by manageBackends; '' when empty). */
  addressOf: (backend: number) => string = () => '';

  /** Label for logs: `service 'chat' backend ws://10.0.0.1:9000`, or `… ws://chat:9000#2 (10.0.0.7)`. */
  describe(backend: number): string {
    const spec = this.snapshot.backends[backend]!;
    const service = this.snapshot.services[spec.service]!.name;
    const address = spec.dnsName === '' ? '' : this.addressOf(backend);
    return `service '${service}' backend ${spec.url}${address === '' ? '' : ` (${address})`}`;
  }

  /** Active check verdict (health-check.ts, after rise/fall). */
  setHealthy(backend: number, healthy: boolean): void {
    const state = this.states[backend]!;
    if (state.healthy === healthy) return;
    state.healthy = healthy;
    this.update(backend, true);
    const check = this.snapshot.services[this.snapshot.backends[backend]!.service]!.healthCheck;
    if (!healthy && check?.onDown === 'drain') {
      const service = this.snapshot.services[this.snapshot.backends[backend]!.service]!;
      this.hooks.drain(backend, service.drainWindowMs, 'backend failed its health check', true);
    }
  }

  /** Discovery: the slot holds an address (or no longer does). `rampUp`: join with slow start. */
  setPresent(backend: number, present: boolean, rampUp: boolean): void {
    const state = this.states[backend]!;
    if (state.present === present) return;
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
    this.update(backend, rampUp);
  }

  /** Passive: a worker saw an attempt on `backend` fail. */
  reportFailure(backend: number): void {
    const spec = this.snapshot.backends[backend];
    if (spec === undefined) return;
    const passive = this.snapshot.services[spec.service]!.passiveHealthCheck;
    const state = this.states[backend]!;
    if (passive === null || !state.present || state.ejectedUntil !== 0) return;
    const now = Date.now();
    if (state.probationUntil !== 0 && now >= state.probationUntil) {
      state.probationUntil = 0;
      state.ejections = 0;
    }
    if (state.probationUntil !== 0) {
      this.eject(backend, now, 'failed on probation');
      return;
    }
    const failures = state.failures;
    failures.push(now);
    while (failures.length > 0 && failures[0]! <= now - passive.failureWindowMs) failures.shift();
    if (failures.length >= passive.maxFailedAttempts) this.eject(backend, now, `${failures.length} failed attempt(s) within ${passive.failureWindowMs} ms`);
  }

  private eject(backend: number, now: number, why: string): void {
    const passive = this.snapshot.services[this.snapshot.backends[backend]!.service]!.passiveHealthCheck!;
    const state = this.states[backend]!;
    const ms = Math.min(passive.failureWindowMs * 2 ** state.ejections, passive.maxEjectionMs);
    state.ejections++;
    state.ejectedUntil = now + ms;
    state.failures.length = 0;
    state.probationUntil = 0;
    log.warn(`${this.describe(backend)} ejected for ${ms} ms: ${why}`);
    this.update(backend, false);
    state.timer = setTimeout(() => {
      state.timer = null;
      state.ejectedUntil = 0;
      state.probationUntil = Date.now() + passive.failureWindowMs;
      log.info(`${this.describe(backend)} back on probation`);
      this.update(backend, true);
    }, ms);
    state.timer.unref();
  }

  /** Write the bit (and, when it turns on with rampUp, the slow start clock). */
  private update(backend: number, rampUp: boolean): void {
    const state = this.states[backend]!;
    const up = state.present && state.healthy && state.ejectedUntil === 0;
    if (up === state.up) return;
    state.up = up;
    if (up) this.shared.backendUpSince[backend] = rampUp ? Date.now() : 0;
    Atomics.store(this.shared.backendUp, backend, up ? 1 : 0);
    if (state.present) log.info(`${this.describe(backend)} is ${up ? 'up' : 'down'}`);
  }

  status(backend: number): BackendStatus {
    const s = this.states[backend]!;
    const spec = this.snapshot.backends[backend]!;
    const address = spec.dnsName === '' ? spec.host : this.addressOf(backend);
    return { backend, up: s.up, present: s.present, healthy: s.healthy, ejectedUntil: s.ejectedUntil, ejections: s.ejections, address };
  }

  stop(): void {
    for (const state of this.states) if (state.timer !== null) clearTimeout(state.timer);
  }
}

/** The primary's backend management: health bits, active checks and DNS discovery, wired to the workers. */
export interface BackendManagement {
  readonly health: BackendHealth;
  readonly discovery: Discovery;
  /** Resolve discovered names once and start the checks; call before the workers start, so they
   *  begin with the address table. */
  start(): Promise<void>;
  stop(): void;
}

export function manageBackends(snapshot: Snapshot, shared: SharedViews, supervisor: Supervisor): BackendManagement {
  const drain = (backend: number, windowMs: number, reason: string, untilUp: boolean): void =>
    supervisor.broadcast({ type: 'drain-backend', backend, windowMs, reason, untilUp });
  const health = new BackendHealth(snapshot, shared, { drain });
  const discovery = new Discovery(snapshot, shared, health, {
    publish: (addresses) => supervisor.broadcast({ type: 'backend-addresses', addresses }),
    drain,
  });
  health.addressOf = (backend) => discovery.addressOf(backend);
  const checker = new HealthChecker(snapshot, health, (backend) => {
    const spec = snapshot.backends[backend]!;
    return spec.dnsName === '' ? spec.host : discovery.addressOf(backend);
  });
  supervisor.onBackendFailed = (backend) => health.reportFailure(backend);
  supervisor.welcomeMessages = () => (discovery.active ? [{ type: 'backend-addresses', addresses: discovery.table() }] : []);
  if (snapshot.stickySecretGenerated) {
    log.warn('sticky cookies are signed with a random secret: set loadBalancer.stickySecret or SLUICE_STICKY_SECRET so that replicas and restarts honour them');
  }
  return {
    health,
    discovery,
    async start() {
      await discovery.start();
      checker.start();
    },
    stop() {
      checker.stop();
      discovery.stop();
      health.stop();
    },
  };
}
