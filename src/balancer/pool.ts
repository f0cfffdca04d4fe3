/**
 * What every policy shares: its pool as a typed array of global backend indexes, each backend's
 * weight, and the rules for which backends may be picked at all (up in the shared health bits, not
 * already tried for this request, not cooling down after a failed connect) and how much a backend in
 * slow start counts.
 *
 * The cool-down: a worker whose connect to a backend was refused or timed out stores "now +
 * COOL_DOWN_MS" in the backend's shared slot (worker/backend-failures.ts), and every pick in every
 * worker passes the backend over until then. It acts at once, before the primary has counted the failure
 * (passive checks eject only after several), and it is what keeps least connections from sending every
 * new client to a dead backend because a dead backend holds no connections. It is a preference, never a
 * refusal: when every backend left is cooling down, the pick is made again without it, so a service whose
 * only backend failed once keeps trying it rather than answering 503.
 */
import type { Balancer, BackendState, PickRequest } from './balancer.js';

export interface PoolOptions {
  /** servers[].weight per pool position (default 1 each). */
  readonly weights?: readonly number[];
  /** Slow start window: a backend that came up less than this long ago counts for a ramped share. */
  readonly slowStartMs?: number;
}

/** The smallest share a backend in slow start counts for, so it still gets its first connections. */
const MIN_RAMP = 0.01;

/**
 * How long a backend whose connect was refused or timed out is passed over. Short, because it is a
 * guess from one failure (passive checks decide on several); shorter than half of a failureWindow, so a
 * backend that keeps refusing fails often enough within the window to be ejected.
 */
export const COOL_DOWN_MS = 2000;

/** Whether `backend` is cooling down now (reads the clock only when it has a cool-down time at all). */
export function coolingDown(coolUntil: Float64Array | undefined, backend: number): boolean {
  const until = coolUntil === undefined ? 0 : coolUntil[backend]!;
  return until !== 0 && until > Date.now();
}

export abstract class PoolPolicy implements Balancer {
  protected readonly backends: Int32Array;
  /** Weight per pool position. */
  protected readonly weights: Float64Array;
  /** state.backendCoolUntil, or null when the state has none. */
  private readonly coolUntil: Float64Array | null;
  protected readonly slowStartMs: number;
  protected cursor = 0;
  /** This pass passed over a backend that is cooling down. */
  private passedCooling = false;
  /** False during the second pass of a pick, when every backend left was cooling down. */
  private honourCoolDown = true;

  constructor(
    backends: readonly number[],
    protected readonly state: BackendState,
    options: PoolOptions = {},
  ) {
    this.backends = Int32Array.from(backends);
    this.weights = Float64Array.from(backends, (_, i) => options.weights?.[i] ?? 1);
    this.slowStartMs = options.slowStartMs ?? 0;
    this.coolUntil = state.backendCoolUntil ?? null;
  }

  /** The policy's choice among the eligible backends (eligible() applies the cool-down). */
  protected abstract choose(tried: Int32Array, triedCount: number, request?: PickRequest): number;

  pick(tried: Int32Array, triedCount: number, request?: PickRequest): number {
    this.passedCooling = false;
    const backend = this.choose(tried, triedCount, request);
    if (backend >= 0 || !this.passedCooling) return backend;
    // Nothing but backends cooling down: trying one beats refusing the client.
    this.honourCoolDown = false;
    const fallback = this.choose(tried, triedCount, request);
    this.honourCoolDown = true;
    return fallback;
  }

  /** Up, not among the first `triedCount` entries of `tried`, and not cooling down. */
  protected eligible(backend: number, tried: Int32Array, triedCount: number): boolean {
    if (Atomics.load(this.state.backendUp, backend) === 0) return false;
    for (let i = 0; i < triedCount; i++) if (tried[i] === backend) return false;
    // The common case (never failed) costs one load; the rest is kept out of line.
    return this.coolUntil === null || this.coolUntil[backend] === 0 || this.notCooling(backend);
  }

  /** The clock is read per backend with a cool-down time (rarely more than one a pick), not cached in a
   *  field: storing a Date.now() double in a field allocated a number box on every pick. */
  private notCooling(backend: number): boolean {
    if (!this.honourCoolDown) return true;
    if (this.coolUntil![backend]! <= Date.now()) return true;
    this.passedCooling = true;
    return false;
  }

  /** Pool positions a policy can never pick (hash.ts: a discovery slot with no address yet). */
  protected usable(_at: number): boolean {
    return true;
  }

  /**
   * Fewest live connections per unit of weight ((active + 1) / weight, HAProxy's weighted leastconn),
   * global across workers through the shared counters. Ties rotate: the scan starts one further each
   * pick, so an idle pool fills evenly instead of piling onto its first server.
   */
  protected leastLoaded(tried: Int32Array, triedCount: number, now: number): number {
    const n = this.backends.length;
    if (n === 0) return -1;
    const start = this.cursor;
    this.cursor = start + 1 === n ? 0 : start + 1;
    let best = -1;
    let bestScore = Infinity;
    for (let i = 0; i < n; i++) {
      let at = start + i;
      if (at >= n) at -= n;
      const backend = this.backends[at]!;
      if (!this.eligible(backend, tried, triedCount) || !this.usable(at)) continue;
      const weight = this.effectiveWeight(at, backend, now);
      if (weight <= 0) continue;
      const score = (Atomics.load(this.state.backendActive, backend) + 1) / weight;
      if (score < bestScore) {
        bestScore = score;
        best = backend;
      }
    }
    return best;
  }

  /** The clock for effectiveWeight: read once per pick, and only when slow start is on. */
  protected now(): number {
    return this.slowStartMs > 0 ? Date.now() : 0;
  }

  /**
   * Weight of pool position `at` now: servers[].weight, times the slow start ramp (from MIN_RAMP to 1,
   * linear over slowStartMs) when the backend came up recently.
   */
  protected effectiveWeight(at: number, backend: number, now: number): number {
    const weight = this.weights[at]!;
    if (this.slowStartMs === 0 || weight === 0) return weight;
    const since = this.state.backendUpSince?.[backend] ?? 0;
    if (since === 0) return weight;
    const ramp = (now - since) / this.slowStartMs;
    return ramp >= 1 ? weight : weight * (ramp > MIN_RAMP ? ramp : MIN_RAMP);
  }
}
