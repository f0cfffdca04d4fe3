/**
 * The limits table: one bounded hash table in shared memory (a region of layout.ts) that every worker reads
 * and writes, so a per-client limit counts a client's connections and requests in all workers together.
 * Keys are strings hashed by the caller (`keyHash`): a middleware's name with a client IP or header value
 * (inFlightReq, rateLimit), an entry point's name (maxConnections), a backend (upgrade admission).
 *
 * Each slot holds a key fingerprint, a count (things in flight: connections, requests) and a GCRA token
 * bucket (the theoretical arrival time `tat` in ms, plus `horizon`, the time handed out to the last client
 * told to come back). GCRA keeps a token bucket of `burst` tokens refilled one per `interval` in one number:
 * a request is allowed while `tat - now <= (burst - 1) * interval`, and moves tat one interval on.
 *
 * Probing: a key lives in one of WINDOW consecutive slots from its hash. Operations take a slot's lock word
 * (Atomics.compareExchange, a bounded spin: the critical sections are a few loads and stores, never a call
 * that can block), so a read-modify-write of one slot is atomic across workers. `release` needs no lock: a
 * slot whose count is above zero is never reused, so its key cannot change under it. A key's first slot is
 * claimed while holding the lock of the first slot of its window (its home), so two workers meeting on a new
 * key agree on one slot for it.
 *
 * Eviction (the table never grows): a new key takes, within its window, an empty slot, or else the slot
 * with no count whose bucket is fullest (the smallest tat: an entry whose bucket has refilled is the same
 * as an absent one, so nothing is lost; a partly drained bucket forgets its debt, which lets that one
 * client through sooner, never later). Slots with a count (live connections, requests in flight) are never
 * evicted. When a whole window is counted, or a lock stays taken past the spin and ~50 ms of waits, the caller is told
 * UNTRACKED and lets the request through uncounted (counted as limits_table_full): failing open on a
 * full table, because failing closed would let whoever fills the table lock everyone else out. With
 * TABLE_SLOTS = 131,072 and at most ~9,000 connections per process (TEAM.md), a window fills only under a
 * flood of distinct keys that each keep something in flight.
 *
 * Writers: every worker (under the slot lock, or Atomics.sub for release). Readers: the same; the primary
 * only allocates it (zeroed = every slot empty).
 */

/** Slots in the table: a power of two. 131,072 × (16 + 16) bytes = 4 MiB of shared memory. */
export const TABLE_SLOTS = 1 << 17;
/** Int32 words per slot: lock, key fingerprint, count, (spare). */
export const SLOT_WORDS = 4;
/** Float64 per slot: tat, horizon. */
export const SLOT_TIMES = 2;
/** Slots probed for a key. */
const WINDOW = 8;
/** compareExchange attempts on a slot's lock before giving up (UNTRACKED). A holder runs a few stores. */
const SPIN_LIMIT = 4096;
/** Then 1 ms sleeps before UNTRACKED: a lock held this long is a holder that is not coming back soon. */
const WAIT_STEPS = 50;

const LOCK = 0;
const KEY = 1;
const COUNT = 2;
const TAT = 0;
const HORIZON = 1;

/** acquire(): the key is at its limit. */
export const LIMIT_REACHED = -1;
/** The key's window is full of counted slots (or a lock stayed taken): let the request through uncounted. */
export const UNTRACKED = -2;
/** lockFound(): the key has no slot. */
const NOT_FOUND = -3;

/** The two hashes of a key: `index` picks its window, `fingerprint` (never 0) identifies it in a slot. */
export interface KeyHash {
  index: number;
  fingerprint: number;
}

/**
 * Hash `prefix + text` into `out` (no allocation: the caller keeps one KeyHash). FNV-1a for the index and a
 * multiplicative hash for the fingerprint, over UTF-16 code units; the prefix (a middleware's name) is
 * hashed once by the caller with `seedOf` and passed as `seed`.
 */
export function keyHash(seed: KeyHash, text: string, out: KeyHash): KeyHash {
  let a = seed.index;
  let b = seed.fingerprint;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b + c, 0x9e3779b1) ^ (b >>> 15);
  }
  // Final mixing so that keys differing in their last character spread over the whole table.
  a ^= a >>> 16;
  a = Math.imul(a, 0x85ebca6b);
  a ^= a >>> 13;
  b ^= b >>> 16;
  b = Math.imul(b, 0xc2b2ae35);
  b ^= b >>> 16;
  out.index = a >>> 0;
  out.fingerprint = b === 0 ? 1 : b;
  return out;
}

