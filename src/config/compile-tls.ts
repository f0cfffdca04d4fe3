/**
 * TLS at compile time: which entry points terminate TLS (Traefik's conventions when the configuration does
 * not say), which TLS options each one runs with, and the self-signed default certificate when a TLS router
 * has none. uWebSockets.js cannot serve TLS and plain connections on one port (Traefik peeks at the first
 * bytes; uWS picks App or SSLApp per listener), so every entry point is one or the other, decided here.
 */
import { Problems, keyPath, unknownName, closest } from './errors.js';
import type { RuleNode } from './rule-ast.js';
import { defaultCertificate } from './default-certificate.js';
import type { CertificateSpec, EntryPointSpec, RouterSpec, Snapshot, TlsOptionsSpec } from './snapshot.js';
import type { CheckedConfig } from './validate.js';
import { formatHostPort } from '../shared/address.js';

type MutableEntryPoint = { -readonly [K in keyof EntryPointSpec]: EntryPointSpec[K] };

/** What validation hands over for tls.options and the `options` of a router's or entry point's tls. */
interface TlsOptionsConfig {
  minVersion?: string;
  maxVersion?: string;
  cipherSuites?: string[];
  sniStrict?: boolean;
}
type TlsRef = { options?: string } | undefined;
type TlsConfig = CheckedConfig & { tls?: { options?: Record<string, TlsOptionsConfig> } };

/** Entry points Traefik users expect to serve TLS when no entry point says so. */
const CONVENTIONAL_TLS_NAMES = ['websecure'];
const CONVENTIONAL_TLS_PORTS = [443, 8443];

/**
 * Marks the entry points that terminate TLS, and why (EntryPointSpec.tlsBy). One that sets `http.tls` is
 * marked already. A TLS router that lists entry points makes them TLS (Traefik's model). When no entry point
 * sets `http.tls` and a TLS router lists none, the entry points named `websecure` or on port 443 or 8443 serve
 * TLS, unless a plain router lists one of them by name (then it wanted that one plain).
 */
export function decideTlsEntryPoints(config: CheckedConfig, entryPoints: MutableEntryPoint[]): void {
  const routers = Object.values(config.http?.routers ?? {});
  for (const router of routers) {
    if (router.tls === undefined) continue;
    for (const name of router.entryPoints ?? []) {
      const ep = entryPoints.find((e) => e.name === name);
      if (ep !== undefined && !ep.tls) {
        ep.tls = true;
        ep.tlsBy = 'router';
      }
    }
  }
  const saysSo = entryPoints.some((ep) => ep.tlsBy === 'http.tls');
  const needsHome = routers.some((r) => r.tls !== undefined && r.entryPoints === undefined);
  if (saysSo || !needsHome) return;
  const wantedPlain = new Set(routers.filter((r) => r.tls === undefined).flatMap((r) => r.entryPoints ?? []));
  for (const ep of entryPoints) {
    if (ep.tls || wantedPlain.has(ep.name)) continue;
    if (CONVENTIONAL_TLS_NAMES.includes(ep.name) || CONVENTIONAL_TLS_PORTS.includes(ep.port)) {
      ep.tls = true;
      ep.tlsBy = 'convention';
    }
  }
}

/** The problem of a TLS router no entry point can take: both ways to fix it. */
export const NO_TLS_ENTRY_POINT =
  'TLS router has no TLS entry point to listen on: no entry point sets http.tls, and none is named websecure or listens on port 443 or 8443 ' +
  '(expected entryPoints.<name>.http.tls: {} on the entry point to serve it, or entryPoints: [<name>] on this router)';

// --- TLS options -------------------------------------------------------------------------------------------

