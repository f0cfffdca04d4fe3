/**
 * Traefik's headers middleware: custom request headers (an empty value removes one; Host sets the Host),
 * custom response headers, CORS (a preflight — OPTIONS with Origin and Access-Control-Request-Method — is
 * answered here with the Access-Control-* headers and never reaches the backend; other responses get
 * Access-Control-Allow-Origin when the origin is allowed), and the fixed security headers (X-Frame-Options,
 * Content-Security-Policy, Strict-Transport-Security on TLS requests, …).
 */
import type { CorsSpec, HeadersSpec } from '../config/middleware-spec.js';
import type { Exchange, Middleware } from './chain.js';
import { compileRegex } from './regex.js';

export class Headers implements Middleware {
  readonly name: string;
  private readonly spec: HeadersSpec;
  private readonly cors: CorsSpec | null;
  private readonly originRegex: readonly RegExp[];

  constructor(spec: HeadersSpec) {
    this.name = spec.name;
    this.spec = spec;
    this.cors = spec.cors;
    this.originRegex = (spec.cors?.allowOriginRegex ?? []).map((r) => compileRegex(r));
  }

  handle(exchange: Exchange): void {
    const request = exchange.request;
    const cors = this.cors;
    const origin = cors === null ? '' : request.header('origin');
    // A preflight is answered here: the backend never sees it (Traefik's behaviour).
    if (cors !== null && origin !== '' && request.method === 'OPTIONS' && request.header('access-control-request-method') !== '') {
      exchange.respond(200, this.preflightHeaders(cors, origin), '');
      return;
    }
    for (const [name, value] of this.spec.requestHeaders) request.setHeader(name, value);
    const response = exchange.responseHeaders;
    for (const [name, value] of this.spec.responseHeaders) response.set(name, value);
    for (const [name, value] of this.spec.securityHeaders) response.set(name, value);
    if (this.spec.sts !== '' && (request.tls || this.spec.forceSts)) response.set('strict-transport-security', this.spec.sts);
    if (cors !== null) {
      const allowed = this.allowedOrigin(cors, origin);
      if (allowed !== '') response.set('access-control-allow-origin', allowed);
      if (cors.allowCredentials) response.set('access-control-allow-credentials', 'true');
      if (cors.exposeHeaders !== '') response.set('access-control-expose-headers', cors.exposeHeaders);
      if (cors.addVary) response.add('vary', 'Origin');
    }
    exchange.next();
  }

  private preflightHeaders(cors: CorsSpec, origin: string): [string, string][] {
    const headers: [string, string][] = [];
    if (cors.allowCredentials) headers.push(['access-control-allow-credentials', 'true']);
    if (cors.allowHeaders !== '') headers.push(['access-control-allow-headers', cors.allowHeaders]);
    if (cors.allowMethods !== '') headers.push(['access-control-allow-methods', cors.allowMethods]);
    const allowed = this.allowedOrigin(cors, origin);
    if (allowed !== '') headers.push(['access-control-allow-origin', allowed]);
    headers.push(['access-control-max-age', String(cors.maxAge)]);
    if (cors.addVary) headers.push(['vary', 'Origin']);
    return headers;
  }

  /** What Access-Control-Allow-Origin says for `origin`: '*', the origin itself, or '' (not allowed). */
  private allowedOrigin(cors: CorsSpec, origin: string): string {
    for (const item of cors.allowOrigins) if (item === '*' || item === origin) return item;
    if (origin === '') return '';
    for (const re of this.originRegex) if (re.test(origin)) return origin;
    return '';
  }
}
