/**
 * IP addresses and CIDR ranges as Traefik's ipAllowList, ipStrategy.excludedIPs, proxyProtocol.trustedIPs and
 * forwardedHeaders.trustedIPs take them ("10.0.0.1", "10.0.0.0/8", "::1", "fd00::/8"), and the test of an
 * address against a list of them. Every address is held as 128 bits (four 32-bit words; IPv4 as the mapped
 * ::ffff:a.b.c.d), so an IPv4 client on a dual-stack listener matches an IPv4 range. Parsing an address
 * writes into a caller's scratch array: checking a request allocates nothing.
 */
import { isIPv4, isIPv6 } from 'node:net';

/** One range: its first address (masked) and prefix length, both on the 128-bit scale. */
export interface Cidr {
  readonly words: Uint32Array;
  readonly prefix: number;
}

/** Parse a dotted-quad IPv4 address into `out` (mapped form); false when it is not one. */
function parseV4(text: string, out: Uint32Array): boolean {
  let value = 0;
  let part = -1;
  let parts = 0;
  for (let i = 0; i <= text.length; i++) {
    const c = i < text.length ? text.charCodeAt(i) : 46;
    if (c === 46) {
      if (part < 0 || part > 255) return false;
      value = value * 256 + part;
      part = -1;
      parts++;
    } else if (c >= 48 && c <= 57) {
      part = part < 0 ? c - 48 : part * 10 + c - 48;
    } else return false;
  }
  if (parts !== 4) return false;
  out[0] = 0;
  out[1] = 0;
  out[2] = 0xffff;
  out[3] = value >>> 0;
  return true;
}

function parseV6(text: string, out: Uint32Array): boolean {
  if (!isIPv6(text)) return false;
  const zone = text.indexOf('%');
  const bare = zone < 0 ? text : text.slice(0, zone);
  const groups: number[] = [];
  const halves = bare.split('::');
  const parse = (s: string): number[] | null => {
    if (s === '') return [];
    const out16: number[] = [];
    for (const piece of s.split(':')) {
      if (piece.includes('.')) {
        const v4 = new Uint32Array(4);
        if (!parseV4(piece, v4)) return null;
        out16.push(v4[3]! >>> 16, v4[3]! & 0xffff);
      } else out16.push(parseInt(piece, 16));
    }
    return out16;
  };
  const head = parse(halves[0]!);
  const tail = halves.length > 1 ? parse(halves[1]!) : [];
  if (head === null || tail === null) return false;
  groups.push(...head);
  if (halves.length > 1) for (let i = head.length + tail.length; i < 8; i++) groups.push(0);
  groups.push(...tail);
  if (groups.length !== 8) return false;
  for (let w = 0; w < 4; w++) out[w] = ((groups[2 * w]! << 16) | groups[2 * w + 1]!) >>> 0;
  return true;
}

/** Parse an IPv4 or IPv6 address (no brackets, no port) into `out`; false when it is neither. */
export function parseAddress(text: string, out: Uint32Array): boolean {
  if (text.length === 0) return false;
  return text.includes(':') ? parseV6(text, out) : parseV4(text, out);
}

/** Parse "address" or "address/prefix"; a string saying what is wrong when it is invalid. */
export function parseCidr(text: string): Cidr | string {
  const trimmed = text.trim();
  const slash = trimmed.indexOf('/');
  const address = slash < 0 ? trimmed : trimmed.slice(0, slash);
  const words = new Uint32Array(4);
  const v4 = isIPv4(address);
  if (!v4 && !isIPv6(address)) return `'${text}' is not an IP address or CIDR range`;
  parseAddress(address, words);
  const width = v4 ? 32 : 128;
  let prefix = width;
  if (slash >= 0) {
    const bits = trimmed.slice(slash + 1);
    if (!/^\d{1,3}$/.test(bits)) return `'${text}' has an invalid prefix length`;
    if (Number(bits) > width) return `'${text}' has a prefix length over ${width}`;
    prefix = Number(bits);
  }
  const scaled = v4 ? prefix + 96 : prefix;
  maskInPlace(words, scaled);
  return { words, prefix: scaled };
}

function maskInPlace(words: Uint32Array, prefix: number): void {
  for (let w = 0; w < 4; w++) {
    const bits = Math.min(32, Math.max(0, prefix - w * 32));
    words[w] = bits === 0 ? 0 : bits === 32 ? words[w]! : (words[w]! & (0xffffffff << (32 - bits))) >>> 0;
  }
}

/** Whether the parsed address `words` lies in `cidr`. */
export function inCidr(words: Uint32Array, cidr: Cidr): boolean {
  const prefix = cidr.prefix;
  for (let w = 0; w < 4; w++) {
    const bits = Math.min(32, Math.max(0, prefix - w * 32));
    if (bits === 0) return true;
    const mask = bits === 32 ? 0xffffffff : (0xffffffff << (32 - bits)) >>> 0;
    if (((words[w]! & mask) >>> 0) !== cidr.words[w]) return false;
  }
  return true;
}

/** A list of ranges, tested against address text. */
export class CidrList {
  private readonly ranges: readonly Cidr[];
  private readonly scratch = new Uint32Array(4);

  /** `texts` were validated by compile (parseCidr); an invalid one would be skipped. */
  constructor(texts: readonly string[]) {
    this.ranges = texts.map(parseCidr).filter((c): c is Cidr => typeof c !== 'string');
  }

  get empty(): boolean {
    return this.ranges.length === 0;
  }

  /** Whether the address `text` is in one of the ranges (false for text that is not an address). */
  contains(text: string): boolean {
    if (!parseAddress(text, this.scratch)) return false;
    for (const range of this.ranges) if (inCidr(this.scratch, range)) return true;
    return false;
  }
}

/** `text` (an IPv6 address) with the bits past `prefix` cleared, as text; IPv4 and non-addresses unchanged. */
export function ipv6Network(text: string, prefix: number, scratch: Uint32Array): string {
  if (!text.includes(':') || !parseV6(text, scratch)) return text;
  maskInPlace(scratch, prefix);
  let out = '';
  for (let w = 0; w < 4; w++) out += `${w === 0 ? '' : ':'}${(scratch[w]! >>> 16).toString(16)}:${(scratch[w]! & 0xffff).toString(16)}`;
  return `${out}/${prefix}`;
}
