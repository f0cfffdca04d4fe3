/**
 * Schema of Traefik's TLS options (`tls.options.<name>`, chosen per router or entry point with
 * `tls.options: <name>`), of the `tls` key of a router or an entry point, and of Sluice's manifest provider
 * (`providers.kubernetesManifests`), declared apart from schema.ts so the TLS work stays in its own file.
 * What the TLS library under uWebSockets.js can and cannot do is decided in compile-tls.ts; here only the
 * shapes and the keys refused outright.
 */
import type { MapSchema, ObjectSchema, ScalarSchema } from './schema-types.js';
// Declarations are `as const satisfies …` so that validate.ts's checked type (schema-types.ts Checked<>) knows
// every key and value type.
import { NOT_YET } from './schema-types.js';

export const TLS_VERSIONS = ['VersionTLS10', 'VersionTLS11', 'VersionTLS12', 'VersionTLS13'] as const;

function tlsVersion<const D extends string, const T extends string>(doc: D, defaultText: T) {
  return {
    kind: 'scalar',
    type: 'choice',
    choices: TLS_VERSIONS,
    expects: "'VersionTLS12' or 'VersionTLS13'",
    defaultText,
    doc,
  } as const satisfies ScalarSchema;
}

export const tlsOptionsSchema = {
  kind: 'map',
  entry: 'TLS options',
  doc: "TLS settings by name; 'default' applies wherever no router or entry point names other options.",
  value: {
    kind: 'object',
    doc: 'One set of TLS settings. uWebSockets.js fixes them per listener, so every router of an entry point must use the same set.',
    fields: {
      minVersion: tlsVersion(
        "Lowest TLS version accepted. The TLS library under uWebSockets.js always refuses TLS 1.0 and 1.1, and this build cannot refuse TLS 1.2: only 'VersionTLS12' is accepted.",
        'VersionTLS12',
      ),
      maxVersion: tlsVersion("Highest TLS version accepted; TLS 1.3 cannot be turned off in this build: only 'VersionTLS13' is accepted.", 'VersionTLS13'),
      cipherSuites: {
        kind: 'list',
        item: { kind: 'scalar', type: 'string', doc: "A cipher suite by Go's name, e.g. TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256." },
        nonEmpty: 'cipher suite (or no cipherSuites key, meaning the library defaults)',
        doc: "TLS 1.2 cipher suites, by Go's names as Traefik takes them (uWebSockets.js's ssl_ciphers). TLS 1.3 suites are always on, as in Traefik.",
        defaultText: "the TLS library's",
      },
      sniStrict: {
        kind: 'scalar',
        type: 'boolean',
        defaultValue: false,
        doc: 'Answer no certificate (the handshake fails) when the SNI matches no certificate, or is absent.',
      },
    },
    refused: {
      curvePreferences: 'uWebSockets.js has no curve setting (its TLS library prefers X25519, then P-256)',
      clientAuth: NOT_YET,
      alpnProtocols: 'Sluice speaks HTTP/1.1 on its entry points',
      disableSessionTickets: NOT_YET,
      preferServerCipherSuites: 'deprecated in Traefik, and Go ignores it',
    },
  },
} as const satisfies MapSchema;

/** The `options` key of a router's or an entry point's `tls`. */
export const tlsOptionsRef = {
  kind: 'scalar',
  type: 'string',
  expects: 'the name of an entry in tls.options',
  defaultText: 'default',
  doc: 'Name of the TLS options (tls.options) to use; a `@file` suffix is accepted.',
} as const satisfies ScalarSchema;

/** TLS settings Traefik takes from ACME; Sluice serves the certificates of `tls.certificates`. */
export const TLS_REFUSED = {
  certResolver: 'ACME is not built in (expected certificates in tls.certificates)',
  domains: 'certificate names are read from the files in tls.certificates',
} as const;

export function tlsOnRouterOrEntryPoint<const D extends string>(doc: D) {
  return { kind: 'object', doc, acceptsBoolean: true, defaultText: 'absent (plain)', fields: { options: tlsOptionsRef }, refused: TLS_REFUSED } as const satisfies ObjectSchema;
}

export const kubernetesManifestsSchema = {
  kind: 'object',
  optIn: true,
  doc: "Sluice's own provider: a directory of Kubernetes manifests (IngressRoute, Middleware, ServersTransport, TLSOption; several documents per file) read as dynamic configuration. It reads files, not the Kubernetes API.",
  fields: {
    directory: {
      kind: 'scalar',
      type: 'string',
      required: true,
      expects: 'the path of a directory of .yaml or .yml manifests',
      doc: "The manifests' directory, relative to this file's directory; .yaml and .yml files, hidden ones skipped, subdirectories not read.",
    },
    secretsDirectory: {
      kind: 'scalar',
      type: 'string',
      defaultText: '<directory>/secrets',
      doc: 'Where Secrets are mounted: tls.secretName S is read from <secretsDirectory>/S/tls.crt and tls.key, a ServersTransport root CA secret from <secretsDirectory>/S/ca.crt.',
    },
    clusterDomain: {
      kind: 'scalar',
      type: 'string',
      defaultValue: 'cluster.local',
      doc: 'Domain of Service names: a service S on port P in namespace N is reached at S.N.svc.<clusterDomain>:P, resolved by discovery: dns.',
    },
    watch: {
      kind: 'scalar',
      type: 'boolean',
      defaultValue: true,
      doc: 'Reload when a manifest changes, as providers.file.watch.',
    },
  },
} as const satisfies ObjectSchema;
