/** Traefik's addPrefix: the configured prefix goes in front of the path. */
import type { AddPrefixSpec } from '../config/middleware-spec.js';
import type { Exchange, Middleware } from './chain.js';

export class AddPrefix implements Middleware {
  readonly name: string;
  private readonly prefix: string;

  constructor(spec: AddPrefixSpec) {
    this.name = spec.name;
    this.prefix = spec.prefix;
  }

  handle(exchange: Exchange): void {
    const request = exchange.request;
    request.setPath(this.prefix + request.path);
    exchange.next();
  }
}
