/**
 * Sluice's manifest provider (`providers.kubernetesManifests`): a directory of Kubernetes manifests, several
 * documents per file as kubectl takes them, read as one more dynamic configuration. Each manifest becomes the
 * same dynamic keys a Traefik file would hold, so everything downstream (validation, middlewares, compile)
 * is shared with the file provider:
 *
 * - IngressRoute N/x, route i → router and service `N-x` (`N-x-i` when it has several routes); each
 *   `services[]` entry is a server `http://S.NS.svc.<clusterDomain>:P` (https for port 443 or scheme https)
 *   resolved by DNS discovery, so a headless Service gives one backend per pod; `tls.secretName` S is the
 *   files `<secretsDirectory>/S/tls.crt` and `tls.key`, where a Secret volume puts them.
 * - Middleware N/m → `http.middlewares.N-m` (its spec as is: whatever middleware types Sluice implements).
 * - ServersTransport N/t → `http.serversTransports.N-t`; TLSOption N/o → `tls.options.N-o` (`default`
 *   stays `default`, as in Traefik).
 *
 * Both API groups are read: traefik.io/v1alpha1 and the older traefik.containo.us/v1alpha1. Anything else is
 * an error naming the file, the document (1-based, as an editor counts them) and the field. Problems found
 * later on the generated keys are traced back to the manifest the same way (locate).
 */
import { join } from 'node:path';

import { LineCounter, parseAllDocuments } from 'yaml';

import { closest, describeValue, indexPath, keyPath, unknownName, type ConfigProblem } from './errors.js';

export interface ManifestSettings {
  /** Absolute paths. */
  readonly directory: string;
  readonly secretsDirectory: string;
  readonly clusterDomain: string;
  readonly watch: boolean;
}

export const API_VERSIONS = ['traefik.io/v1alpha1', 'traefik.containo.us/v1alpha1'];
const KINDS = ['IngressRoute', 'Middleware', 'ServersTransport', 'TLSOption'];
const OTHER_TRAEFIK_KINDS = ['IngressRouteTCP', 'IngressRouteUDP', 'MiddlewareTCP', 'TraefikService', 'TLSStore', 'ServersTransportTCP'];

/** Where a generated key came from: problems at `prefix` (and below, with keepRest) are shown there. */
interface Origin {
  readonly prefix: string;
  readonly file: string;
  readonly where: string;
  readonly field: string;
  readonly keepRest: boolean;
}

interface Doc {
  readonly file: string;
  /** `document 2 (IngressRoute default/chat)`. */
  where: string;
}

export type Mapping = Record<string, unknown>;

export function isMapping(value: unknown): value is Mapping {
  return value !== null && typeof value === 'object' && !Array.isArray(value) && !(value instanceof Date);
}

export class ManifestSource {
  readonly routers: Mapping = {};
  readonly services: Mapping = {};
  readonly middlewares: Mapping = {};
  readonly serversTransports: Mapping = {};
  readonly certificates: { certFile: string; keyFile: string }[] = [];
  readonly tlsOptions: Mapping = {};
  readonly problems: ConfigProblem[] = [];
  /** The manifest files read, as messages name them. */
  readonly files: string[] = [];
  /** tls.certificates entries merged before this source's (set by the caller when merging). */
  certificateOffset = 0;
  private readonly origins: Origin[] = [];
  private readonly certificateOrigins: Omit<Origin, 'prefix' | 'keepRest'>[] = [];
  private readonly defined = new Map<string, string>();

  constructor(
    readonly settings: ManifestSettings,
    /** The directory as messages name it. */
    readonly label: string,
  ) {}

  /** The dynamic configuration the manifests amount to (empty sections left out). */
  document(): Mapping {
    const http: Mapping = {};
    for (const [key, value] of Object.entries({ routers: this.routers, services: this.services, middlewares: this.middlewares, serversTransports: this.serversTransports })) {
      if (Object.keys(value).length > 0) http[key] = value;
    }
    const tls: Mapping = {};
    if (this.certificates.length > 0) tls.certificates = this.certificates;
    if (Object.keys(this.tlsOptions).length > 0) tls.options = this.tlsOptions;
    return { ...(Object.keys(http).length > 0 ? { http } : {}), ...(Object.keys(tls).length > 0 ? { tls } : {}) };
  }

