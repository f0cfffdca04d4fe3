/**
 * Traefik's HTTP middlewares (part of CONFIG_SCHEMA in schema.ts): `http.middlewares.<name>` holds exactly one
 * middleware type with its options, in Traefik's key names and meaning. Each type is opt-in (absent = not this
 * type); compile-middlewares.ts checks that a middleware has exactly one type and resolves chains. The Traefik
 * types Sluice does not implement are refused by name.
 */
import type { ListSchema, MapSchema, ObjectSchema, ScalarSchema } from './schema-types.js';
import { notYet } from './schema-types.js';
import { inFlightReqSchema, ipAllowListSchema, rateLimitSchema } from './schema-limits.js';

// Declarations are `as const satisfies …` (helpers are generic over their literal arguments) so that the
// checked config type (schema-types.ts Checked<>) knows every middleware key and its value type.
type ScalarExtra = Omit<Extract<ScalarSchema, { type: 'string' }>, 'kind' | 'type' | 'doc'>;
type ListExtra = Omit<ListSchema, 'kind' | 'item' | 'doc'>;

function string<const D extends string, const E extends ScalarExtra = object>(doc: D, extra: E = {} as E) {
  return { kind: 'scalar', type: 'string', doc, ...extra } as const;
}
function flag<const D extends string>(doc: D) {
  return { kind: 'scalar', type: 'boolean', defaultValue: false, doc } as const satisfies ScalarSchema;
}
function strings<const D extends string, const I extends string, const E extends ListExtra = object>(doc: D, item: I, extra: E = {} as E) {
  return { kind: 'list', item: { kind: 'scalar', type: 'string', doc: item }, doc, ...extra } as const;
}
function headerMap<const D extends string>(doc: D) {
  return {
    kind: 'map',
    entry: 'header',
    value: { kind: 'scalar', type: 'string', doc: 'The value; an empty string removes the header.' },
    doc,
  } as const satisfies MapSchema;
}

const headers = {
  kind: 'object',
  optIn: true,
  doc: 'Adds, replaces or removes request and response headers, answers CORS preflights and adds security headers.',
  fields: {
    customRequestHeaders: headerMap('Headers set on the request before it goes on (an empty value removes the header).'),
    customResponseHeaders: headerMap('Headers set on the response before it reaches the client (an empty value removes the header).'),
    accessControlAllowOriginList: strings('CORS: origins allowed (`*` allows any); a preflight from another origin gets no CORS headers.', 'An origin like "https://app.example.com", or "*".'),
    accessControlAllowOriginListRegex: strings('CORS: regular expressions an allowed origin may match instead.', 'A regular expression.'),
    accessControlAllowMethods: strings('CORS: methods a preflight allows (Access-Control-Allow-Methods).', 'A method like "GET".'),
    accessControlAllowHeaders: strings('CORS: request headers a preflight allows (Access-Control-Allow-Headers).', 'A header name.'),
    accessControlExposeHeaders: strings('CORS: response headers the browser may read (Access-Control-Expose-Headers).', 'A header name.'),
    accessControlMaxAge: {
      kind: 'scalar',
      type: 'integer',
      min: 0,
      max: Number.MAX_SAFE_INTEGER,
      defaultValue: 0,
      defaultNote: '(not sent)',
      doc: 'CORS: seconds a browser may cache a preflight answer (Access-Control-Max-Age).',
    },
    accessControlAllowCredentials: flag('CORS: send Access-Control-Allow-Credentials: true.'),
    addVaryHeader: flag('CORS: add Vary: Origin when the allowed origin is echoed back.'),
    frameDeny: flag('Send X-Frame-Options: DENY.'),
    customFrameOptionsValue: string('X-Frame-Options value (wins over frameDeny).', { defaultText: 'none' }),
    contentTypeNosniff: flag('Send X-Content-Type-Options: nosniff.'),
    browserXssFilter: flag('Send X-XSS-Protection: 1; mode=block.'),
    customBrowserXSSValue: string('X-XSS-Protection value (wins over browserXssFilter).', { defaultText: 'none' }),
    contentSecurityPolicy: string('Content-Security-Policy value.', { defaultText: 'none' }),
    contentSecurityPolicyReportOnly: string('Content-Security-Policy-Report-Only value.', { defaultText: 'none' }),
    referrerPolicy: string('Referrer-Policy value.', { defaultText: 'none' }),
    permissionsPolicy: string('Permissions-Policy value.', { defaultText: 'none' }),
    stsSeconds: {
      kind: 'scalar',
      type: 'integer',
      min: 0,
      max: Number.MAX_SAFE_INTEGER,
      defaultValue: 0,
      defaultNote: '(not sent)',
      doc: 'Strict-Transport-Security max-age, sent on TLS requests (or always with forceSTSHeader).',
    },
    stsIncludeSubdomains: flag('Add includeSubDomains to Strict-Transport-Security.'),
    stsPreload: flag('Add preload to Strict-Transport-Security.'),
    forceSTSHeader: flag('Send Strict-Transport-Security on plain HTTP requests too.'),
  },
  refused: notYet(
    'allowedHosts',
    'hostsProxyHeaders',
    'sslRedirect',
    'sslTemporaryRedirect',
    'sslHost',
    'sslProxyHeaders',
    'sslForceHost',
    'publicKey',
    'featurePolicy',
    'isDevelopment',
  ),
} as const satisfies ObjectSchema;

