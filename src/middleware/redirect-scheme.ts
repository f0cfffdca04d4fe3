/**
 * Traefik's redirectScheme: a request whose scheme (and port) differ from the configured ones is redirected
 * to the same host and path with them; one that already matches goes on. The port is left out when it is the
 * scheme's default (80, 443).
 */
import type { RedirectSchemeSpec } from '../config/middleware-spec.js';
import type { ProxyRequest } from '../worker/http-request.js';
import type { Exchange, Middleware } from './chain.js';
import { redirect } from './redirect-regex.js';

export class RedirectScheme implements Middleware {
  readonly name: string;
  private readonly scheme: string;
  /** ':port', or '' for the scheme's default. */
  private readonly port: string;
  private readonly permanent: boolean;

  constructor(spec: RedirectSchemeSpec) {
    this.name = spec.name;
    this.scheme = spec.scheme;
    const defaultPort = (spec.scheme === 'http' && spec.port === '80') || (spec.scheme === 'https' && spec.port === '443');
    this.port = spec.port === '' || defaultPort ? '' : `:${spec.port}`;
    this.permanent = spec.permanent;
  }

  handle(exchange: Exchange): void {
    const request = exchange.request;
    const { host } = splitHost(request.host);
    const location = `${this.scheme}://${host}${this.port}${request.url}`;
    if (location === currentUrl(request)) exchange.next();
    else redirect(exchange, location, this.permanent);
  }
}

/** Host and ':port' of a Host header ('' when it names no port). */
function splitHost(hostHeader: string): { host: string; port: string } {
  const end = hostHeader.startsWith('[') ? hostHeader.indexOf(']') + 1 : 0;
  const colon = hostHeader.indexOf(':', end);
  if (colon < 0) return { host: hostHeader, port: '' };
  return { host: hostHeader.slice(0, colon), port: hostHeader.slice(colon) };
}

/** The request's own URL the way Traefik writes it for this comparison: default ports left out. */
function currentUrl(request: ProxyRequest): string {
  const scheme = request.tls ? 'https' : 'http';
  const { host, port } = splitHost(request.host);
  const shown = (scheme === 'http' && port === ':80') || (scheme === 'https' && port === ':443') ? '' : port;
  return `${scheme}://${host}${shown}${request.url}`;
}
