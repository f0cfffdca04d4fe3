/**
 * Traefik's stripPrefixRegex: removes the start of the path that the first matching expression matches
 * there, keeps a leading slash, and sends the removed part in X-Forwarded-Prefix.
 */
import type { StripPrefixRegexSpec } from '../config/middleware-spec.js';
import type { Exchange, Middleware } from './chain.js';
import { compileRegex } from './regex.js';
import { ensureLeadingSlash } from './strip-prefix.js';

export class StripPrefixRegex implements Middleware {
  readonly name: string;
  private readonly expressions: readonly RegExp[];

  constructor(spec: StripPrefixRegexSpec) {
    this.name = spec.name;
    this.expressions = spec.regex.map((r) => compileRegex(r));
  }

  handle(exchange: Exchange): void {
    const request = exchange.request;
    for (const re of this.expressions) {
      const match = re.exec(request.path);
      if (match === null || match.index !== 0) continue;
      const prefix = match[0];
      request.setPath(ensureLeadingSlash(request.path.slice(prefix.length)));
      request.addHeader('x-forwarded-prefix', prefix);
      break;
    }
    exchange.next();
  }
}
