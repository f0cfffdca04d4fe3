/**
 * The compiled form of Traefik's middlewares, part of the Snapshot (plain, structured-clone-safe data): one
 * spec per middleware that does something (chains are flattened into each router's list at compile time), with
 * names lowercased, regular expressions translated to JavaScript syntax and files (htpasswd, TLS) already read.
 * Workers build one runtime middleware per spec per generation (src/middleware/).
 */
import type { InFlightReqSpec, IpAllowListSpec, RateLimitSpec } from './limits-spec.js';

export type { InFlightReqSpec, IpAllowListSpec, RateLimitSpec } from './limits-spec.js';

/** A regular expression in JavaScript syntax (translated from Traefik's Go RE2 syntax by compile). */
export interface RegexSpec {
  readonly source: string;
  readonly flags: string;
}

export interface CorsSpec {
  /** Exact origins; '*' allows any. */
  readonly allowOrigins: readonly string[];
  readonly allowOriginRegex: readonly RegexSpec[];
  /** Joined with ',' as Traefik does, '' when none. */
  readonly allowMethods: string;
  readonly allowHeaders: string;
  readonly exposeHeaders: string;
  /** Seconds; 0 = not sent. */
  readonly maxAge: number;
  readonly allowCredentials: boolean;
  readonly addVary: boolean;
}

export interface HeadersSpec {
  readonly type: 'headers';
  readonly name: string;
  /** [lowercase name, value]; an empty value removes the header. */
  readonly requestHeaders: readonly (readonly [string, string])[];
  readonly responseHeaders: readonly (readonly [string, string])[];
  readonly cors: CorsSpec | null;
  /** Fixed response headers (X-Frame-Options, CSP, …), [lowercase name, value]. */
  readonly securityHeaders: readonly (readonly [string, string])[];
  /** Strict-Transport-Security value ('' = not sent); sent on TLS requests, or always with forceSts. */
  readonly sts: string;
  readonly forceSts: boolean;
}

export interface StripPrefixSpec {
  readonly type: 'stripPrefix';
  readonly name: string;
  readonly prefixes: readonly string[];
}

export interface StripPrefixRegexSpec {
  readonly type: 'stripPrefixRegex';
  readonly name: string;
  readonly regex: readonly RegexSpec[];
}

export interface ReplacePathSpec {
  readonly type: 'replacePath';
  readonly name: string;
  readonly path: string;
}

export interface ReplacePathRegexSpec {
  readonly type: 'replacePathRegex';
  readonly name: string;
  readonly regex: RegexSpec;
  /** In Go's Regexp.Expand syntax as Traefik takes it ($1, ${1}, $name, ${name}, $$). */
  readonly replacement: string;
}

export interface AddPrefixSpec {
  readonly type: 'addPrefix';
  readonly name: string;
  readonly prefix: string;
}

export interface RedirectSchemeSpec {
  readonly type: 'redirectScheme';
  readonly name: string;
  readonly scheme: string;
  /** '' = the scheme's default port. */
  readonly port: string;
  readonly permanent: boolean;
}

export interface RedirectRegexSpec {
  readonly type: 'redirectRegex';
  readonly name: string;
  readonly regex: RegexSpec;
  /** Go Regexp.Expand syntax, as replacePathRegex. */
  readonly replacement: string;
  readonly permanent: boolean;
}

export interface BasicAuthSpec {
  readonly type: 'basicAuth';
  readonly name: string;
  /** [user, hash as htpasswd wrote it]; the hash format was checked at compile time. */
  readonly users: readonly (readonly [string, string])[];
  readonly realm: string;
  readonly removeHeader: boolean;
  /** Lowercase header name carrying the user to the backend, '' when none. */
  readonly headerField: string;
}

export interface ForwardAuthTls {
  /** PEM text ('' = the system's roots). */
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
  readonly insecureSkipVerify: boolean;
}

export interface ForwardAuthSpec {
  readonly type: 'forwardAuth';
  readonly name: string;
  /** Origin (scheme://host:port) and path (with query) of the authentication service. */
  readonly origin: string;
  readonly path: string;
  readonly tls: ForwardAuthTls | null;
  readonly trustForwardHeader: boolean;
  /** Lowercase names. */
  readonly authResponseHeaders: readonly string[];
  readonly authResponseHeadersRegex: RegexSpec | null;
  /** Lowercase names; empty = every request header. */
  readonly authRequestHeaders: readonly string[];
  readonly addAuthCookiesToResponse: readonly string[];
}

export type MiddlewareSpec =
  | HeadersSpec
  | StripPrefixSpec
  | StripPrefixRegexSpec
  | ReplacePathSpec
  | ReplacePathRegexSpec
  | AddPrefixSpec
  | RedirectSchemeSpec
  | RedirectRegexSpec
  | BasicAuthSpec
  | ForwardAuthSpec
  | InFlightReqSpec
  | RateLimitSpec
  | IpAllowListSpec;

export type MiddlewareType = MiddlewareSpec['type'];