/** Go's cipher suite names (as Traefik takes them) → the TLS library's names; null: not in the library. */
const CIPHER_SUITES: Readonly<Record<string, string | null>> = {
  TLS_RSA_WITH_RC4_128_SHA: null,
  TLS_RSA_WITH_3DES_EDE_CBC_SHA: 'DES-CBC3-SHA',
  TLS_RSA_WITH_AES_128_CBC_SHA: 'AES128-SHA',
  TLS_RSA_WITH_AES_256_CBC_SHA: 'AES256-SHA',
  TLS_RSA_WITH_AES_128_CBC_SHA256: null,
  TLS_RSA_WITH_AES_128_GCM_SHA256: 'AES128-GCM-SHA256',
  TLS_RSA_WITH_AES_256_GCM_SHA384: 'AES256-GCM-SHA384',
  TLS_ECDHE_ECDSA_WITH_RC4_128_SHA: null,
  TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA: 'ECDHE-ECDSA-AES128-SHA',
  TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA: 'ECDHE-ECDSA-AES256-SHA',
  TLS_ECDHE_RSA_WITH_RC4_128_SHA: null,
  TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA: null,
  TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA: 'ECDHE-RSA-AES128-SHA',
  TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA: 'ECDHE-RSA-AES256-SHA',
  TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256: null,
  TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256: null,
  TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256: 'ECDHE-RSA-AES128-GCM-SHA256',
  TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256: 'ECDHE-ECDSA-AES128-GCM-SHA256',
  TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384: 'ECDHE-RSA-AES256-GCM-SHA384',
  TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384: 'ECDHE-ECDSA-AES256-GCM-SHA384',
  TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305: 'ECDHE-RSA-CHACHA20-POLY1305',
  TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256: 'ECDHE-RSA-CHACHA20-POLY1305',
  TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305: 'ECDHE-ECDSA-CHACHA20-POLY1305',
  TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256: 'ECDHE-ECDSA-CHACHA20-POLY1305',
};
/** TLS 1.3 suites are always on (not configurable in Go either); TLS_FALLBACK_SCSV is a signal, not a suite. */
const ALWAYS_ON = new Set(['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256', 'TLS_FALLBACK_SCSV']);

const BUILT_IN_OPTIONS: TlsOptionsSpec = { name: 'default', ciphers: '', sniStrict: false };

/** Every set in tls.options, checked (problems at their keys), by name; 'default' always exists. */
export function compileTlsOptionSets(config: CheckedConfig, problems: Problems): Map<string, TlsOptionsSpec> {
  const sets = new Map<string, TlsOptionsSpec>([['default', BUILT_IN_OPTIONS]]);
  for (const [name, options] of Object.entries((config as TlsConfig).tls?.options ?? {})) {
    const path = keyPath('tls.options', name);
    checkVersions(options, path, problems);
    sets.set(name, { name, ciphers: compileCiphers(options.cipherSuites, keyPath(path, 'cipherSuites'), problems), sniStrict: options.sniStrict ?? false });
  }
  return sets;
}

function checkVersions(options: TlsOptionsConfig, path: string, problems: Problems): void {
  const legacy = 'the TLS library under uWebSockets.js never serves TLS 1.0 or 1.1';
  if (options.minVersion === 'VersionTLS10' || options.minVersion === 'VersionTLS11') {
    problems.add(keyPath(path, 'minVersion'), `'${options.minVersion}' is refused: ${legacy}, its minimum is TLS 1.2 (expected VersionTLS12)`);
  } else if (options.minVersion === 'VersionTLS13') {
    problems.add(keyPath(path, 'minVersion'), "'VersionTLS13' cannot be honoured: this uWebSockets.js build has no setting for the lowest TLS version and always accepts TLS 1.2 (expected VersionTLS12)");
  }
  if (options.maxVersion === 'VersionTLS10' || options.maxVersion === 'VersionTLS11') {
    problems.add(keyPath(path, 'maxVersion'), `'${options.maxVersion}' is refused: ${legacy} (expected VersionTLS13)`);
  } else if (options.maxVersion === 'VersionTLS12') {
    problems.add(keyPath(path, 'maxVersion'), "'VersionTLS12' cannot be honoured: this uWebSockets.js build cannot turn TLS 1.3 off (expected VersionTLS13)");
  }
}

