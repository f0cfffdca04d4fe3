/**
 * Turns a router rule's syntax tree into a plain `(input) => boolean` function, once per config snapshot.
 * Everything that can be computed from the rule alone (lowercased hosts, RegExp objects, CIDRs as numbers)
 * is computed here, so matching an upgrade request is comparisons only. The parser imports the regex and IP
 * helpers below so that a rule accepted at config time compiles the same way in every worker.
 */
import type { RouteInput, RuleNode } from '../config/rule-ast.js';

export type RouteMatcher = (input: RouteInput) => boolean;

/**
 * Compiles a rule regex the way Traefik users write them (Go RE2 syntax) into a JS RegExp. Only the two Go
 * idioms that are common in real rules are translated: a leading `(?i)` becomes the `i` flag and `(?P<name>`
 * becomes `(?<name>`. Throws SyntaxError when the result is not a valid JS regex.
 */
export function toRuleRegExp(source: string): RegExp {
  const named = source.replaceAll('(?P<', '(?<');
  return named.startsWith('(?i)') ? new RegExp(named.slice(4), 'i') : new RegExp(named);
}

/** An address range from a ClientIP argument. IPv4 is kept as uint32 numbers; IPv6 as four uint32 words. */
export type IpRange =
  | { readonly family: 4; readonly network: number; readonly mask: number }
  | { readonly family: 6; readonly network: Uint32Array; readonly mask: Uint32Array };

/**
 * Parses a ClientIP argument (`1.2.3.4`, `10.0.0.0/8`, `2001:db8::1`, `2001:db8::/32`), or returns null.
 * IPv4-mapped IPv6 (`::ffff:1.2.3.4`, and such a CIDR with prefix >= 96) becomes IPv4, as Go's net.IPNet
 * treats it, so a mapped client address and a plain IPv4 rule meet in the same family.
 */
export function parseIpRange(text: string): IpRange | null {
  const slash = text.indexOf('/');
  const address = slash < 0 ? text : text.slice(0, slash);
  let prefix = -1;
  if (slash >= 0) {
    const digits = text.slice(slash + 1);
    // Go's ParseCIDR rejects signs, spaces and leading zeros; so do we.
    if (!/^(0|[1-9][0-9]{0,2})$/.test(digits)) return null;
    prefix = Number(digits);
  }
  const family = parseAddress(address);
  if (family === 0) return null;
  if (family === 4) {
    if (prefix > 32) return null;
    return ipv4Range(scratchWords[0]!, prefix < 0 ? 32 : prefix);
  }
  if (prefix > 128) return null;
  if (prefix < 0) prefix = 128;
  if (isMappedIPv4(scratchWords) && prefix >= 96) return ipv4Range(scratchWords[3]!, prefix - 96);
  const mask = new Uint32Array(4);
  const network = new Uint32Array(4);
  for (let w = 0; w < 4; w++) {
    mask[w] = prefixMask(prefix - 32 * w);
    network[w] = (scratchWords[w]! & mask[w]!) >>> 0;
  }
  return { family: 6, network, mask };
}

/** Compiles a rule once; the returned function is what runs per request. */
export function compileRule(ast: RuleNode): RouteMatcher {
  switch (ast.kind) {
    case 'and': {
      const left = compileRule(ast.left);
      const right = compileRule(ast.right);
      return (input) => left(input) && right(input);
    }
    case 'or': {
      const left = compileRule(ast.left);
      const right = compileRule(ast.right);
      return (input) => left(input) || right(input);
    }
    case 'not': {
      const operand = compileRule(ast.operand);
      return (input) => !operand(input);
    }
    case 'matcher':
      return compileMatcher(ast.name, ast.args);
  }
}

function compileMatcher(name: string, args: readonly string[]): RouteMatcher {
  switch (name) {
    case 'Host':
      return hostMatcher(args);
    case 'HostRegexp':
      return anyRegExp(args, (input) => input.host);
    case 'Path': {
      const paths = [...args];
      return (input) => paths.includes(input.path);
    }
    case 'PathPrefix': {
      const prefixes = [...args];
      return (input) => {
        for (const prefix of prefixes) if (input.path.startsWith(prefix)) return true;
        return false;
      };
    }
    case 'PathRegexp':
      return anyRegExp(args, (input) => input.path);
    case 'Header': {
      const headerName = args[0]!.toLowerCase();
      const value = args[1]!;
      return (input) => input.header(headerName) === value;
    }
    case 'HeaderRegexp': {
      const headerName = args[0]!.toLowerCase();
      const pattern = toRuleRegExp(args[1]!);
      return (input) => pattern.test(input.header(headerName));
    }
    case 'Query':
      return queryMatcher(args);
    case 'QueryRegexp': {
      const key = args[0]!;
      const pattern = toRuleRegExp(args[1]!);
      return (input) => queryHasValue(input.query, key, (value) => pattern.test(value));
    }
    case 'ClientIP':
      return clientIpMatcher(args);
    case 'Method': {
      const methods = args.map((method) => method.toUpperCase());
      return (input) => methods.includes(input.method);
    }
    default:
      // The parser only produces known names; a hand-built or corrupted snapshot must not route silently.
      throw new Error(`unknown matcher '${name}' in compiled rule`);
  }
}

