/**
 * Picks the router for a request: per entry point, the routers attached to it in priority order with their
 * compiled rules, built once per config snapshot. Matching walks that list and stops at the first match,
 * which is Traefik's behaviour given that the snapshot already sorted routers by priority.
 */
import type { RouteInput } from '../config/rule-ast.js';
import type { RouterSpec } from '../config/snapshot.js';
import { compileRule, type RouteMatcher } from './rule-matcher.js';

interface EntryPointRoutes {
  /** Indexes into the snapshot's routers, highest priority first. */
  readonly routerIndexes: readonly number[];
  /** matchers[i] is the compiled rule of routerIndexes[i]. */
  readonly matchers: readonly RouteMatcher[];
}

export class RouterTable {
  private readonly byEntryPoint: readonly EntryPointRoutes[];

  /**
   * `routers` must already be in priority order (the snapshot guarantees it). A router is served only on the
   * entry points it lists; resolving "no entryPoints = all of them" is the config compiler's job.
   */
  constructor(routers: readonly RouterSpec[], entryPointCount: number) {
    const lists = Array.from({ length: entryPointCount }, () => ({
      routerIndexes: [] as number[],
      matchers: [] as RouteMatcher[],
    }));
    routers.forEach((router, routerIndex) => {
      // Compiled once even when the router listens on several entry points.
      const matcher = compileRule(router.ast);
      for (const entryPoint of new Set(router.entryPoints)) {
        const list = lists[entryPoint];
        if (list === undefined) {
          throw new RangeError(
            `router '${router.name}' refers to entry point #${entryPoint}, but there are ${entryPointCount}`,
          );
        }
        list.routerIndexes.push(routerIndex);
        list.matchers.push(matcher);
      }
    });
    this.byEntryPoint = lists;
  }

  /** Index of the first router on `entryPoint` whose rule matches, or -1 (the caller answers 404). */
  match(entryPoint: number, input: RouteInput): number {
    const routes = this.byEntryPoint[entryPoint];
    if (routes === undefined) return -1;
    const { routerIndexes, matchers } = routes;
    for (let i = 0; i < matchers.length; i++) {
      if (matchers[i]!(input)) return routerIndexes[i]!;
    }
    return -1;
  }
}
