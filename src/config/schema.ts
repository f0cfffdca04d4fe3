/**
 * Every key Sluice accepts, with its type, default and meaning, declared in one place: validate.ts walks it
 * (and `Checked<typeof CONFIG_SCHEMA>` is the type of what it returns), compile.ts reads its defaults
 * through what validate filled in, and scripts/gen-config-docs.ts writes docs/configuration.md from it.
 * Traefik keys that Sluice does not support are listed too, so they are refused by name instead of as
 * unknown keys. A new key is one declaration here (or in a section file) and the code that uses it.
 */
import { accessLogSchema, adminSchema, logSchema } from './schema-observability.js';
import { kubernetesManifestsSchema, TLS_REFUSED, tlsOnRouterOrEntryPoint, tlsOptionsSchema } from './schema-tls.js';
import { middlewareSchema } from './schema-middlewares.js';
import { globalCompressionFields } from './schema-compression.js';
import { fanoutSchema } from './schema-fanout.js';
import { KiB, MiB } from './duration.js';
import { admissionSchema, backendMaxConnections, websocketLimitFields } from './schema-limits.js';
import { entryPointSchema } from './schema-entrypoints.js';
import { serversTransportSchema, serviceSchema } from './schema-services.js';

export type { ScalarType, ScalarSchema, ObjectSchema, MapSchema, ListSchema, Schema, Documented } from './schema-types.js';
import type { Checked, DefaultEntries, ObjectSchema, Schema } from './schema-types.js';
import { NOT_YET, notYet } from './schema-types.js';

/** uWebSockets.js keeps payload and backpressure limits in 32-bit integers; 1 GiB stays well inside. */
const MAX_BUFFER_BYTES = 1024 * MiB;

const router = {
  kind: 'object',
  doc: 'Matches requests with a rule and sends them to a service.',
  fields: {
    rule: {
      kind: 'scalar',
      type: 'string',
      required: true,
      expects: 'a rule like "Host(`example.com`) && PathPrefix(`/ws`)"',
      doc: 'Traefik v3 rule: `Host`, `HostRegexp`, `Path`, `PathPrefix`, `PathRegexp`, `Header` (`Headers`), `HeaderRegexp`, `Query`, `QueryRegexp`, `ClientIP`, `Method`, combined with `&&`, `||`, `!` and parentheses. Syntax errors give the column.',
    },
    service: {
      kind: 'scalar',
      type: 'string',
      required: true,
      expects: 'the name of a service in http.services',
      doc: 'Name of a service in `http.services`. A `@file` suffix is accepted; other providers (`@internal`, `@docker`) are refused.',
    },
    entryPoints: {
      kind: 'list',
      item: { kind: 'scalar', type: 'string', doc: 'Name of an entry point.' },
      nonEmpty: 'entry point name (or no entryPoints key, meaning all)',
      typeText: 'list of names',
      doc: 'Entry points to listen on. A TLS router attaches to the TLS ones among them, a plain router to the plain ones; a plain router that lists a TLS entry point is an error, and so is a router left with none. An empty list is an error (leave the key out to mean "all").',
      defaultText: "all entry points of the router's kind",
    },
    priority: {
      kind: 'scalar',
      type: 'integer',
      min: 0,
      max: Number.MAX_SAFE_INTEGER,
      doc: 'When several rules match, the highest priority wins, then the longer rule, then the name. `0` means the default, as in Traefik.',
      defaultText: 'length of the rule',
    },
    tls: tlsOnRouterOrEntryPoint('The router serves HTTPS/WSS; the entry points it lists become TLS entry points.'),
    middlewares: {
      kind: 'list',
      item: { kind: 'scalar', type: 'string', doc: 'Name of a middleware in http.middlewares (a `@file` suffix is accepted).' },
      doc: 'Middlewares applied in order to every request of this router, HTTP requests and WebSocket upgrades alike.',
      defaultText: 'none',
    },
  },
  refused: { observability: NOT_YET, ruleSyntax: 'Sluice reads the Traefik v3 rule syntax' },
} as const satisfies ObjectSchema;


function certificateFiles<const C extends string, const K extends string>(certDoc: C, keyDoc: K) {
  return {
    certFile: {
      kind: 'scalar',
      type: 'string',
      required: true,
      typeText: 'file path',
      expects: 'the path of a PEM certificate file',
      doc: certDoc,
    },
    keyFile: {
      kind: 'scalar',
      type: 'string',
      required: true,
      typeText: 'file path',
      expects: 'the path of a PEM private key file',
      doc: keyDoc,
    },
  } as const satisfies ObjectSchema['fields'];
}