/** The seed of a key family (hash of its prefix), computed once per middleware or limit. */
export function seedOf(prefix: string): KeyHash {
  return keyHash({ index: 0x811c9dc5 | 0, fingerprint: 0x2545f491 }, `${prefix}\u0000`, { index: 0, fingerprint: 0 });
}

/** Milliseconds on a clock every thread of the process shares and that never goes back. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

export class LimitTable {
  private readonly mask: number;

  /** `words`: TABLE_SLOTS × SLOT_WORDS Int32; `times`: TABLE_SLOTS × SLOT_TIMES Float64 (layout.ts). */
  constructor(
    private readonly words: Int32Array,
    private readonly times: Float64Array,
  ) {
    const slots = words.length / SLOT_WORDS;
    if (slots !== times.length / SLOT_TIMES || (slots & (slots - 1)) !== 0) throw new Error('limits table: sizes must match and be a power of two');
    this.mask = slots - 1;
  }

  /**
   * Count one more in flight for `key` unless it already has `limit`: the slot (pass it to release), or
   * LIMIT_REACHED, or UNTRACKED (not counted: do not release).
   */
  acquire(key: KeyHash, limit: number): number {
    const slot = this.lockedSlot(key);
    if (slot < 0) return UNTRACKED;
    const at = slot * SLOT_WORDS + COUNT;
    if (Atomics.load(this.words, at) >= limit) {
      this.unlock(slot);
      return LIMIT_REACHED;
    }
    // An atomic add, not a store of count + 1: release() takes no lock, so a plain store would undo a
    // release that landed between the read above and this write (the count would then never reach 0).
    Atomics.add(this.words, at, 1);
    this.unlock(slot);
    return slot;
  }

  /** Give back one count taken by acquire. */
  release(slot: number): void {
    Atomics.sub(this.words, slot * SLOT_WORDS + COUNT, 1);
  }

  /** Current count of `key` (0 when absent). For tests and the admin API. */
  count(key: KeyHash): number {
    const slot = this.findSlot(key);
    return slot < 0 ? 0 : Atomics.load(this.words, slot * SLOT_WORDS + COUNT);
  }

  /**
   * Take a token from `key`'s bucket (GCRA: one token per `intervalMs`, `burst` at most): 0 when allowed,
   * else the milliseconds until a token will be there (nothing taken). UNTRACKED buckets allow (0).
   */
  take(key: KeyHash, now: number, intervalMs: number, burst: number): number {
    const slot = this.lockedSlot(key);
    if (slot < 0) return 0;
    const at = slot * SLOT_TIMES + TAT;
    const tat = Math.max(this.times[at]!, now);
    const wait = tat - now - (burst - 1) * intervalMs;
    if (wait > 0) {
      this.unlock(slot);
      return wait;
    }
    this.times[at] = tat + intervalMs;
    this.unlock(slot);
    return 0;
  }

  /**
   * take() for a client that may wait: a token at most `maxWaitMs` away is reserved for it (the bucket moves on
   * as if it were taken now). Returns the wait until the reserved token (0: now), or -1 when the next token is
   * further than that (nothing reserved).
   */
  reserve(key: KeyHash, now: number, intervalMs: number, burst: number, maxWaitMs: number): number {
    const slot = this.lockedSlot(key);
    if (slot < 0) return 0;
    const at = slot * SLOT_TIMES + TAT;
    const tat = Math.max(this.times[at]!, now);
    const wait = tat - now - (burst - 1) * intervalMs;
    if (wait > maxWaitMs) {
      this.unlock(slot);
      return -1;
    }
    this.times[at] = tat + intervalMs;
    this.unlock(slot);
    return wait > 0 ? wait : 0;
  }

  /**
   * A client refused by `key`'s bucket is handed a turn: the first free one after the turns already handed
   * out, one interval apart, so the refused clients of a burst come back spread at the rate the bucket
   * admits. Returns the milliseconds until that turn (at least until the next token).
   */
  nextTurn(key: KeyHash, now: number, intervalMs: number, burst: number): number {
    const slot = this.lockedSlot(key);
    if (slot < 0) return intervalMs;
    const base = slot * SLOT_TIMES;
    const firstToken = Math.max(this.times[base + TAT]!, now) - (burst - 1) * intervalMs;
    const turn = Math.max(this.times[base + HORIZON]!, firstToken, now);
    this.times[base + HORIZON] = turn + intervalMs;
    this.unlock(slot);
    return turn - now;
  }

  /** The slot holding `key`, or -1 (no lock taken). */
  private findSlot(key: KeyHash): number {
    const fp = key.fingerprint;
    for (let i = 0; i < WINDOW; i++) {
      const slot = (key.index + i) & this.mask;
      if (Atomics.load(this.words, slot * SLOT_WORDS + KEY) === fp) return slot;
    }
    return -1;
  }

  /** The slot of `key`, locked (found, or claimed by eviction); -1 when there is none to be had. */
  private lockedSlot(key: KeyHash): number {
    const found = this.lockFound(key);
    if (found !== NOT_FOUND) return found;
    // A new key. Claims of one key are serialised on the lock of its window's first slot (its home):
    // without that, two workers could each claim a different free slot for the same key (one scans before
    // the other's claim is visible), and a limit would then count in two places and let twice as many in.
    const home = key.index & this.mask;
    if (!this.lock(home)) return -1;
    const again = this.findSlot(key);
    if (again >= 0) {
      // Claimed by another worker while we waited for the home lock.
      if (again === home) return home;
      this.unlock(home);
      const slot = this.lockFound(key);
      return slot === NOT_FOUND ? -1 : slot;
    }
    for (let attempt = 0; attempt < 2; attempt++) {
      const victim = this.victim(key);
      if (victim < 0 || (victim !== home && !this.lock(victim))) break;
      const base = victim * SLOT_WORDS;
      if (Atomics.load(this.words, base + KEY) !== 0 && Atomics.load(this.words, base + COUNT) !== 0) {
        // Taken by another key and counted since the scan (not by this key: its claims wait for home).
        if (victim !== home) this.unlock(victim);
        continue;
      }
      this.times[victim * SLOT_TIMES + TAT] = 0;
      this.times[victim * SLOT_TIMES + HORIZON] = 0;
      Atomics.store(this.words, base + COUNT, 0);
      Atomics.store(this.words, base + KEY, key.fingerprint);
      if (victim !== home) this.unlock(home);
      return victim;
    }
    this.unlock(home);
    return -1;
  }

  /** The slot holding `key`, locked; NOT_FOUND when the key has no slot, -1 when its lock stayed taken. */
  private lockFound(key: KeyHash): number {
    const fp = key.fingerprint;
    for (let attempt = 0; attempt < 2; attempt++) {
      const found = this.findSlot(key);
      if (found < 0) return NOT_FOUND;
      if (!this.lock(found)) return -1;
      if (Atomics.load(this.words, found * SLOT_WORDS + KEY) === fp) return found;
      this.unlock(found); // evicted between the look and the lock: look again
    }
    return NOT_FOUND;
  }

  /** The slot a new key takes in its window: the first empty one, else the uncounted one with the smallest tat. */
  private victim(key: KeyHash): number {
    let best = -1;
    let bestTat = Infinity;
    for (let i = 0; i < WINDOW; i++) {
      const slot = (key.index + i) & this.mask;
      const base = slot * SLOT_WORDS;
      if (Atomics.load(this.words, base + KEY) === 0) return slot;
      if (Atomics.load(this.words, base + COUNT) !== 0) continue;
      const tat = this.times[slot * SLOT_TIMES + TAT]!;
      if (tat < bestTat) {
        best = slot;
        bestTat = tat;
      }
    }
    return best;
  }

  private lock(slot: number): boolean {
    const at = slot * SLOT_WORDS + LOCK;
    for (let i = 0; i < SPIN_LIMIT; i++) if (Atomics.compareExchange(this.words, at, 0, 1) === 0) return true;
    // Still taken after the spin: the holder lost its CPU inside its few stores (more runnable threads than
    // cores), and runs again within a scheduler slice or so. Sleep in 1 ms steps while the lock word stays 1
    // (unlock needs no notify: the step bounds the sleep) rather than fail open at once, which would let a
    // client past its limit; give up only after WAIT_STEPS ms.
    for (let i = 0; i < WAIT_STEPS; i++) {
      Atomics.wait(this.words, at, 1, 1);
      if (Atomics.compareExchange(this.words, at, 0, 1) === 0) return true;
    }
    return false;
  }

  private unlock(slot: number): void {
    Atomics.store(this.words, slot * SLOT_WORDS + LOCK, 0);
  }
}
