/**
 * Traefik's redirectRegex: the request URL (scheme://host/path?query, scheme from the entry point's TLS) is
 * matched against the expression; when the replacement changes it, the client is redirected there
 * (302, or 307 for methods other than GET; 301/308 with permanent), with the status text as the body.
 */
import { STATUS_CODES } from 'node:http';
import type { RedirectRegexSpec } from '../config/middleware-spec.js';
import type { ProxyRequest } from '../worker/http-request.js';
import type { Exchange, Middleware } from './chain.js';
import { compileRegex, replaceAll } from './regex.js';

export class RedirectRegex implements Middleware {
  readonly name: string;
  private readonly re: RegExp;
  private readonly replacement: string;
  private readonly permanent: boolean;

  constructor(spec: RedirectRegexSpec) {
    this.name = spec.name;
    this.re = compileRegex(spec.regex, true);
    this.replacement = spec.replacement;
    this.permanent = spec.permanent;
  }

  handle(exchange: Exchange): void {
    const old = rawUrl(exchange.request);
    this.re.lastIndex = 0;
    if (!this.re.test(old)) {
      exchange.next();
      return;
    }
    const location = replaceAll(this.re, old, this.replacement);
    if (location === old) exchange.next();
    else redirect(exchange, location, this.permanent);
  }
}

/** The URL Traefik matches: scheme from the entry point's TLS, Host as sent, path and query as sent. */
export function rawUrl(request: ProxyRequest): string {
  return `${request.tls ? 'https' : 'http'}://${request.host}${request.url}`;
}

/** Traefik's redirect answer: 302/307, or 301/308 when permanent (the 30x that keeps the method for non-GET). */
export function redirect(exchange: Exchange, location: string, permanent: boolean): void {
  const get = exchange.request.method === 'GET';
  const status = permanent ? (get ? 301 : 308) : get ? 302 : 307;
  exchange.respond(status, [['location', location], ['content-type', 'text/plain; charset=utf-8']], STATUS_CODES[status] ?? '');
}
