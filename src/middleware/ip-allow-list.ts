/**
 * Traefik's ipAllowList: only clients whose address (by ipStrategy) is in sourceRange go on; the rest get
 * rejectStatusCode (403). An ipStrategy that finds no address in X-Forwarded-For refuses, as Traefik does.
 */
import { STATUS_CODES } from 'node:http';
import type { IpAllowListSpec } from '../config/middleware-spec.js';
import { LimitReason } from '../shared/metrics-plan.js';
import { CidrList } from '../shared/cidr.js';
import type { Exchange, Middleware } from './chain.js';
import { IpStrategy } from './source.js';

const TEXT = [['content-type', 'text/plain; charset=utf-8']] as const;

export class IpAllowList implements Middleware {
  readonly name: string;
  private readonly allowed: CidrList;
  private readonly strategy: IpStrategy;
  private readonly status: number;
  private readonly body: string;

  constructor(spec: IpAllowListSpec) {
    this.name = spec.name;
    this.allowed = new CidrList(spec.sourceRange);
    this.strategy = new IpStrategy(spec.ipStrategy);
    this.status = spec.rejectStatusCode;
    this.body = `${STATUS_CODES[spec.rejectStatusCode] ?? 'Forbidden'}\n`;
  }

  handle(exchange: Exchange): void {
    const address = this.strategy.addressOf(exchange.request);
    if (address !== '' && this.allowed.contains(address)) exchange.next();
    else exchange.refuse(LimitReason.IpNotAllowed, this.status, TEXT, this.body);
  }
}
