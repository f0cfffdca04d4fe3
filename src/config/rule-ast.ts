/**
 * The syntax tree of a Traefik router rule: produced by rule-parser.ts in the primary at config time,
 * carried to the workers inside the snapshot, and compiled to a matcher there (src/worker/rule-matcher.ts).
 * Plain objects only, so it survives structured clone.
 */

export type MatcherName =
  | 'Host'
  | 'HostRegexp'
  | 'Path'
  | 'PathPrefix'
  | 'PathRegexp'
  | 'Header'
  | 'HeaderRegexp'
  | 'Query'
  | 'QueryRegexp'
  | 'ClientIP'
  | 'Method';

export type RuleNode =
  | { readonly kind: 'and'; readonly left: RuleNode; readonly right: RuleNode }
  | { readonly kind: 'or'; readonly left: RuleNode; readonly right: RuleNode }
  | { readonly kind: 'not'; readonly operand: RuleNode }
  /** `Headers` is stored as `Header`; `Host(`a`, `b`)` (Traefik v2) keeps every argument, any matches. */
  | { readonly kind: 'matcher'; readonly name: MatcherName; readonly args: readonly string[] };

/** What a matcher sees of a request. Workers back it with the uWS request; tests with a plain object. */
export interface RouteInput {
  /** Host header without port, lowercased. */
  readonly host: string;
  /** Path as sent, without the query. */
  readonly path: string;
  /** Raw query string without '?'. */
  readonly query: string;
  readonly method: string;
  /** Client address as text (IPv4 dotted or IPv6, no brackets, no zone). */
  readonly clientIp: string;
  /** Header value by lowercase name, '' when absent. */
  header(lowerCaseName: string): string;
}