  /** The problem as the manifest it came from names it, or undefined when `path` is not a generated key. */
  locate(problem: ConfigProblem): ConfigProblem | undefined {
    let best: Origin | undefined;
    for (const origin of this.allOrigins()) {
      const p = problem.path;
      const below = p === origin.prefix || p.startsWith(`${origin.prefix}.`) || p.startsWith(`${origin.prefix}[`);
      if (below && (best === undefined || origin.prefix.length > best.prefix.length)) best = origin;
    }
    if (best === undefined) {
      // A whole section refused or checked as one (http.middlewares): shown at the first manifest under it.
      best = this.allOrigins().find((o) => o.prefix.startsWith(`${problem.path}.`));
      if (best === undefined) return undefined;
      return { path: best.where, message: problem.message, file: best.file };
    }
    const rest = best.keepRest ? problem.path.slice(best.prefix.length) : '';
    const field = `${best.field}${rest}`;
    return { path: field === '' ? best.where : `${best.where}: ${field}`, message: problem.message, file: best.file };
  }

  private allOrigins(): Origin[] {
    const certificates = this.certificateOrigins.map((o, i) => ({ ...o, prefix: indexPath('tls.certificates', this.certificateOffset + i), keepRest: false }));
    return [...this.origins, ...certificates];
  }

  private problem(doc: Doc, field: string, message: string): void {
    this.problems.push({ file: doc.file, path: field === '' ? doc.where : `${doc.where}: ${field}`, message });
  }

  private origin(doc: Doc, prefix: string, field: string, keepRest = true): void {
    this.origins.push({ prefix, file: doc.file, where: doc.where, field, keepRest });
  }

  /** Every key of `value` must be one of `allowed` (or ignored); refused ones say why. */
  private fields(doc: Doc, value: Mapping, at: string, allowed: readonly string[], refused: Readonly<Record<string, string>> = {}, ignored: readonly string[] = []): void {
    for (const key of Object.keys(value)) {
      if (allowed.includes(key) || ignored.includes(key)) continue;
      const field = keyPath(at, key);
      if (Object.hasOwn(refused, key)) {
        this.problem(doc, field, `field '${key}' is not supported by Sluice${refused[key] === '' ? '' : `: ${refused[key]}`}`);
      } else {
        this.problem(doc, field, unknownName('field', key, allowed));
      }
    }
  }

  /** Reads one manifest file (its text) as documents. */
  readFile(label: string, text: string): void {
    this.files.push(label);
    const lineCounter = new LineCounter();
    const documents = parseAllDocuments(text, { lineCounter, prettyErrors: false, uniqueKeys: true, merge: true });
    const list = Array.isArray(documents) ? documents : [];
    list.forEach((document, i) => {
      const doc: Doc = { file: label, where: `document ${i + 1}` };
      if (document.errors.length > 0) {
        for (const error of document.errors) {
          const { line, col } = lineCounter.linePos(error.pos[0]);
          this.problems.push({ file: label, path: '', line, column: col, message: `invalid YAML: ${error.message.split('\n')[0]!.trim()}` });
        }
        return;
      }
      const value: unknown = document.toJS({ maxAliasCount: 1000 });
      if (value === null || value === undefined) return; // an empty document (a trailing ---)
      if (!isMapping(value)) {
        this.problem(doc, '', `got ${describeValue(value)} (expected a Kubernetes manifest: a mapping with apiVersion, kind, metadata and spec)`);
        return;
      }
      this.manifest(doc, value);
    });
  }