/** Go suite names → an ssl_ciphers string ('' = the library's defaults). */
function compileCiphers(suites: readonly string[] | undefined, path: string, problems: Problems): string {
  if (suites === undefined) return '';
  const names: string[] = [];
  let tls13 = 0;
  suites.forEach((suite, i) => {
    const at = `${path}[${i}]`;
    if (ALWAYS_ON.has(suite)) {
      tls13++;
      return;
    }
    if (!Object.hasOwn(CIPHER_SUITES, suite)) {
      const suggestion = closest(suite, [...Object.keys(CIPHER_SUITES), ...ALWAYS_ON]);
      problems.add(at, `unknown cipher suite '${suite}'${suggestion === undefined ? '' : `: did you mean '${suggestion}'?`} (expected a Go cipher suite name such as TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)`);
      return;
    }
    const name = CIPHER_SUITES[suite];
    if (name === null || name === undefined) {
      problems.add(at, `cipher suite '${suite}' is not available in the TLS library under uWebSockets.js (BoringSSL) (expected an AEAD or CBC-SHA suite, e.g. TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)`);
      return;
    }
    if (!names.includes(name)) names.push(name);
  });
  if (names.length === 0 && tls13 === suites.length && tls13 > 0) {
    problems.add(path, 'names only TLS 1.3 suites, which are always on: TLS 1.2 clients would find no cipher (expected at least one TLS 1.2 suite, or no cipherSuites)');
  }
  return names.join(':');
}

/**
 * The TLS options of each TLS entry point: the set its `http.tls.options` names, or the one its TLS routers
 * name, or 'default'. uWebSockets.js fixes TLS settings per listener, so two different sets on one entry
 * point are an error naming both.
 */
export function assignTlsOptions(
  config: CheckedConfig,
  entryPoints: MutableEntryPoint[],
  routers: readonly RouterSpec[],
  sets: ReadonlyMap<string, TlsOptionsSpec>,
  problems: Problems,
): void {
  const routerConfigs = config.http?.routers ?? {};
  const reported = new Set<string>();
  entryPoints.forEach((ep, index) => {
    if (!ep.tls) {
      ep.tlsOptions = null;
      return;
    }
    const chosen: { name: string; path: string; who: string }[] = [];
    const epRef = (config.entryPoints?.[ep.name]?.http?.tls as TlsRef)?.options;
    const epPath = `${keyPath('entryPoints', ep.name)}.http.tls.options`;
    if (epRef !== undefined) chosen.push({ name: epRef, path: epPath, who: epPath });
    for (const router of routers) {
      if (!router.tls || !router.entryPoints.includes(index)) continue;
      const ref = (routerConfigs[router.name]?.tls as TlsRef)?.options;
      if (ref !== undefined) chosen.push({ name: ref, path: `${keyPath('http.routers', router.name)}.tls.options`, who: `router '${router.name}'` });
    }
    const first = chosen[0];
    let spec = sets.get('default')!;
    if (first !== undefined) {
      const name = stripFile(first.name);
      const found = sets.get(name);
      if (found !== undefined) spec = found;
      else if (!reported.has(first.path)) {
        reported.add(first.path);
        problems.add(first.path, unknownName('TLS options', first.name, [...sets.keys()], 'a name defined in tls.options'));
      }
      for (const other of chosen.slice(1)) {
        if (stripFile(other.name) === name || reported.has(other.path)) continue;
        reported.add(other.path);
        problems.add(
          other.path,
          `TLS options '${other.name}' differ from '${first.name}' (named by ${first.who}) on entry point '${ep.name}': uWebSockets.js fixes TLS settings per listener (expected the same tls.options on every TLS router of an entry point)`,
        );
      }
    }
    ep.tlsOptions = spec;
  });
}

function stripFile(name: string): string {
  return name.endsWith('@file') ? name.slice(0, -'@file'.length) : name;
}

// --- the default certificate -------------------------------------------------------------------------------

