/**
 * Traefik's stripPrefix: removes the first configured prefix the path starts with, keeps a leading slash,
 * and tells the backend what was removed in X-Forwarded-Prefix.
 */
import type { StripPrefixSpec } from '../config/middleware-spec.js';
import type { Exchange, Middleware } from './chain.js';

export class StripPrefix implements Middleware {
  readonly name: string;
  private readonly prefixes: readonly string[];

  constructor(spec: StripPrefixSpec) {
    this.name = spec.name;
    this.prefixes = spec.prefixes;
  }

  handle(exchange: Exchange): void {
    const request = exchange.request;
    for (const prefix of this.prefixes) {
      if (!request.path.startsWith(prefix)) continue;
      request.setPath(ensureLeadingSlash(request.path.slice(prefix.length)));
      request.addHeader('x-forwarded-prefix', prefix);
      break;
    }
    exchange.next();
  }
}

export function ensureLeadingSlash(path: string): string {
  return path.startsWith('/') ? path : `/${path}`;
}