  private manifest(doc: Doc, value: Mapping): void {
    const { apiVersion, kind, metadata } = value;
    const kindText = typeof kind === 'string' ? kind : '';
    if (typeof kind !== 'string') {
      this.problem(doc, 'kind', `got ${describeValue(kind)} (expected one of: ${KINDS.join(', ')})`);
      return;
    }
    if (!KINDS.includes(kind)) {
      const expected = `(expected one of: ${KINDS.join(', ')})`;
      const hint = closest(kind, KINDS);
      this.problem(
        doc,
        'kind',
        OTHER_TRAEFIK_KINDS.includes(kind)
          ? `kind '${kind}' is not supported by Sluice ${expected}`
          : hint !== undefined
            ? `unknown kind '${kind}': did you mean '${hint}'? ${expected}`
            : `kind '${kind}'${typeof apiVersion === 'string' ? ` (${apiVersion})` : ''} is not read by Sluice: the directory may only hold Traefik manifests ${expected}`,
      );
      return;
    }
    if (typeof apiVersion !== 'string' || !API_VERSIONS.includes(apiVersion)) {
      this.problem(doc, 'apiVersion', `${kindText} of apiVersion ${describeValue(apiVersion)} is not read by Sluice (expected ${API_VERSIONS.join(' or ')})`);
      return;
    }
    if (!isMapping(metadata) || typeof metadata.name !== 'string' || metadata.name === '') {
      this.problem(doc, isMapping(metadata) ? 'metadata.name' : 'metadata', `got ${describeValue(isMapping(metadata) ? metadata.name : metadata)} (expected metadata with a name)`);
      return;
    }
    const namespace = metadata.namespace === undefined ? 'default' : metadata.namespace;
    if (typeof namespace !== 'string' || namespace === '') {
      this.problem(doc, 'metadata.namespace', `got ${describeValue(namespace)} (expected a namespace name, or none for 'default')`);
      return;
    }
    const name = metadata.name;
    doc.where = `${doc.where} (${kind} ${namespace}/${name})`;
    // status is written by the cluster (kubectl get -o yaml), never configuration.
    this.fields(doc, value, '', ['apiVersion', 'kind', 'metadata', 'spec'], {}, ['status']);
    const key = `${kind} ${namespace}/${name}`;
    const first = this.defined.get(key);
    if (first !== undefined) {
      this.problem(doc, 'metadata.name', `${key} is defined again (first in ${first}) (expected one manifest per kind, namespace and name)`);
      return;
    }
    this.defined.set(key, `${doc.file} ${doc.where.split(' (')[0]}`);
    if (!isMapping(value.spec)) {
      this.problem(doc, 'spec', `got ${describeValue(value.spec)} (expected a mapping)`);
      return;
    }
    const spec = value.spec;
    switch (kind) {
      case 'IngressRoute':
        this.ingressRoute(doc, namespace, name, spec);
        break;
      case 'Middleware':
        this.middleware(doc, namespace, name, spec);
        break;
      case 'ServersTransport':
        this.serversTransport(doc, namespace, name, spec);
        break;
      case 'TLSOption': {
        const optionsName = name === 'default' ? 'default' : `${namespace}-${name}`;
        this.tlsOptions[optionsName] = spec;
        this.origin(doc, keyPath('tls.options', optionsName), 'spec');
        break;
      }
    }
  }

  /** The name a reference `{ name, namespace }` (or `name@file`, a file-provider object) stands for. */
  private reference(name: string, namespace: string): string {
    if (name.endsWith('@file')) return name.slice(0, -'@file'.length);
    return `${namespace}-${name}`;
  }

