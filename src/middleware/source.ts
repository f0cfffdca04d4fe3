/**
 * Traefik's sourceCriterion and ipStrategy: what makes requests one source for inFlightReq and rateLimit, and
 * which address ipAllowList checks. The client's IP is the one real-client.ts settled on (PROXY protocol and
 * trusted X-Forwarded-For already applied); `depth` and `excludedIPs` read X-Forwarded-For as a trusted peer
 * sent it (from an untrusted peer there is none, as in Traefik, whose entry point drops it).
 */
import type { IpStrategySpec, SourceSpec } from '../config/limits-spec.js';
import type { ProxyRequest } from '../worker/http-request.js';
import { CidrList, ipv6Network } from '../shared/cidr.js';
import { bareAddress } from '../worker/real-client.js';

export class IpStrategy {
  private readonly depth: number;
  private readonly excluded: CidrList | null;
  private readonly ipv6Subnet: number;
  private readonly scratch = new Uint32Array(4);

  constructor(spec: IpStrategySpec) {
    this.depth = spec.depth;
    this.excluded = spec.excludedIPs.length === 0 ? null : new CidrList(spec.excludedIPs);
    this.ipv6Subnet = spec.ipv6Subnet;
  }

  /** The client address by this strategy, '' when X-Forwarded-For has none to give. */
  addressOf(request: ProxyRequest): string {
    let address: string;
    if (this.depth > 0) address = fromRight(request.trustedForwardedFor, this.depth);
    else if (this.excluded !== null) address = firstNotExcluded(request.trustedForwardedFor, this.excluded);
    else address = request.clientIp;
    return this.ipv6Subnet > 0 && address !== '' ? ipv6Network(address, this.ipv6Subnet, this.scratch) : address;
  }
}

/** The `depth`-th address from the right of a comma-separated header ('' when it has fewer). */
function fromRight(header: string, depth: number): string {
  let end = header.length;
  for (let n = 1; end > 0; n++) {
    const comma = header.lastIndexOf(',', end - 1);
    if (n === depth) return bareAddress(header.slice(comma + 1, end).trim());
    end = comma < 0 ? 0 : comma;
  }
  return '';
}

function firstNotExcluded(header: string, excluded: CidrList): string {
  let end = header.length;
  while (end > 0) {
    const comma = header.lastIndexOf(',', end - 1);
    const address = bareAddress(header.slice(comma + 1, end).trim());
    if (!excluded.contains(address)) return address;
    end = comma < 0 ? 0 : comma;
  }
  return '';
}

/** The source key of a request: the client's address by ipStrategy, a header's value, or the Host. */
export class SourceKey {
  private readonly kind: SourceSpec['kind'];
  private readonly header: string;
  private readonly ip: IpStrategy;

  constructor(spec: SourceSpec) {
    this.kind = spec.kind;
    this.header = spec.header;
    this.ip = new IpStrategy(spec.ipStrategy);
  }

  of(request: ProxyRequest): string {
    switch (this.kind) {
      case 'header':
        return request.header(this.header);
      case 'host':
        return request.host;
      default:
        return this.ip.addressOf(request);
    }
  }
}