/** A WebSocket buffer or message limit: bytes from 1 to MAX_BUFFER_BYTES. */
function bufferSize<const D extends string>(defaultValue: number, doc: D) {
  return { kind: 'scalar', type: 'size', min: 1, max: MAX_BUFFER_BYTES, defaultValue, doc } as const satisfies Schema;
}

export const CONFIG_SCHEMA = {
  kind: 'object',
  doc: 'A Sluice configuration file.',
  fields: {
    entryPoints: {
      kind: 'map',
      entry: 'entry point',
      value: entryPointSchema,
      required: true,
      doc: 'Listeners, by name. At least one.',
    },
    http: {
      kind: 'object',
      doc: "Routing (Traefik's dynamic configuration).",
      fields: {
        routers: { kind: 'map', entry: 'router', value: router, doc: 'Routers, by name.' },
        services: { kind: 'map', entry: 'service', value: serviceSchema, doc: 'Services, by name.' },
        serversTransports: {
          kind: 'map',
          entry: 'servers transport',
          value: serversTransportSchema,
          doc: 'Backend connection settings, by name.',
        },
        middlewares: {
          kind: 'map',
          entry: 'middleware',
          value: middlewareSchema,
          doc: "Middlewares, by name (Traefik's types and keys); routers list them in `middlewares`.",
        },
      },
    },
    tls: {
      kind: 'object',
      doc: 'Certificates served by TLS entry points.',
      fields: {
        certificates: {
          kind: 'list',
          doc: 'Certificates, chosen by SNI from the names they carry (CN and DNS subjectAltNames, wildcards included).',
          item: {
            kind: 'object',
            doc: 'One certificate and its key.',
            fields: certificateFiles('PEM certificate (chain).', 'PEM private key; must match the certificate.'),
            refused: { stores: "every certificate goes to the one 'default' store" },
          },
        },
        stores: {
          kind: 'object',
          doc: 'Certificate stores; only `default` exists.',
          fields: {
            default: {
              kind: 'object',
              doc: 'The default store.',
              fields: {
                defaultCertificate: {
                  kind: 'object',
                  doc: 'Served when no certificate matches the SNI.',
                  defaultText: 'the first of `tls.certificates`',
                  fields: certificateFiles('PEM certificate (chain).', 'PEM private key.'),
                },
              },
              refused: { defaultGeneratedCert: 'ACME is not built in' },
            },
          },
        },
        options: tlsOptionsSchema,
      },
    },
    workers: {
      kind: 'scalar',
      type: 'integer',
      min: 1,
      max: 1024,
      doc: 'Worker threads, each with its own listeners. The `--workers` flag wins over the file.',
      defaultText: '`os.availableParallelism()`',
    },
    loadBalancer: {
      kind: 'object',
      doc: 'Defaults for every service.',
      fields: {
        strategy: {
          kind: 'scalar',
          type: 'strategy',
          defaultValue: 'leastconn',
          doc: '`leastconn`: fewest active connections per unit of weight, counted across all workers; suits long-lived WebSockets. `roundrobin`: smooth weighted round robin. `hash`: consistent (rendezvous) hashing with bounded load.',
        },
        retries: {
          kind: 'scalar',
          type: 'integer',
          min: 0,
          max: 100,
          defaultValue: 2,
          doc: 'Attempts on other backends after a failed connect or a `5xx` answer to the upgrade.',
        },
        slowStart: {
          kind: 'scalar',
          type: 'duration',
          defaultValue: 0,
          defaultNote: '(off)',
          doc: "Default of every service's `slowStart`.",
        },
        drainWindow: {
          kind: 'scalar',
          type: 'duration',
          min: 1,
          defaultValue: 10_000,
          doc: "Default of every service's `drainWindow`.",
        },
        onRemove: {
          kind: 'scalar',
          type: 'choice',
          choices: ['drain', 'keep'],
          defaultValue: 'drain',
          expects: "'drain' or 'keep'",
          doc: "Default of every service's `onRemove`, and what a reload does to the WebSockets of a service it removes altogether. The config being applied decides.",
        },
        maxConnections: backendMaxConnections("Default of every service's `maxConnections` (WebSockets per backend).", { defaultValue: 0, defaultNote: '(no limit)' }),
        admission: admissionSchema("Default of every service's `admission` (upgrades per backend)."),
        stickySecret: {
          kind: 'scalar',
          type: 'string',
          doc: 'Signs sticky cookies. Replicas behind one Service must share it (a random secret is logged as a warning: cookies then only hold within one process\'s life).',
          defaultText: 'env `SLUICE_STICKY_SECRET`, else random per process',
        },
      },
    },
    dns: {
      kind: 'object',
      doc: 'Resolver for `discovery: dns`.',
      fields: {
        servers: {
          kind: 'list',
          item: { kind: 'scalar', type: 'string', doc: 'A resolver address, "IP" or "IP:port".' },
          typeText: 'list of `IP`, `IP:port` or `[IPv6]:port`',
          doc: 'DNS servers asked for A and AAAA records.',
          defaultText: "the system's (`/etc/hosts`, `/etc/resolv.conf`)",
        },
      },
    },
    websocket: {
      kind: 'object',
      doc: 'WebSocket limits, timeouts and client-leg compression.',
      fields: {
        maxMessageSize: bufferSize(16 * MiB,
          'Largest message accepted on either leg; a larger one closes the connection with 1009.'),
        clientHighWaterMark: bufferSize(256 * KiB,
          "Client send buffer above which Sluice stops reading that client's backend (backpressure). At most `clientMaxBuffer`."),
        clientMaxBuffer: bufferSize(32 * MiB,
          "Hard cap of a client's send buffer; past it the client is closed with 1013. At least `maxMessageSize`."),
        upstreamWriteBudget: bufferSize(32 * MiB,
          'Backend socket write buffer past which the client is closed with 1013. At least `maxMessageSize`.'),
        idleTimeout: {
          kind: 'scalar',
          type: 'duration',
          defaultValue: 120_000,
          doc: 'Time without traffic before the client is pinged, then closed. `0` disables. Otherwise whole seconds from 8s to 960s: uWebSockets.js times idle sockets in 4-second ticks and aborts the process on other values.',
        },
        handshakeTimeout: {
          kind: 'scalar',
          type: 'duration',
          min: 1,
          defaultValue: 5_000,
          doc: "Time the backend has to answer the upgrade once connected (the dial has `serversTransport`'s `dialTimeout`). Past it the attempt counts as a failure of that backend (passive checks, cool-down) and the upgrade goes on to another backend, or is answered `504`. A backend answers an upgrade in milliseconds; one that accepts the connection but says nothing for seconds is frozen (stopped, deadlocked, swapping), and every client sent there waits this long, so the default is 5s, not the 10s it used to be.",
        },
        pingInterval: {
          kind: 'scalar',
          type: 'duration',
          defaultValue: 30_000,
          doc: "Backend leg: time without a byte from a backend before Sluice pings it. A backend that answers stays connected however long it is idle; `0` turns the pings off (then only TCP keepalive finds a vanished backend host, after minutes, and only on the Node socket leg). The client leg's pings follow `idleTimeout`.",
        },
        pongTimeout: {
          kind: 'scalar',
          type: 'duration',
          min: 1,
          defaultValue: 15_000,
          doc: 'Backend leg: time a pinged backend has to send anything back; past it the backend connection is dropped, its client closed with 1011, and `websocket_errors_total{reason="backend_unresponsive"}` counts it. So a stopped backend is found within `pingInterval` + `pongTimeout` (plus up to a quarter of the shorter of the two).',
        },
        ...globalCompressionFields,
        ...websocketLimitFields,
      },
    },
    admin: adminSchema,
    log: logSchema,
    accessLog: accessLogSchema,
    fanout: fanoutSchema,
    shutdown: {
      kind: 'object',
      doc: 'Deprecated: graceful shutdown is per entry point, `entryPoints.<name>.transport.lifeCycle`.',
      fields: {
        gracePeriod: {
          kind: 'scalar',
          type: 'duration',
          defaultText: 'none',
          doc: 'Deprecated alias: sets `transport.lifeCycle.graceTimeOut` of every entry point that sets none, with a warning.',
        },
      },
    },
    providers: {
      kind: 'object',
      doc: "Traefik's static configuration: where the dynamic configuration is read from (see [Live configuration](#live-configuration)).",
      fields: {
        file: {
          kind: 'object',
          optIn: true,
          doc: "Traefik's file provider.",
          fields: {
            filename: {
              kind: 'scalar',
              type: 'string',
              typeText: 'file path',
              doc: "One dynamic configuration file, relative to this file's directory.",
            },
            directory: {
              kind: 'scalar',
              type: 'string',
              typeText: 'file path',
              doc: 'A directory of dynamic configuration files (`.yaml`, `.yml`, `.toml`; others and hidden files are ignored), merged.',
            },
            watch: {
              kind: 'scalar',
              type: 'boolean',
              defaultValue: true,
              doc: "Reload when a dynamic file changes (Traefik's default too).",
            },
          },
          refused: { debugLogGeneratedTemplate: 'Sluice does not template configuration files' },
        },
        kubernetesManifests: kubernetesManifestsSchema,
      },
      refused: {
        ...notYet('docker', 'swarm', 'kubernetesIngress', 'kubernetesGateway', 'consulCatalog', 'nomad', 'ecs'),
        ...notYet('consul', 'etcd', 'zooKeeper', 'redis', 'http', 'plugin'),
        kubernetesCRD: 'Sluice reads IngressRoute manifests from files (providers.kubernetesManifests), not from the Kubernetes API',
        providersThrottleDuration: 'Sluice coalesces a burst of file changes into one reload by itself',
      },
    },
  },
  refused: {
    ...notYet('tcp', 'udp', 'tracing', 'experimental', 'global'),
    ...notYet('hostResolver', 'spiffe', 'core'),
    api: 'the JSON API and the dashboard are served on admin.address (/api/*, /dashboard)',
    metrics: 'Prometheus metrics are always served on admin.address (/metrics)',
    ping: 'liveness and readiness are served on admin.address (/health, /ready)',
    certificatesResolvers: TLS_REFUSED.certResolver,
    serversTransport: '(expected http.serversTransports.default)',
  },
} as const satisfies ObjectSchema;