  private ingressRoute(doc: Doc, namespace: string, name: string, spec: Mapping): void {
    this.fields(doc, spec, 'spec', ['entryPoints', 'routes', 'tls'], { parentRefs: 'IngressRoute parents are not supported' });
    const routes = spec.routes;
    if (!Array.isArray(routes) || routes.length === 0) {
      this.problem(doc, 'spec.routes', `got ${describeValue(routes)} (expected a list of routes, each with match and services)`);
      return;
    }
    const made: Mapping[] = [];
    routes.forEach((route: unknown, i) => {
      const at = indexPath('spec.routes', i);
      const id = routes.length === 1 ? `${namespace}-${name}` : `${namespace}-${name}-${i}`;
      if (!isMapping(route)) {
        this.problem(doc, at, `got ${describeValue(route)} (expected a route with match and services)`);
        return;
      }
      this.fields(doc, route, at, ['match', 'kind', 'priority', 'middlewares', 'services'], { syntax: 'Sluice reads the Traefik v3 rule syntax', observability: '' });
      if (route.kind !== undefined && route.kind !== 'Rule') this.problem(doc, keyPath(at, 'kind'), `got ${describeValue(route.kind)} (expected 'Rule')`);
      const routerPath = keyPath('http.routers', id);
      if (Object.hasOwn(this.routers, id)) {
        this.problem(doc, at, `its router name '${id}' is also made from another IngressRoute (expected IngressRoute names that do not end in -<number>)`);
        return;
      }
      const router: Mapping = { rule: route.match, service: id };
      if (spec.entryPoints !== undefined) router.entryPoints = spec.entryPoints;
      if (route.priority !== undefined) router.priority = route.priority;
      if (route.middlewares !== undefined) router.middlewares = this.middlewareRefs(doc, keyPath(at, 'middlewares'), namespace, route.middlewares);
      made.push(router);
      this.routers[id] = router;
      this.origin(doc, routerPath, at, false);
      this.origin(doc, keyPath(routerPath, 'rule'), keyPath(at, 'match'));
      this.origin(doc, keyPath(routerPath, 'priority'), keyPath(at, 'priority'));
      this.origin(doc, keyPath(routerPath, 'middlewares'), keyPath(at, 'middlewares'));
      this.origin(doc, keyPath(routerPath, 'entryPoints'), 'spec.entryPoints');
      this.origin(doc, keyPath(routerPath, 'tls'), 'spec.tls');
      this.origin(doc, keyPath(routerPath, 'service'), keyPath(at, 'services'), false);
      const service = this.routeService(doc, keyPath(at, 'services'), namespace, route.services, id);
      if (service !== undefined) this.services[id] = service;
    });
    const tls = spec.tls === undefined ? undefined : this.routeTls(doc, namespace, spec.tls);
    if (tls !== undefined) for (const router of made) router.tls = tls;
  }

  private middlewareRefs(doc: Doc, at: string, namespace: string, refs: unknown): unknown {
    if (!Array.isArray(refs)) return refs; // validation reports the type at the mapped path
    return refs.map((ref: unknown, j) => {
      if (!isMapping(ref) || typeof ref.name !== 'string') {
        this.problem(doc, indexPath(at, j), `got ${describeValue(ref)} (expected a middleware reference with a name)`);
        return '';
      }
      this.fields(doc, ref, indexPath(at, j), ['name', 'namespace']);
      return this.reference(ref.name, typeof ref.namespace === 'string' ? ref.namespace : namespace);
    });
  }

  private routeTls(doc: Doc, namespace: string, tls: unknown): Mapping | undefined {
    if (!isMapping(tls)) {
      this.problem(doc, 'spec.tls', `got ${describeValue(tls)} (expected a mapping, {} for TLS with the default certificate)`);
      return undefined;
    }
    this.fields(doc, tls, 'spec.tls', ['secretName', 'options', 'store', 'certResolver', 'domains']);
    const out: Mapping = {};
    // certResolver and domains go through as Traefik keys: validation refuses them by name, traced back here.
    if (tls.certResolver !== undefined) out.certResolver = tls.certResolver;
    if (tls.domains !== undefined) out.domains = tls.domains;
    if (tls.options !== undefined) {
      if (!isMapping(tls.options) || typeof tls.options.name !== 'string') {
        this.problem(doc, 'spec.tls.options', `got ${describeValue(tls.options)} (expected a TLSOption reference with a name)`);
      } else {
        this.fields(doc, tls.options, 'spec.tls.options', ['name', 'namespace']);
        const ns = typeof tls.options.namespace === 'string' ? tls.options.namespace : namespace;
        out.options = tls.options.name === 'default' ? 'default' : this.reference(tls.options.name, ns);
      }
    }
    if (tls.store !== undefined && !(isMapping(tls.store) && tls.store.name === 'default')) {
      this.problem(doc, 'spec.tls.store', `got ${describeValue(isMapping(tls.store) ? tls.store.name : tls.store)} (expected the 'default' store, the only one Sluice has)`);
    }
    if (tls.secretName !== undefined) {
      if (typeof tls.secretName !== 'string' || tls.secretName === '' || tls.secretName.includes('/')) {
        this.problem(doc, 'spec.tls.secretName', `got ${describeValue(tls.secretName)} (expected the name of a Secret mounted in ${this.settings.secretsDirectory})`);
      } else {
        const dir = join(this.settings.secretsDirectory, tls.secretName);
        const files = { certFile: join(dir, 'tls.crt'), keyFile: join(dir, 'tls.key') };
        if (!this.certificates.some((c) => c.certFile === files.certFile)) {
          this.certificates.push(files);
          this.certificateOrigins.push({ file: doc.file, where: doc.where, field: 'spec.tls.secretName' });
        }
      }
    }
    return out;
  }

