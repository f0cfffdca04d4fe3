/**
 * Traefik's replacePath: the path becomes the configured one (the query stays); the backend gets the
 * original path in X-Replaced-Path. The usual use: a Socket.IO app mounted under /wsk whose server expects
 * /socket.io/.
 */
import type { ReplacePathSpec } from '../config/middleware-spec.js';
import type { Exchange, Middleware } from './chain.js';

export class ReplacePath implements Middleware {
  readonly name: string;
  private readonly path: string;

  constructor(spec: ReplacePathSpec) {
    this.name = spec.name;
    this.path = spec.path;
  }

  handle(exchange: Exchange): void {
    const request = exchange.request;
    request.setHeader('x-replaced-path', request.path);
    request.setPath(this.path);
    exchange.next();
  }
}
