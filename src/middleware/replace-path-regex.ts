/**
 * Traefik's replacePathRegex: when the path matches, every match is replaced with the replacement (Go's
 * template syntax, $1 or ${name}); the backend gets the original path in X-Replaced-Path.
 */
import type { ReplacePathRegexSpec } from '../config/middleware-spec.js';
import type { Exchange, Middleware } from './chain.js';
import { compileRegex, replaceAll } from './regex.js';

export class ReplacePathRegex implements Middleware {
  readonly name: string;
  private readonly re: RegExp;
  private readonly replacement: string;

  constructor(spec: ReplacePathRegexSpec) {
    this.name = spec.name;
    this.re = compileRegex(spec.regex, true);
    this.replacement = spec.replacement;
  }

  handle(exchange: Exchange): void {
    const request = exchange.request;
    this.re.lastIndex = 0;
    if (this.re.test(request.path)) {
      request.setHeader('x-replaced-path', request.path);
      request.setPath(replaceAll(this.re, request.path, this.replacement));
    }
    exchange.next();
  }
}
