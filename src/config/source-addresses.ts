/**
 * `serversTransports.<name>.sourceAddresses`: the local addresses upstream connections leave from. Written as
 * IP addresses or IPv4 ranges `first-last`; compiled to the plain list of addresses the workers rotate
 * through (src/worker/backend-leg.ts sourceAddressFor).
 */
import net from 'node:net';
import { indexPath, type Problems } from './errors.js';

/** Largest range accepted: more addresses than this would only cost memory in every worker. */
const MAX_RANGE = 4096;

function ipv4ToNumber(ip: string): number {
  return ip.split('.').reduce((n, part) => n * 256 + Number(part), 0);
}

function numberToIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

export function compileSourceAddresses(entries: readonly string[], path: string, problems: Problems): string[] {
  const out: string[] = [];
  entries.forEach((entry, i) => {
    const at = indexPath(path, i);
    const text = entry.trim();
    const dash = text.indexOf('-');
    if (dash < 0) {
      if (net.isIP(text) === 0) problems.add(at, `invalid address '${entry}' (expected an IP address such as "10.0.0.2", or an IPv4 range "10.0.0.2-10.0.0.9")`);
      else out.push(text);
      return;
    }
    const first = text.slice(0, dash).trim();
    const last = text.slice(dash + 1).trim();
    if (!net.isIPv4(first) || !net.isIPv4(last)) {
      problems.add(at, `invalid range '${entry}' (expected two IPv4 addresses "first-last", such as "10.0.0.2-10.0.0.9")`);
      return;
    }
    const from = ipv4ToNumber(first);
    const to = ipv4ToNumber(last);
    if (to < from) {
      problems.add(at, `invalid range '${entry}': ${last} comes before ${first} (expected "first-last" in ascending order)`);
      return;
    }
    if (to - from + 1 > MAX_RANGE) {
      problems.add(at, `range '${entry}' holds ${to - from + 1} addresses (expected at most ${MAX_RANGE})`);
      return;
    }
    for (let n = from; n <= to; n++) out.push(numberToIpv4(n));
  });
  return out;
}