/** Host names a rule can match (Host arguments outside a negation), lowercased. */
export function ruleHostNames(node: RuleNode): string[] {
  switch (node.kind) {
    case 'and':
    case 'or':
      return [...ruleHostNames(node.left), ...ruleHostNames(node.right)];
    case 'not':
      return [];
    case 'matcher':
      return node.name === 'Host' ? node.args.map((a) => a.toLowerCase()) : [];
  }
}

function covers(certificate: CertificateSpec, host: string): boolean {
  return certificate.names.some((name) => {
    if (name === host) return true;
    if (!name.startsWith('*.')) return false;
    const suffix = name.slice(1);
    return host.endsWith(suffix) && host.indexOf('.') === host.length - suffix.length;
  });
}

/**
 * Adds the generated default certificate when a TLS entry point would otherwise have none, or when a TLS
 * router's host names are covered by no configured certificate; warns naming the host names. With
 * `tls.stores.default.defaultCertificate` the operator chose what unmatched names get: nothing is generated.
 */
export function addDefaultCertificate(
  config: CheckedConfig,
  entryPoints: readonly EntryPointSpec[],
  routers: readonly RouterSpec[],
  certificates: CertificateSpec[],
  problems: Problems,
): void {
  if (!entryPoints.some((ep) => ep.tls)) return;
  if (config.tls?.stores?.default?.defaultCertificate !== undefined) return;
  const uncovered: string[] = [];
  const routerNames: string[] = [];
  for (const router of routers) {
    if (!router.tls) continue;
    for (const host of ruleHostNames(router.ast)) {
      if (certificates.some((c) => covers(c, host)) || uncovered.includes(host)) continue;
      uncovered.push(host);
      if (!routerNames.includes(router.name)) routerNames.push(router.name);
    }
  }
  const declared = (config.tls?.certificates?.length ?? 0) > 0;
  if (declared && uncovered.length === 0) return;
  if (certificates.length === 0 && declared) return; // the declared files failed to load: that is reported already
  const generated = defaultCertificate(uncovered);
  certificates.push(generated);
  const untrusted = 'which clients trust only when given it';
  if (uncovered.length === 0) {
    problems.warn('tls', `no certificate is configured: serving a self-signed certificate generated at start, for no host name, ${untrusted} (expected tls.certificates with certFile and keyFile)`);
    return;
  }
  const others = routerNames.slice(1);
  const also = others.length === 0 ? '' : ` (also for router${others.length === 1 ? '' : 's'} ${others.join(', ')})`;
  const names = uncovered.join(', ');
  problems.warn(
    `${keyPath('http.routers', routerNames[0]!)}.tls`,
    `no certificate in tls.certificates covers ${names}${also}: serving a self-signed certificate generated at start for ${uncovered.length === 1 ? 'it' : 'them'}, ${untrusted} (expected tls.certificates with certFile and keyFile for ${names})`,
  );
}

// --- the startup summary -----------------------------------------------------------------------------------

const TLS_BY: Readonly<Record<EntryPointSpec['tlsBy'], string>> = {
  '': 'plain',
  'http.tls': 'TLS (http.tls)',
  router: 'TLS (a TLS router lists it)',
  convention: "TLS (Traefik's convention for websecure, :443 and :8443, as no entry point sets http.tls)",
};

/** One line per entry point: TLS or plain and why, and the routers it serves with and without TLS. */
export function describeEntryPointRouting(snapshot: Snapshot): string[] {
  return snapshot.entryPoints.map((ep, index) => {
    const served = snapshot.routers.filter((r) => r.entryPoints.includes(index));
    const list = (tls: boolean): string => served.filter((r) => r.tls === tls).map((r) => r.name).join(', ') || 'none';
    const options = ep.tlsOptions !== null && ep.tlsOptions.name !== 'default' ? `, tls.options ${ep.tlsOptions.name}` : '';
    return `entry point ${ep.name} (${formatHostPort(ep.host, ep.port)}) is ${TLS_BY[ep.tlsBy]}${options}: with TLS ${list(true)}; without TLS ${list(false)}`;
  });
}
