/**
 * What the rule parser knows about Traefik v2 rule syntax and Traefik's TCP matchers, so that it can name the
 * v3 form of anything v3 refuses or reads differently: gorilla/mux templates (`{name}`, `{name:pattern}`)
 * turned into the regular expressions v3 expects, and the HTTP matcher that does what a TCP one did.
 */

/** A string argument of a matcher as written (`raw`, quotes included) and decoded (`value`). */
export interface WrittenArgument {
  readonly raw: string;
  readonly value: string;
}

/** `{name}` or `{name:` not escaped and not Go's `\p{Class}`: v3 regex quantifiers start with a digit. */
const V2_PLACEHOLDER = /(?<![\\]|\\[pP])\{[A-Za-z_][A-Za-z0-9_]*[:}]/;

export function hasV2Placeholder(text: string): boolean {
  return V2_PLACEHOLDER.test(text);
}

/** A template that is not one; `reason` and `expected` follow the rule parser's message shape. */
export class TemplateError extends Error {
  constructor(
    readonly reason: string,
    readonly expected: string,
  ) {
    super(reason);
  }
}

/**
 * A Traefik v2 (gorilla/mux) template as a regular expression without anchors: `{name}` is `defaultPattern`,
 * `{name:pattern}` is the pattern, the rest is literal (lowercased for hosts, which match case-insensitively).
 * Braces may nest inside a pattern (`{n:[a-z]{2}}`).
 */
export function templateToRegExp(template: string, defaultPattern: string, lowerCase: boolean): string {
  const literal = (text: string): string => escapeRegExp(lowerCase ? text.toLowerCase() : text);
  let regex = '';
  let literalStart = 0;
  let depth = 0;
  let openAt = -1;
  for (let i = 0; i < template.length; i++) {
    const char = template[i];
    if (char === '{') {
      if (depth++ === 0) openAt = i;
    } else if (char === '}') {
      if (--depth < 0) break;
      if (depth > 0) continue;
      regex += literal(template.slice(literalStart, openAt));
      const inside = template.slice(openAt + 1, i);
      const colon = inside.indexOf(':');
      const variable = colon < 0 ? inside : inside.slice(0, colon);
      const pattern = colon < 0 ? defaultPattern : inside.slice(colon + 1);
      if (variable === '' || pattern === '') {
        throw new TemplateError(`missing name or pattern in '{${inside}}'`, 'a v2 placeholder such as {sub:[a-z]+}');
      }
      regex += pattern.includes('|') ? `(?:${pattern})` : pattern;
      literalStart = i + 1;
    }
  }
  if (depth !== 0) {
    throw new TemplateError(`unbalanced braces in '${template}'`, 'a v2 template such as {sub:[a-z]+}.example.com');
  }
  return regex + literal(template.slice(literalStart));
}

/**
 * Matchers of Traefik's TCP routers, with the HTTP matcher to write instead. Every Sluice router is an HTTP
 * router (a WebSocket starts as an HTTP request); the certificate is chosen by SNI from tls.certificates.
 */
export function tcpMatcherReplacement(name: string, args: readonly WrittenArgument[]): string | undefined {
  switch (name) {
    case 'HostSNI':
      if (args.length === 0) return 'Host(`example.com`)';
      return args.length === 1 && args[0]!.value === '*' ? 'PathPrefix(`/`)' : anyOf('Host', args);
    case 'HostSNIRegexp':
      return args.length === 0 ? 'HostRegexp(`^[a-z]+\\.example\\.com$`)' : anyOf('HostRegexp', args);
    case 'ALPN':
      return 'an HTTP matcher such as Host(`example.com`)';
    default:
      return undefined;
  }
}

export function isTcpMatcher(name: string): boolean {
  return name === 'HostSNI' || name === 'HostSNIRegexp' || name === 'ALPN';
}

/** `Name(a) || Name(b)`: how v3 writes what v2 wrote as one matcher with several arguments. */
export function anyOf(name: string, args: readonly WrittenArgument[]): string {
  return args.map((arg) => `${name}(${arg.raw})`).join(' || ');
}

/** A value as a rule string: backticks unless it holds one (Go raw strings cannot). */
export function quote(value: string): string {
  return value.includes('`') ? JSON.stringify(value) : `\`${value}\``;
}

/** Escapes for Go and JavaScript alike ('/' needs no escape in either). */
function escapeRegExp(literal: string): string {
  return literal.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
