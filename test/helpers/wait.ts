/**
 * Bounded polling for tests: wait until a condition holds instead of sleeping a fixed time, and say
 * what was last seen when it never does.
 */

export interface WaitOptions {
  /** Give up after this long (default 5000 ms). */
  readonly timeoutMs?: number;
  /** Poll interval (default 10 ms). */
  readonly intervalMs?: number;
}

/**
 * Resolves once `check()` returns true. On timeout rejects with `what` and, when given, what
 * `describe()` says about the state at the last poll, so a failure shows the numbers that disagreed.
 */
export async function waitFor(
  what: string,
  check: () => boolean,
  describe?: () => string,
  options: WaitOptions = {},
): Promise<void> {
  const deadline = Date.now() + (options.timeoutMs ?? 5000);
  const interval = options.intervalMs ?? 10;
  for (;;) {
    if (check()) return;
    if (Date.now() >= deadline) {
      throw new Error(`timed out waiting for ${what}${describe === undefined ? '' : `: ${describe()}`}`);
    }
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
}

/** A small seeded PRNG (mulberry32): random choices in tests that replay the same way every run. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