const stripPrefix = {
  kind: 'object',
  optIn: true,
  doc: 'Removes the first matching prefix from the path; the backend gets it in X-Forwarded-Prefix.',
  fields: {
    prefixes: strings('Prefixes to strip; the first that matches wins.', 'A path prefix like "/api".', {
      required: true,
      nonEmpty: 'prefix',
      expects: 'a list of path prefixes',
    }),
  },
  refused: { forceSlash: 'deprecated in Traefik v3; the stripped path always starts with /' },
} as const satisfies ObjectSchema;

const stripPrefixRegex = {
  kind: 'object',
  optIn: true,
  doc: 'Removes the start of the path that a regular expression matches; the backend gets it in X-Forwarded-Prefix.',
  fields: {
    regex: strings('Regular expressions matched at the start of the path; the first that matches wins.', 'A regular expression like "/api/v[0-9]+".', {
      required: true,
      nonEmpty: 'regular expression',
      expects: 'a list of regular expressions',
    }),
  },
} as const satisfies ObjectSchema;

const replacePath = {
  kind: 'object',
  optIn: true,
  doc: 'Replaces the whole path (the query stays); the backend gets the original in X-Replaced-Path.',
  fields: { path: string('The new path.', { required: true, expects: 'a path like "/socket.io/"' }) },
} as const satisfies ObjectSchema;

const replacePathRegex = {
  kind: 'object',
  optIn: true,
  doc: 'Rewrites the path with a regular expression and a replacement; the backend gets the original in X-Replaced-Path.',
  fields: {
    regex: string('Regular expression matched against the path.', { required: true, expects: 'a regular expression' }),
    replacement: string('Replacement, with $1 or ${name} for groups.', { required: true, expects: 'a replacement like "/v2/$1"' }),
  },
} as const satisfies ObjectSchema;

const addPrefix = {
  kind: 'object',
  optIn: true,
  doc: 'Puts a prefix in front of the path.',
  fields: { prefix: string('The prefix, starting with /.', { required: true, expects: 'a path prefix like "/api"' }) },
} as const satisfies ObjectSchema;

const redirectScheme = {
  kind: 'object',
  optIn: true,
  doc: 'Redirects requests that do not use this scheme (and port) to it.',
  fields: {
    scheme: string('Scheme to redirect to.', { defaultValue: 'https' }),
    port: string('Port to redirect to, as a string ("8443"); none for the scheme\'s default port.', { defaultText: 'none' }),
    permanent: flag('301/308 instead of 302/307.'),
  },
} as const satisfies ObjectSchema;

const redirectRegex = {
  kind: 'object',
  optIn: true,
  doc: 'Redirects when the request URL (scheme://host/path?query) matches a regular expression.',
  fields: {
    regex: string('Regular expression matched against the full request URL.', { required: true, expects: 'a regular expression' }),
    replacement: string('Where to redirect, with $1 or ${name} for groups.', { required: true, expects: 'a URL like "https://example.com/$1"' }),
    permanent: flag('301/308 instead of 302/307.'),
  },
} as const satisfies ObjectSchema;