/**
 * Traefik's Host: case-insensitive, and a trailing dot on either the rule or the request is ignored
 * (`example.com.` is the same name). input.host is already lowercased and has no port.
 */
function hostMatcher(args: readonly string[]): RouteMatcher {
  const hosts = args.map((host) => {
    const lower = host.toLowerCase();
    return lower.endsWith('.') ? lower.slice(0, -1) : lower;
  });
  return (input) => {
    const host = input.host;
    for (const wanted of hosts) {
      if (host === wanted) return true;
      if (host.length === wanted.length + 1 && host.endsWith('.') && host.startsWith(wanted)) return true;
    }
    return false;
  };
}

function anyRegExp(sources: readonly string[], subject: (input: RouteInput) => string): RouteMatcher {
  const patterns = sources.map(toRuleRegExp);
  if (patterns.length === 1) {
    const only = patterns[0]!;
    return (input) => only.test(subject(input));
  }
  return (input) => {
    const text = subject(input);
    for (const pattern of patterns) if (pattern.test(text)) return true;
    return false;
  };
}

const anyValue = (): boolean => true;

/** `Query(k)` = key present (any value); `Query(k, v)` and the v2 `Query(k=v)` = one of k's values is v. */
function queryMatcher(args: readonly string[]): RouteMatcher {
  let key = args[0]!;
  let value: string | undefined = args[1];
  if (value === undefined) {
    const equals = key.indexOf('=');
    if (equals >= 0) {
      value = key.slice(equals + 1);
      key = key.slice(0, equals);
    }
  }
  const wanted = value;
  const test = wanted === undefined ? anyValue : (candidate: string) => candidate === wanted;
  return (input) => queryHasValue(input.query, key, test);
}

/**
 * Walks `a=1&b=2` as Go's url.ParseQuery does (which Traefik uses): `+` is a space, percent escapes are
 * decoded, a pair with a bad escape or a `;` is skipped, a key without `=` has the value ''. It scans in
 * place instead of building a map because a rule asks about one key and most queries are short.
 */
function queryHasValue(query: string, key: string, test: (value: string) => boolean): boolean {
  const length = query.length;
  let start = 0;
  while (start < length) {
    let end = query.indexOf('&', start);
    if (end < 0) end = length;
    if (end > start) {
      const semicolon = query.indexOf(';', start);
      if (semicolon < 0 || semicolon >= end) {
        const equals = query.indexOf('=', start);
        const keyEnd = equals >= 0 && equals < end ? equals : end;
        if (decodeQueryPart(query, start, keyEnd) === key) {
          const value = keyEnd < end ? decodeQueryPart(query, keyEnd + 1, end) : '';
          if (value !== null && test(value)) return true;
        }
      }
    }
    start = end + 1;
  }
  return false;
}

/** Decodes query[start, end) or returns null when it holds a bad escape. Plain text costs one slice. */
function decodeQueryPart(query: string, start: number, end: number): string | null {
  const raw = query.slice(start, end);
  if (!raw.includes('%') && !raw.includes('+')) return raw;
  try {
    return decodeURIComponent(raw.replaceAll('+', ' '));
  } catch {
    return null;
  }
}

function clientIpMatcher(args: readonly string[]): RouteMatcher {
  const v4Networks: number[] = [];
  const v4Masks: number[] = [];
  const v6Ranges: { network: Uint32Array; mask: Uint32Array }[] = [];
  for (const arg of args) {
    const range = parseIpRange(arg);
    if (range === null) throw new Error(`invalid ClientIP range '${arg}' in compiled rule`);
    if (range.family === 4) {
      v4Networks.push(range.network);
      v4Masks.push(range.mask);
    } else {
      v6Ranges.push(range);
    }
  }
  return (input) => {
    // parseAddress fills the module scratch words; nothing runs between that and the comparisons below.
    const family = parseAddress(input.clientIp);
    if (family === 6 && isMappedIPv4(scratchWords)) {
      const address = scratchWords[3]!;
      for (let i = 0; i < v4Networks.length; i++) if (((address & v4Masks[i]!) >>> 0) === v4Networks[i]) return true;
      return false;
    }
    if (family === 4) {
      const address = scratchWords[0]!;
      for (let i = 0; i < v4Networks.length; i++) if (((address & v4Masks[i]!) >>> 0) === v4Networks[i]) return true;
      return false;
    }
    if (family === 6) {
      for (const { network, mask } of v6Ranges) {
        if (
          ((scratchWords[0]! & mask[0]!) >>> 0) === network[0] &&
          ((scratchWords[1]! & mask[1]!) >>> 0) === network[1] &&
          ((scratchWords[2]! & mask[2]!) >>> 0) === network[2] &&
          ((scratchWords[3]! & mask[3]!) >>> 0) === network[3]
        ) {
          return true;
        }
      }
    }
    return false;
  };
}