/** What validate.ts returns for a whole file. */
export type CheckedConfig = Checked<typeof CONFIG_SCHEMA>;

/** One row of the reference: a key path (`<name>` for user-chosen names, `[]` for list items). */
export interface SchemaEntry {
  readonly path: string;
  readonly schema: Schema;
}

/** Every accepted key, depth first in declaration order: the rows of docs/configuration.md. */
export function* schemaEntries(schema: Schema = CONFIG_SCHEMA, path = ''): Generator<SchemaEntry> {
  if (path !== '') yield { path, schema };
  if (schema.kind === 'object') {
    for (const [key, field] of Object.entries(schema.fields)) yield* schemaEntries(field, join(path, key));
  } else if (schema.kind === 'map') {
    yield* schemaEntries(schema.value, join(path, '<name>'));
  } else if (schema.kind === 'list' && schema.item.kind !== 'scalar') {
    yield* schemaEntries(schema.item, `${path}[]`);
  }
}

/** A Traefik key refused by name: its path in schemaEntries' notation, and the hint its message carries. */
export interface RefusedEntry {
  readonly path: string;
  readonly hint: string;
}

/** Every Traefik key refused by name, depth first. */
export function* refusedEntries(schema: Schema = CONFIG_SCHEMA, path = ''): Generator<RefusedEntry> {
  if (schema.kind === 'object') {
    for (const [key, hint] of Object.entries(schema.refused ?? {})) yield { path: join(path, key), hint };
    for (const [key, field] of Object.entries(schema.fields)) yield* refusedEntries(field, join(path, key));
  } else if (schema.kind === 'map') {
    yield* refusedEntries(schema.value, join(path, '<name>'));
  } else if (schema.kind === 'list') {
    yield* refusedEntries(schema.item, `${path}[]`);
  }
}

