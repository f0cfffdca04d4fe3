/**
 * What every policy shares: its pool as a typed array of global backend indexes, and the rule for
 * which backends may be picked at all (up in the shared health bits, not already tried for this
 * request).
 */
import type { Balancer, BackendState } from './balancer.js';

export abstract class PoolPolicy implements Balancer {
  protected readonly backends: Int32Array;
  protected cursor = 0;

  constructor(
    backends: readonly number[],
    protected readonly state: BackendState,
  ) {
    this.backends = Int32Array.from(backends);
  }

  abstract pick(tried: Int32Array, triedCount: number): number;

  /** Up, and not among the first `triedCount` entries of `tried`. */
  protected eligible(backend: number, tried: Int32Array, triedCount: number): boolean {
    if (Atomics.load(this.state.backendUp, backend) === 0) return false;
    for (let i = 0; i < triedCount; i++) if (tried[i] === backend) return false;
    return true;
  }
}
