/**
 * Traefik's forwardAuth: before a request (or upgrade) goes on, a GET with its headers and X-Forwarded-Method,
 * -Proto, -Host, -Uri, -For goes to the authentication service. A 2xx answer lets the request go on, with the
 * authResponseHeaders copied onto it (replacing whatever the client sent under those names) and the named
 * cookies added to the client's response; any other answer (401, a 302 to a login page…) goes back to the
 * client as it came, and nothing reaches the backend. An unreachable service is a 500, as in Traefik.
 *
 * Per-generation state: one undici keep-alive pool to the service, made on first use and closed with the
 * generation.
 */
import { Pool } from 'undici';
import type { ForwardAuthSpec } from '../config/middleware-spec.js';
import type { Exchange, Middleware } from './chain.js';
import { compileRegex } from './regex.js';

/** An authentication answer's body is relayed up to this size (a login page, an error text). */
const MAX_BODY = 1024 * 1024;
/** Time allowed for the service's answer. */
const TIMEOUT_MS = 30_000;

/** Headers that describe the hop to the service, or that Sluice sets itself: never copied either way. */
const NOT_COPIED = new Set([
  'connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade',
  'host', 'content-length', 'date',
  'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'x-forwarded-server', 'x-forwarded-uri', 'x-forwarded-method', 'x-real-ip',
]);

export class ForwardAuth implements Middleware {
  readonly name: string;
  private readonly spec: ForwardAuthSpec;
  private readonly responseRegex: RegExp | null;
  private pool: Pool | null = null;

  constructor(spec: ForwardAuthSpec) {
    this.name = spec.name;
    this.spec = spec;
    this.responseRegex = spec.authResponseHeadersRegex === null ? null : compileRegex(spec.authResponseHeadersRegex);
  }

  handle(exchange: Exchange): void {
    this.ask(exchange).catch(() => {
      if (!exchange.aborted) exchange.respond(500, [['content-type', 'text/plain; charset=utf-8']], `500 Internal Server Error: authentication service of middleware '${this.name}' is unreachable\n`);
    });
  }

  private async ask(exchange: Exchange): Promise<void> {
    const answer = await this.connection().request({
      path: this.spec.path,
      method: 'GET',
      headers: this.authRequestHeaders(exchange),
      headersTimeout: TIMEOUT_MS,
      bodyTimeout: TIMEOUT_MS,
    });
    if (answer.statusCode >= 200 && answer.statusCode < 300) {
      await answer.body.dump();
      if (exchange.aborted) return;
      this.admit(exchange, answer.headers);
      return;
    }
    const body = await readLimited(answer.body);
    if (exchange.aborted) return;
    const headers: [string, string][] = [];
    for (const [name, value] of Object.entries(answer.headers)) {
      if (value === undefined || NOT_COPIED.has(name)) continue;
      if (name === 'location') {
        // Relative to the service, as Go's Response.Location() resolves it.
        headers.push([name, new URL(String(value), this.spec.origin + this.spec.path).toString()]);
        continue;
      }
      for (const v of Array.isArray(value) ? value : [value]) headers.push([name, v]);
    }
    exchange.respond(answer.statusCode, headers, body);
  }

  private admit(exchange: Exchange, headers: Record<string, string | string[] | undefined>): void {
    const request = exchange.request;
    const copy = (name: string): void => {
      request.removeHeader(name);
      const value = headers[name];
      if (value === undefined) return;
      for (const v of Array.isArray(value) ? value : [value]) request.addHeader(name, v);
    };
    for (const name of this.spec.authResponseHeaders) copy(name);
    if (this.responseRegex !== null) {
      for (const name of Object.keys(headers)) if (this.responseRegex.test(name)) copy(name);
    }
    if (this.spec.addAuthCookiesToResponse.length > 0) {
      const cookies = headers['set-cookie'];
      for (const cookie of Array.isArray(cookies) ? cookies : cookies === undefined ? [] : [cookies]) {
        const name = cookie.slice(0, cookie.indexOf('=')).trim();
        if (this.spec.addAuthCookiesToResponse.includes(name)) exchange.responseHeaders.add('set-cookie', cookie);
      }
    }
    exchange.next();
  }

  /** The request's headers (all, or authRequestHeaders only) and the X-Forwarded-* that describe it. */
  private authRequestHeaders(exchange: Exchange): string[] {
    const request = exchange.request;
    const only = this.spec.authRequestHeaders;
    const out: string[] = [];
    const h = request.headers;
    for (let i = 0; i < h.length; i += 2) {
      const name = h[i]!;
      if (NOT_COPIED.has(name) || (only.length > 0 && !only.includes(name))) continue;
      out.push(name, h[i + 1]!);
    }
    const trusted = (name: string): string => {
      if (!this.spec.trustForwardHeader) return '';
      const f = request.clientForwarded;
      for (let i = 0; i < f.length; i += 2) if (f[i] === name) return f[i + 1]!;
      return '';
    };
    const priorFor = trusted('x-forwarded-for');
    out.push('x-forwarded-for', priorFor === '' ? request.clientIp : `${priorFor}, ${request.clientIp}`);
    out.push('x-forwarded-method', trusted('x-forwarded-method') || request.method);
    out.push('x-forwarded-proto', trusted('x-forwarded-proto') || request.scheme);
    const host = trusted('x-forwarded-host') || request.host;
    if (host !== '') out.push('x-forwarded-host', host);
    out.push('x-forwarded-port', trusted('x-forwarded-port') || String(request.port));
    out.push('x-forwarded-uri', trusted('x-forwarded-uri') || request.url);
    return out;
  }

  private connection(): Pool {
    if (this.pool === null) {
      const tls = this.spec.tls;
      this.pool = new Pool(this.spec.origin, {
        connect:
          tls === null
            ? { timeout: TIMEOUT_MS }
            : {
                timeout: TIMEOUT_MS,
                rejectUnauthorized: !tls.insecureSkipVerify,
                ...(tls.ca !== '' ? { ca: tls.ca } : {}),
                ...(tls.cert !== '' ? { cert: tls.cert, key: tls.key } : {}),
              },
      });
    }
    return this.pool;
  }

  close(): void {
    this.pool?.destroy().catch(() => undefined);
    this.pool = null;
  }
}

async function readLimited(body: AsyncIterable<Uint8Array> & { destroy(): unknown }): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of body) {
    if (size + chunk.length > MAX_BODY) {
      chunks.push(chunk.subarray(0, MAX_BODY - size));
      body.destroy();
      break;
    }
    chunks.push(chunk);
    size += chunk.length;
  }
  return Buffer.concat(chunks);
}

