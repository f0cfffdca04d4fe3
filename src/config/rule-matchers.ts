/**
 * The matchers a router rule may call (Traefik v3's HTTP matchers) with the number of arguments each takes
 * and the usage an error shows, and the v2 names v3 renamed without changing their meaning (accepted by the
 * parser with a warning).
 */
import type { MatcherName } from './rule-ast.js';

export interface MatcherSpec {
  readonly name: MatcherName;
  readonly minArgs: number;
  readonly maxArgs: number;
  /** Shown as the "expected" part of an arity error. */
  readonly usage: string;
}

export const MATCHERS: ReadonlyMap<string, MatcherSpec> = new Map(
  (
    [
      // Several hosts/paths/IPs/methods is the Traefik v2 form (any one matches); accepted with a warning.
      ['Host', 1, Infinity, 'Host(`example.com`)'],
      ['HostRegexp', 1, 1, 'HostRegexp(`^[a-z]+\\.example\\.com$`)'],
      ['Path', 1, Infinity, 'Path(`/chat`)'],
      ['PathPrefix', 1, Infinity, 'PathPrefix(`/chat`)'],
      ['PathRegexp', 1, 1, 'PathRegexp(`^/rooms/[0-9]+$`)'],
      ['Header', 2, 2, 'Header(`name`, `value`)'],
      ['HeaderRegexp', 2, 2, 'HeaderRegexp(`name`, `regexp`)'],
      // v2's Query(`a=1`, `b=2`) takes any number of pairs; checkQuery tells the two forms apart.
      ['Query', 1, Infinity, 'Query(`name`) or Query(`name`, `value`)'],
      ['QueryRegexp', 2, 2, 'QueryRegexp(`name`, `regexp`)'],
      ['ClientIP', 1, Infinity, 'ClientIP(`10.0.0.0/8`)'],
      ['Method', 1, Infinity, 'Method(`GET`)'],
    ] as const
  ).map(([name, minArgs, maxArgs, usage]) => [name, { name, minArgs, maxArgs, usage }]),
);

/** Traefik v2 names that v3 renamed without changing what they match: accepted with a warning. */
export const V2_NAMES: ReadonlyMap<string, MatcherSpec> = new Map([
  // v2 took any number of name/value pairs, all of which must match.
  ['Headers', { name: 'Header', minArgs: 2, maxArgs: Infinity, usage: 'Header(`name`, `value`)' }],
  ['HeadersRegexp', { name: 'HeaderRegexp', minArgs: 2, maxArgs: Infinity, usage: 'HeaderRegexp(`name`, `regexp`)' }],
  ['HostHeader', { name: 'Host', minArgs: 1, maxArgs: Infinity, usage: 'Host(`example.com`)' }],
]);

export const KNOWN_MATCHERS = `one of ${[...MATCHERS.keys()].join(', ')}`;

/** The arity part of an error: "exactly 2 arguments", "at least 1 argument". */
export function arityText(spec: MatcherSpec): string {
  const plural = (n: number): string => `${n} argument${n === 1 ? '' : 's'}`;
  if (spec.maxArgs === Infinity) return `at least ${plural(spec.minArgs)}`;
  if (spec.minArgs === spec.maxArgs) return `exactly ${plural(spec.minArgs)}`;
  return `${spec.minArgs} or ${plural(spec.maxArgs)}`;
}