  /** One Sluice service for a route's services: a DNS-discovered server per Kubernetes Service. */
  private routeService(doc: Doc, at: string, namespace: string, services: unknown, id: string): Mapping | undefined {
    if (!Array.isArray(services) || services.length === 0) {
      this.problem(doc, at, `got ${describeValue(services)} (expected a list of services, each with name and port)`);
      return undefined;
    }
    const servicePath = keyPath('http.services', id);
    const loadBalancer: Mapping = { servers: [], discovery: { type: 'dns' } };
    const shared = ['passHostHeader', 'serversTransport', 'sticky', 'healthCheck', 'strategy'] as const;
    const setBy = new Map<string, number>();
    services.forEach((service: unknown, j) => {
      const sat = indexPath(at, j);
      if (!isMapping(service)) {
        this.problem(doc, sat, `got ${describeValue(service)} (expected a service with name and port)`);
        return;
      }
      this.fields(doc, service, sat, ['name', 'namespace', 'kind', 'port', 'scheme', 'weight', ...shared], {
        nativeLB: 'Sluice reaches Services by their DNS name',
        nodePortLB: 'Sluice reaches Services by their DNS name',
        responseForwarding: '',
        mirroring: '',
        percentage: '',
      });
      if (service.kind !== undefined && service.kind !== 'Service') {
        this.problem(doc, keyPath(sat, 'kind'), service.kind === 'TraefikService' ? "kind 'TraefikService' is not supported by Sluice (expected 'Service')" : `got ${describeValue(service.kind)} (expected 'Service')`);
        return;
      }
      if (typeof service.name !== 'string' || service.name === '') {
        this.problem(doc, keyPath(sat, 'name'), `got ${describeValue(service.name)} (expected the name of a Kubernetes Service)`);
        return;
      }
      const port = typeof service.port === 'string' && /^\d+$/.test(service.port) ? Number(service.port) : service.port;
      if (typeof port !== 'number') {
        const named = typeof port === 'string' ? `named port '${port}' needs the Service object, which Sluice does not read` : `got ${describeValue(port)}`;
        this.problem(doc, keyPath(sat, 'port'), `${named} (expected the port number)`);
        return;
      }
      const scheme = service.scheme ?? (port === 443 ? 'https' : 'http');
      if (scheme !== 'http' && scheme !== 'https') {
        this.problem(doc, keyPath(sat, 'scheme'), `got ${describeValue(scheme)} (expected 'http' or 'https')`);
        return;
      }
      const ns = typeof service.namespace === 'string' ? service.namespace : namespace;
      const server: Mapping = { url: `${scheme}://${service.name}.${ns}.svc.${this.settings.clusterDomain}:${port}` };
      if (service.weight !== undefined) server.weight = service.weight;
      const servers = loadBalancer.servers as Mapping[];
      const serverPath = indexPath(`${servicePath}.loadBalancer.servers`, servers.length);
      this.origin(doc, serverPath, sat, false);
      this.origin(doc, `${serverPath}.weight`, keyPath(sat, 'weight'));
      servers.push(server);
      for (const key of shared) {
        if (service[key] === undefined) continue;
        const value = key === 'serversTransport' && typeof service[key] === 'string' ? this.reference(service[key], namespace) : service[key];
        const first = setBy.get(key);
        if (first === undefined) {
          setBy.set(key, j);
          loadBalancer[key] = value;
          this.origin(doc, `${servicePath}.loadBalancer.${key}`, keyPath(sat, key));
        } else if (JSON.stringify(loadBalancer[key]) !== JSON.stringify(value)) {
          this.problem(doc, keyPath(sat, key), `differs from services[${first}].${key}: the services of one route share one pool (expected the same ${key} on every service of the route)`);
        }
      }
    });
    this.origin(doc, servicePath, at, false);
    return { loadBalancer };
  }