const chain = {
  kind: 'object',
  optIn: true,
  doc: 'Several middlewares under one name, applied in order.',
  fields: {
    middlewares: strings('Names of middlewares in http.middlewares (chains may nest, never in a loop).', 'A middleware name.', {
      required: true,
      nonEmpty: 'middleware name',
      expects: 'a list of middleware names',
    }),
  },
} as const satisfies ObjectSchema;

const basicAuth = {
  kind: 'object',
  optIn: true,
  doc: 'HTTP basic authentication against htpasswd entries (bcrypt, SHA-1 or apr1 hashes); a request without valid credentials gets 401 and never reaches the backend.',
  fields: {
    users: strings('Entries "user:hash" as htpasswd writes them.', 'One "user:hash" entry.', { defaultText: 'none' }),
    usersFile: string("An htpasswd file (one user:hash per line, # comments), relative to the config file's directory; its users join `users`.", { defaultText: 'none' }),
    realm: string('Realm named in the WWW-Authenticate challenge.', { defaultValue: 'traefik' }),
    removeHeader: flag('Remove the Authorization header before the request goes on.'),
    headerField: string('Header that carries the authenticated user name to the backend.', { defaultText: 'none' }),
  },
} as const satisfies ObjectSchema;

const forwardAuth = {
  kind: 'object',
  optIn: true,
  doc: 'Asks an authentication service first (a GET with the request\'s headers); a 2xx lets the request go on, any other answer goes back to the client as it came.',
  fields: {
    address: { kind: 'scalar', type: 'string', required: true, expects: 'a URL like "http://auth.internal/verify"', doc: 'URL of the authentication service (http or https).' },
    tls: {
      kind: 'object',
      optIn: true,
      doc: 'TLS toward an https address.',
      fields: {
        ca: string("PEM file of the CA that signs the service's certificate, relative to the config file's directory.", { defaultText: "the system's roots" }),
        cert: string('PEM client certificate, for services that ask for one.', { defaultText: 'none' }),
        key: string("PEM key of the client certificate.", { defaultText: 'none' }),
        insecureSkipVerify: flag("Accept any certificate from the service (for tests only)."),
      },
      refused: notYet('caOptional'),
    },
    trustForwardHeader: flag("Pass the client's own X-Forwarded-* headers to the service instead of Sluice's."),
    authResponseHeaders: strings("Headers copied from the service's 2xx answer onto the request (replacing the client's).", 'A header name.', { defaultText: 'none' }),
    authResponseHeadersRegex: string("Regular expression: the service's headers whose names match are copied too.", { defaultText: 'none' }),
    authRequestHeaders: strings("Only these request headers are sent to the service (default: all).", 'A header name.', { defaultText: 'all' }),
    addAuthCookiesToResponse: strings("Cookies the service sets (by name) that are added to the client's response.", 'A cookie name.', { defaultText: 'none' }),
  },
  refused: notYet('forwardBody', 'maxBodySize', 'preserveLocationHeader', 'preserveRequestMethod', 'headerField', 'maxResponseBodySize'),
} as const satisfies ObjectSchema;

const NOT_IMPLEMENTED = 'Sluice does not implement this middleware type';

export const middlewareSchema = {
  kind: 'object',
  doc: 'One middleware: exactly one of the types below, with its options.',
  fields: {
    headers,
    stripPrefix,
    stripPrefixRegex,
    replacePath,
    replacePathRegex,
    addPrefix,
    redirectScheme,
    redirectRegex,
    chain,
    basicAuth,
    forwardAuth,
    inFlightReq: inFlightReqSchema,
    rateLimit: rateLimitSchema,
    ipAllowList: ipAllowListSchema,
  },
  refused: {
    ...Object.fromEntries(
      ['buffering', 'circuitBreaker', 'compress', 'contentType', 'digestAuth', 'errors', 'grpcWeb', 'passTLSClientCert', 'plugin', 'retry'].map((type) => [type, NOT_IMPLEMENTED]),
    ),
    ipWhiteList: 'renamed ipAllowList in Traefik v3 (same keys)',
  },
  refusedAreKinds: true,
} as const satisfies ObjectSchema;

/** The middleware types Sluice implements, in the order `expected …` lists them. */
export const MIDDLEWARE_TYPES = Object.keys(middlewareSchema.fields);