function join(parent: string, key: string): string {
  return parent === '' ? key : `${parent}.${key}`;
}

type Defaults = DefaultEntries<typeof CONFIG_SCHEMA>;
/** The dotted path of every key that declares a default (`<name>` for map entries, `[]` for list items). */
export type DefaultPath = Defaults[0];

/**
 * The declared default of a scalar key, typed by its declaration, for the few places that need a default
 * apart from a validated config (a fallback after a cross-key check, a balancer built without a config).
 * A path that names no default is a type error.
 */
export function defaultOf<P extends DefaultPath>(path: P): Extract<Defaults, [P, unknown]>[1] {
  let schema: Schema = CONFIG_SCHEMA;
  for (const segment of path.split('.')) {
    const key = segment.endsWith('[]') ? segment.slice(0, -2) : segment;
    if (schema.kind === 'map' && key === '<name>') schema = schema.value;
    else if (schema.kind === 'object' && schema.fields[key] !== undefined) schema = schema.fields[key];
    else throw new Error(`no key '${path}' in the config schema`);
    if (segment.endsWith('[]')) {
      if (schema.kind !== 'list') throw new Error(`key '${path}': '${key}' is not a list`);
      schema = schema.item;
    }
  }
  if (schema.kind !== 'scalar' || schema.defaultValue === undefined) throw new Error(`key '${path}' has no default`);
  return schema.defaultValue as Extract<Defaults, [P, unknown]>[1];
}