  private middleware(doc: Doc, namespace: string, name: string, spec: Mapping): void {
    const types = Object.keys(spec);
    if (types.length !== 1) {
      this.problem(doc, 'spec', `${types.length === 0 ? 'names no middleware type' : `names ${types.length} middleware types (${types.join(', ')})`} (expected exactly one, such as headers or stripPrefix)`);
      return;
    }
    const id = `${namespace}-${name}`;
    let definition: Mapping = spec;
    const chain = spec.chain;
    if (isMapping(chain) && Array.isArray(chain.middlewares)) {
      // In a manifest a chain lists references ({ name, namespace }), in a file names.
      definition = { chain: { ...chain, middlewares: this.middlewareRefs(doc, 'spec.chain.middlewares', namespace, chain.middlewares) } };
    }
    this.middlewares[id] = definition;
    this.origin(doc, keyPath('http.middlewares', id), 'spec');
  }

  private serversTransport(doc: Doc, namespace: string, name: string, spec: Mapping): void {
    const id = `${namespace}-${name}`;
    const out: Mapping = { ...spec };
    // Other fields go through as http.serversTransports keys: validation accepts or refuses them by name.
    if (spec.certificatesSecrets !== undefined) {
      this.problem(doc, 'spec.certificatesSecrets', "field 'certificatesSecrets' is not supported by Sluice: it presents no client certificate to backends");
      delete out.certificatesSecrets;
    }
    // rootCAs: [{ secret: S }] (or configMap), or the older rootCAsSecrets: [S]: the CA file a mounted Secret holds.
    const cas: string[] = [];
    const caFile = (secret: string): string => join(this.settings.secretsDirectory, secret, 'ca.crt');
    if (spec.rootCAsSecrets !== undefined) {
      delete out.rootCAsSecrets;
      if (!Array.isArray(spec.rootCAsSecrets) || spec.rootCAsSecrets.some((s) => typeof s !== 'string')) {
        this.problem(doc, 'spec.rootCAsSecrets', `got ${describeValue(spec.rootCAsSecrets)} (expected a list of Secret names)`);
      } else {
        cas.push(...(spec.rootCAsSecrets as string[]).map(caFile));
      }
    }
    if (spec.rootCAs !== undefined) {
      if (!Array.isArray(spec.rootCAs)) {
        this.problem(doc, 'spec.rootCAs', `got ${describeValue(spec.rootCAs)} (expected a list of { secret: NAME } or { configMap: NAME })`);
      } else {
        spec.rootCAs.forEach((ca: unknown, i) => {
          const source = isMapping(ca) ? (ca.secret ?? ca.configMap) : undefined;
          if (typeof source !== 'string' || Object.keys(ca as Mapping).length !== 1) {
            this.problem(doc, indexPath('spec.rootCAs', i), `got ${describeValue(ca)} (expected { secret: NAME } or { configMap: NAME }, mounted in ${this.settings.secretsDirectory})`);
          } else {
            cas.push(caFile(source));
          }
        });
      }
    }
    if (cas.length > 0) out.rootCAs = cas;
    else delete out.rootCAs;
    this.serversTransports[id] = out;
    const path = keyPath('http.serversTransports', id);
    this.origin(doc, path, 'spec');
    this.origin(doc, keyPath(path, 'rootCAs'), spec.rootCAs !== undefined ? 'spec.rootCAs' : 'spec.rootCAsSecrets', false);
  }
}