// ---- Address parsing without allocation. Matching is synchronous, so one scratch buffer per thread is safe.

const scratchWords = new Uint32Array(4);
const scratchGroups = new Uint16Array(8);
const COLON = 0x3a;
const DOT = 0x2e;

function ipv4Range(address: number, prefix: number): IpRange {
  const mask = prefixMask(prefix);
  return { family: 4, network: (address & mask) >>> 0, mask };
}

/** The mask of one 32-bit word holding `bits` leading ones (clamped to 0..32). */
function prefixMask(bits: number): number {
  if (bits <= 0) return 0;
  if (bits >= 32) return 0xffffffff;
  return (0xffffffff << (32 - bits)) >>> 0;
}

function isMappedIPv4(words: Uint32Array): boolean {
  return words[0] === 0 && words[1] === 0 && words[2] === 0xffff;
}

/** Parses an IPv4 or IPv6 address into scratchWords (IPv4: word 0). Returns 4, 6, or 0 when invalid. */
function parseAddress(text: string): 0 | 4 | 6 {
  if (text.includes(':')) {
    if (!parseIPv6(text)) return 0;
    for (let w = 0; w < 4; w++) scratchWords[w] = ((scratchGroups[2 * w]! << 16) | scratchGroups[2 * w + 1]!) >>> 0;
    return 6;
  }
  const address = parseIPv4(text, 0, text.length);
  if (address < 0) return 0;
  scratchWords[0] = address;
  return 4;
}

/** Dotted quad in text[start, end) as uint32, or -1. Leading zeros are refused, as Go does since 1.17. */
function parseIPv4(text: string, start: number, end: number): number {
  let address = 0;
  let parts = 0;
  let i = start;
  while (parts < 4) {
    let value = 0;
    let digits = 0;
    while (i < end) {
      const code = text.charCodeAt(i) - 0x30;
      if (code < 0 || code > 9) break;
      if (digits === 1 && value === 0) return -1;
      value = value * 10 + code;
      digits++;
      i++;
    }
    if (digits === 0 || digits > 3 || value > 255) return -1;
    address = address * 256 + value;
    parts++;
    if (parts < 4) {
      if (i >= end || text.charCodeAt(i) !== DOT) return -1;
      i++;
    }
  }
  return i === end ? address : -1;
}

function hexValue(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  const lower = code | 0x20;
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x61 + 10;
  return -1;
}

/** RFC 4291 text form (with `::` and a trailing dotted quad) into scratchGroups; zones are refused. */
function parseIPv6(text: string): boolean {
  const length = text.length;
  if (length < 2) return false;
  let count = 0;
  let gapAt = -1;
  let i = 0;
  if (text.charCodeAt(0) === COLON) {
    if (text.charCodeAt(1) !== COLON) return false;
    gapAt = 0;
    i = 2;
  }
  while (i < length) {
    if (count === 8) return false;
    let value = 0;
    let digits = 0;
    let j = i;
    while (j < length && digits < 5) {
      const hex = hexValue(text.charCodeAt(j));
      if (hex < 0) break;
      value = value * 16 + hex;
      digits++;
      j++;
    }
    if (digits === 0) return false;
    if (j < length && text.charCodeAt(j) === DOT) {
      if (count > 6) return false;
      const address = parseIPv4(text, i, length);
      if (address < 0) return false;
      scratchGroups[count++] = address >>> 16;
      scratchGroups[count++] = address & 0xffff;
      i = length;
      break;
    }
    if (digits > 4) return false;
    scratchGroups[count++] = value;
    i = j;
    if (i === length) break;
    if (text.charCodeAt(i) !== COLON) return false;
    i++;
    if (i < length && text.charCodeAt(i) === COLON) {
      if (gapAt >= 0) return false;
      gapAt = count;
      i++;
    } else if (i === length) {
      return false;
    }
  }
  if (gapAt < 0) return count === 8;
  if (count === 8) return false;
  // Slide the groups written after `::` to the end and zero the gap.
  const tail = count - gapAt;
  for (let k = 0; k < tail; k++) scratchGroups[7 - k] = scratchGroups[count - 1 - k]!;
  for (let k = gapAt; k < 8 - tail; k++) scratchGroups[k] = 0;
  return true;
}
