/**
 * Traefik's basicAuth: a request (or upgrade) goes on only with `Authorization: Basic` credentials that
 * match a user's htpasswd hash (htpasswd.ts); otherwise 401 with `WWW-Authenticate: Basic realm="…"`, and
 * nothing reaches the backend. removeHeader drops the Authorization header before the backend; headerField
 * passes the user name on.
 *
 * Per-generation state: the credentials that passed, so that a bcrypt check (tens of milliseconds of CPU)
 * is paid once per user and password, not per request — Socket.IO's long-polling repeats the same header
 * every few seconds. The cache is keyed by a SHA-256 of the header (no password is kept), bounded, and
 * dropped with the generation; failures are never cached.
 */
import { createHash } from 'node:crypto';
import type { BasicAuthSpec } from '../config/middleware-spec.js';
import type { Exchange, Middleware } from './chain.js';
import { verifyPassword } from './htpasswd.js';

/** Credentials remembered per generation (oldest dropped first). */
const CACHE_SIZE = 1024;

export class BasicAuth implements Middleware {
  readonly name: string;
  private readonly users: ReadonlyMap<string, string>;
  private readonly challenge: string;
  private readonly removeHeader: boolean;
  private readonly headerField: string;
  /** SHA-256 of an Authorization header that passed → the user it names. */
  private readonly passed = new Map<string, string>();

  constructor(spec: BasicAuthSpec) {
    this.name = spec.name;
    this.users = new Map(spec.users);
    this.challenge = `Basic realm="${spec.realm.replaceAll('"', '\\"')}"`;
    this.removeHeader = spec.removeHeader;
    this.headerField = spec.headerField;
  }

  handle(exchange: Exchange): void {
    const header = exchange.request.header('authorization');
    if (header === '') {
      this.refuse(exchange);
      return;
    }
    const key = createHash('sha256').update(header).digest('base64');
    const known = this.passed.get(key);
    if (known !== undefined) {
      this.admit(exchange, known);
      return;
    }
    const credentials = parseBasic(header);
    const hash = credentials === null ? undefined : this.users.get(credentials.user);
    if (credentials === null || hash === undefined) {
      this.refuse(exchange);
      return;
    }
    verifyPassword(credentials.password, hash).then(
      (ok) => {
        if (exchange.aborted) return;
        if (!ok) {
          this.refuse(exchange);
          return;
        }
        if (this.passed.size >= CACHE_SIZE) this.passed.delete(this.passed.keys().next().value!);
        this.passed.set(key, credentials.user);
        this.admit(exchange, credentials.user);
      },
      () => {
        if (!exchange.aborted) this.refuse(exchange);
      },
    );
  }

  private admit(exchange: Exchange, user: string): void {
    if (this.removeHeader) exchange.request.removeHeader('authorization');
    if (this.headerField !== '') exchange.request.setHeader(this.headerField, user);
    exchange.next();
  }

  private refuse(exchange: Exchange): void {
    exchange.respond(401, [['www-authenticate', this.challenge], ['content-type', 'text/plain; charset=utf-8']], '401 Unauthorized\n');
  }
}

/** `Basic base64(user:password)` → its parts; null when it is not that. */
function parseBasic(header: string): { user: string; password: string } | null {
  if (header.length < 7 || header.slice(0, 6).toLowerCase() !== 'basic ') return null;
  const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return null;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}
