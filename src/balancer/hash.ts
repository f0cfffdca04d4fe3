/**
 * Consistent hashing with bounded load: rendezvous (highest random weight) hashing over the pool,
 * capped so that no backend takes more than balanceFactor × its weighted share of the live
 * connections (Mirrokni et al., "Consistent Hashing with Bounded Loads"; HAProxy's
 * hash-balance-factor, Envoy's hash_balance_factor).
 *
 * Each backend's score for a key is w / -ln(u), u uniform from hash(key, backend identity): the key
 * goes to the highest score (weighted rendezvous). The identity is the backend's URL, never its
 * index, so two Sluice processes with the same servers map a key alike, and removing one backend
 * moves only the keys it held. A backend at its bound is passed over and the key overflows to the
 * next backend in its own order. O(backends) per pick with one Math.log each; no allocation. A
 * request without a key has no affinity to keep and goes to the least loaded backend.
 */
import type { BackendState, PickRequest } from './balancer.js';
import { PoolPolicy, type PoolOptions } from './pool.js';

/** murmur3's 32-bit finalizer: full avalanche, so nearby inputs give unrelated outputs. */
export function mix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** FNV-1a over the UTF-16 code units of `text` (no encoding step, no allocation), then mixed. */
export function hashString(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return mix32(h);
}

const TWO_32 = 4294967296;

export class HashRing extends PoolPolicy {
  /** Per pool position: hash of the backend's identity; 0 with an empty identity (no address yet). */
  private readonly seeds: Uint32Array;
  /** Every weight equal and no slow start: the raw hash orders backends as w / -ln(u) would, without
   *  a Math.log per backend. */
  private readonly uniform: boolean;

  constructor(
    backends: readonly number[],
    state: BackendState,
    options: PoolOptions,
    identities: readonly string[],
    private readonly balanceFactor: number,
  ) {
    super(backends, state, options);
    this.seeds = Uint32Array.from(identities, (id) => (id === '' ? 0 : hashString(id)));
    this.uniform = this.slowStartMs === 0 && this.weights.every((w) => w === this.weights[0]);
  }

  setIdentity(backend: number, identity: string): void {
    const at = this.backends.indexOf(backend);
    if (at >= 0) this.seeds[at] = identity === '' ? 0 : hashString(identity);
  }

  /** The score of pool position `at` for `key` with weight `weight` (higher wins). */
  private score(key: number, at: number, weight: number): number {
    const h = mix32((key ^ this.seeds[at]!) + 0x9e3779b9);
    if (this.uniform) return h;
    return weight / -Math.log((h + 0.5) / TWO_32);
  }

  protected choose(tried: Int32Array, triedCount: number, request?: PickRequest): number {
    const n = this.backends.length;
    const key = request?.hashKey ?? -1;
    const now = this.now();
    // No key, no affinity to keep: place the request by load alone.
    if (key < 0) return this.leastLoaded(tried, triedCount, now);
    // The bound counts every backend that is up (tried ones too: their connections are real).
    let active = 0;
    let totalWeight = 0;
    for (let at = 0; at < n; at++) {
      const backend = this.backends[at]!;
      if (Atomics.load(this.state.backendUp, backend) === 0) continue;
      active += Atomics.load(this.state.backendActive, backend);
      totalWeight += this.effectiveWeight(at, backend, now);
    }
    if (totalWeight <= 0) return -1;
    // +1: the connection being placed counts, so an empty pool still admits one per backend.
    const perWeight = (this.balanceFactor * (active + 1)) / totalWeight;
    let best = -1;
    let bestScore = -Infinity;
    let overflow = -1;
    let overflowScore = -Infinity;
    for (let at = 0; at < n; at++) {
      const backend = this.backends[at]!;
      if (!this.eligible(backend, tried, triedCount) || !this.usable(at)) continue;
      const weight = this.effectiveWeight(at, backend, now);
      if (weight <= 0) continue;
      const score = this.score(key, at, weight);
      if (Atomics.load(this.state.backendActive, backend) < Math.ceil(perWeight * weight)) {
        if (score > bestScore) {
          bestScore = score;
          best = backend;
        }
      } else if (score > overflowScore) {
        overflowScore = score;
        overflow = backend;
      }
    }
    // Every backend at its bound can only happen when tried ones took the room: take the key's first.
    return best >= 0 ? best : overflow;
  }

  /** A discovery slot without an address yet has no identity to hash: never picked. */
  protected override usable(at: number): boolean {
    return this.seeds[at] !== 0;
  }
}
