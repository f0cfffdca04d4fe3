/**
 * How Sluice writes an address for people and for HTTP: `host:port` with IPv6 literals in brackets
 * (`[::1]:8080`), `*` for "every interface". One helper, so logs, the admin API, Host headers and
 * error messages agree.
 */

/** `[v6]` or the host as it is. */
export function bracketHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/** `host:port`, `[v6]:port`; an empty host (all interfaces) is written `*` unless `emptyAs` says otherwise. */
export function formatHostPort(host: string, port: number, emptyAs = '*'): string {
  return `${host === '' ? emptyAs : bracketHost(host)}:${port}`;
}
