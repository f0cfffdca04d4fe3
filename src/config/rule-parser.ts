/**
 * Parses Traefik router rules (v3 syntax, plus the v2 forms still found in real configs) into the RuleNode
 * tree that workers compile. Every mistake a rule can hold is caught here, at config time, and reported with
 * the column it starts at, so a rule that reaches a worker always compiles.
 *
 * Grammar, loosest binding first (whitespace allowed between any two tokens):
 *   or      = and { '||' and }
 *   and     = unary { '&&' unary }
 *   unary   = '!' unary | '(' or ')' | matcher
 *   matcher = Name '(' [ string { ',' string } ] ')'      string = `raw` | "Go-escaped"
 */
import type { MatcherName, RuleNode } from './rule-ast.js';
import { parseIpRange, toRuleRegExp } from '../worker/rule-matcher.js';

/** A rule that cannot be parsed. `message` is one line; the config loader prefixes it with the rule's location. */
export class RuleSyntaxError extends Error {
  /** 1-based, in UTF-16 code units of the rule text. */
  readonly column: number;
  readonly reason: string;
  readonly expected: string;
  readonly rule: string;

  constructor(rule: string, column: number, reason: string, expected: string) {
    // Line breaks (YAML block scalars keep them) become spaces so the message stays one line and the
    // column still points at the same character of the echoed rule.
    super(`invalid rule '${rule}': ${reason} at column ${column} (expected ${expected})`.replace(/[\r\n\t\v\f]/g, ' '));
    this.name = 'RuleSyntaxError';
    this.rule = rule;
    this.column = column;
    this.reason = reason;
    this.expected = expected;
  }
}

const EXPECT_OPERAND = "a matcher such as Host(...), '!' or '('";
const EXPECT_OPERATOR_OR_END = "'&&', '||' or end of rule";
const EXPECT_OPERATOR_OR_CLOSE = "'&&', '||' or ')'";
const EXPECT_STRING = 'a string in backticks or double quotes';
const EXPECT_COMMA_OR_CLOSE = "',' or ')'";
const EXPECT_REGEXP = 'a JavaScript regular expression';

interface MatcherSpec {
  readonly name: MatcherName;
  readonly minArgs: number;
  readonly maxArgs: number;
  /** Shown as the "expected" part of an arity error. */
  readonly usage: string;
}

const MATCHERS: ReadonlyMap<string, MatcherSpec> = new Map(
  (
    [
      // Several hosts/paths/IPs/methods is the Traefik v2 form: any one of them matches.
      ['Host', 1, Infinity, 'Host(`example.com`)'],
      ['HostRegexp', 1, Infinity, 'HostRegexp(`^[a-z]+\\.example\\.com$`)'],
      ['Path', 1, Infinity, 'Path(`/chat`)'],
      ['PathPrefix', 1, Infinity, 'PathPrefix(`/chat`)'],
      ['PathRegexp', 1, 1, 'PathRegexp(`^/rooms/[0-9]+$`)'],
      ['Header', 2, 2, 'Header(`name`, `value`)'],
      ['HeaderRegexp', 2, 2, 'HeaderRegexp(`name`, `regexp`)'],
      ['Query', 1, 2, 'Query(`name`) or Query(`name`, `value`)'],
      ['QueryRegexp', 2, 2, 'QueryRegexp(`name`, `regexp`)'],
      ['ClientIP', 1, Infinity, 'ClientIP(`10.0.0.0/8`)'],
      ['Method', 1, Infinity, 'Method(`GET`)'],
    ] as const
  ).map(([name, minArgs, maxArgs, usage]) => [name, { name, minArgs, maxArgs, usage }]),
);

/** Traefik v2 spellings, stored under their v3 name. */
const ALIASES: ReadonlyMap<string, MatcherName> = new Map([
  ['Headers', 'Header'],
  ['HeadersRegexp', 'HeaderRegexp'],
]);

const KNOWN_MATCHERS = `one of ${[...MATCHERS.keys()].join(', ')}`;

type TokenKind = 'name' | 'string' | '(' | ')' | ',' | '&&' | '||' | '!' | 'end' | 'other';

interface Token {
  readonly kind: TokenKind;
  readonly column: number;
  /** The source text of the token (quotes included for strings). */
  readonly raw: string;
  /** Decoded contents for strings; same as raw otherwise. */
  readonly value: string;
}

/** Parses one rule; throws RuleSyntaxError on the first problem, reading left to right. */
export function parseRule(text: string): RuleNode {
  return new RuleParser(text).parse();
}

class RuleParser {
  private position = 0;
  private lookahead: Token | null = null;

  constructor(private readonly text: string) {}

  parse(): RuleNode {
    if (this.peek().kind === 'end') this.fail(1, 'empty rule', EXPECT_OPERAND);
    const rule = this.parseOr(null);
    const next = this.peek();
    if (next.kind === ')') this.fail(next.column, "unmatched ')'", EXPECT_OPERATOR_OR_END);
    if (next.kind !== 'end') this.unexpected(next, EXPECT_OPERATOR_OR_END);
    return rule;
  }

  /** `openParen` is the '(' this expression sits in, for the message when its ')' never comes. */
  private parseOr(openParen: Token | null): RuleNode {
    let left = this.parseAnd(openParen);
    while (this.peek().kind === '||') {
      this.take();
      left = { kind: 'or', left, right: this.parseAnd(openParen) };
    }
    return left;
  }

  private parseAnd(openParen: Token | null): RuleNode {
    let left = this.parseUnary(openParen);
    while (this.peek().kind === '&&') {
      this.take();
      left = { kind: 'and', left, right: this.parseUnary(openParen) };
    }
    return left;
  }

  private parseUnary(openParen: Token | null): RuleNode {
    const token = this.take();
    switch (token.kind) {
      case '!':
        return { kind: 'not', operand: this.parseUnary(openParen) };
      case '(': {
        const inner = this.parseOr(token);
        const close = this.take();
        if (close.kind === 'end') {
          this.fail(close.column, 'unexpected end of rule', `')' to close the '(' at column ${token.column}`);
        }
        if (close.kind !== ')') this.unexpected(close, EXPECT_OPERATOR_OR_CLOSE);
        return inner;
      }
      case 'name':
        return this.parseMatcher(token);
      default:
        return this.unexpected(token, EXPECT_OPERAND);
    }
  }

  private parseMatcher(nameToken: Token): RuleNode {
    const written = nameToken.value;
    const spec = MATCHERS.get(ALIASES.get(written) ?? written);
    if (spec === undefined) return this.fail(nameToken.column, `unknown matcher '${written}'`, KNOWN_MATCHERS);
    const open = this.take();
    if (open.kind !== '(') this.unexpected(open, `'(' after ${written}`);

    const argTokens: Token[] = [];
    if (this.peek().kind === ')') {
      this.take();
    } else {
      for (;;) {
        const arg = this.take();
        if (arg.kind !== 'string') this.unexpected(arg, EXPECT_STRING);
        argTokens.push(arg);
        const separator = this.take();
        if (separator.kind === ')') break;
        if (separator.kind !== ',') this.unexpected(separator, EXPECT_COMMA_OR_CLOSE);
      }
    }

    const count = argTokens.length;
    if (count < spec.minArgs || count > spec.maxArgs) {
      this.fail(nameToken.column, `${written} takes ${arityText(spec)}, got ${count}`, spec.usage);
    }
    return { kind: 'matcher', name: spec.name, args: this.checkArguments(spec.name, argTokens) };
  }

  /** Validates arguments now rather than in the worker; returns them as stored (possibly normalised). */
  private checkArguments(name: MatcherName, args: Token[]): string[] {
    const values = args.map((arg) => arg.value);
    switch (name) {
      case 'Host':
        for (const arg of args) {
          if (arg.value === '') this.fail(arg.column, 'empty host', 'a host name such as example.com');
          // Traefik v3 refuses these too: the Host header is ASCII (IDNs arrive in punycode).
          if (!/^[\x21-\x7e]+$/.test(arg.value)) {
            this.fail(arg.column, `invalid host '${arg.value}'`, 'an ASCII host name such as example.com');
          }
        }
        return values;
      case 'HostRegexp': {
        const isV2 = args.length > 1 || args.some((arg) => V2_PLACEHOLDER.test(arg.value));
        return args.map((arg) => this.checkRegExp(arg, isV2 ? this.hostTemplateToRegExp(arg) : arg.value));
      }
      case 'Path':
      case 'PathPrefix':
        for (const arg of args) {
          if (!arg.value.startsWith('/')) {
            this.fail(arg.column, `path '${arg.value}' does not start with '/'`, 'a path such as /chat');
          }
        }
        return values;
      case 'PathRegexp':
        return [this.checkRegExp(args[0]!, args[0]!.value)];
      case 'Header':
        this.checkHeaderName(args[0]!);
        return values;
      case 'HeaderRegexp':
        this.checkHeaderName(args[0]!);
        return [values[0]!, this.checkRegExp(args[1]!, args[1]!.value)];
      case 'Query': {
        // v2 wrote Query(`k=v`); store it as the v3 pair so workers see one shape.
        let key = values[0]!;
        let value = values[1];
        if (value === undefined && key.includes('=')) {
          value = key.slice(key.indexOf('=') + 1);
          key = key.slice(0, key.indexOf('='));
        }
        if (key === '') this.fail(args[0]!.column, 'empty query parameter name', 'a parameter name such as room');
        return value === undefined ? [key] : [key, value];
      }
      case 'QueryRegexp':
        if (values[0] === '') this.fail(args[0]!.column, 'empty query parameter name', 'a parameter name such as room');
        return [values[0]!, this.checkRegExp(args[1]!, args[1]!.value)];
      case 'ClientIP':
        for (const arg of args) {
          if (parseIpRange(arg.value) === null) {
            this.fail(
              arg.column,
              `invalid IP address or CIDR '${arg.value}'`,
              'an IPv4 or IPv6 address or CIDR such as 10.0.0.0/8 or 2001:db8::/32',
            );
          }
        }
        return values;
      case 'Method':
        for (const arg of args) {
          if (!HTTP_TOKEN.test(arg.value)) this.fail(arg.column, `invalid method '${arg.value}'`, 'a method such as GET');
        }
        return values;
    }
  }

  private checkHeaderName(arg: Token): void {
    if (!HTTP_TOKEN.test(arg.value)) {
      this.fail(arg.column, `invalid header name '${arg.value}'`, 'a header name such as X-Api-Version');
    }
  }

  private checkRegExp(arg: Token, source: string): string {
    try {
      toRuleRegExp(source);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      // V8 says "Invalid regular expression: /<source>/<flags>: <detail>"; the source is already quoted.
      const detail = message.slice(message.lastIndexOf(': ') + 2);
      this.fail(arg.column, `invalid regular expression '${source}': ${detail}`, EXPECT_REGEXP);
    }
    return source;
  }

  /**
   * Traefik v2 (gorilla/mux) host templates: `{name}` is one DNS label, `{name:pattern}` is the pattern, the
   * rest is literal, and the whole host must match. Braces may nest inside a pattern (`{n:[a-z]{2}}`).
   */
  private hostTemplateToRegExp(arg: Token): string {
    const template = arg.value;
    let regex = '^';
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
        regex += escapeRegExp(template.slice(literalStart, openAt).toLowerCase());
        const inside = template.slice(openAt + 1, i);
        const colon = inside.indexOf(':');
        const variable = colon < 0 ? inside : inside.slice(0, colon);
        const pattern = colon < 0 ? '[^.]+' : inside.slice(colon + 1);
        if (variable === '' || pattern === '') {
          this.fail(arg.column, `missing name or pattern in '{${inside}}'`, 'a v2 placeholder such as {sub:[a-z]+}');
        }
        regex += `(?:${pattern})`;
        literalStart = i + 1;
      }
    }
    if (depth !== 0) {
      this.fail(arg.column, `unbalanced braces in '${template}'`, 'a v2 template such as {sub:[a-z]+}.example.com');
    }
    return regex + escapeRegExp(template.slice(literalStart).toLowerCase()) + '$';
  }

  // ---- Tokens

  private peek(): Token {
    this.lookahead ??= this.scan();
    return this.lookahead;
  }

  private take(): Token {
    const token = this.peek();
    this.lookahead = null;
    return token;
  }

  private scan(): Token {
    const text = this.text;
    while (this.position < text.length && /\s/.test(text[this.position]!)) this.position++;
    const start = this.position;
    const column = start + 1;
    if (start >= text.length) return { kind: 'end', column, raw: '', value: '' };
    const char = text[start]!;
    const pair = text.slice(start, start + 2);
    if (pair === '&&' || pair === '||') {
      this.position += 2;
      return { kind: pair, column, raw: pair, value: pair };
    }
    if (char === '(' || char === ')' || char === ',' || char === '!') {
      this.position++;
      return { kind: char, column, raw: char, value: char };
    }
    if (char === '`' || char === '"') return this.scanString(char);
    const name = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(start));
    if (name !== null) {
      this.position += name[0].length;
      return { kind: 'name', column, raw: name[0], value: name[0] };
    }
    this.position++;
    return { kind: 'other', column, raw: char, value: char };
  }

  /** Backticks are raw (no escapes, may span lines); double quotes follow Go's interpreted string syntax. */
  private scanString(quote: '`' | '"'): Token {
    const text = this.text;
    const start = this.position;
    const unterminated = (): never => this.fail(start + 1, 'unterminated string', `a closing '${quote}'`);
    if (quote === '`') {
      const end = text.indexOf('`', start + 1);
      if (end < 0) unterminated();
      this.position = end + 1;
      return { kind: 'string', column: start + 1, raw: text.slice(start, end + 1), value: text.slice(start + 1, end) };
    }
    let value = '';
    let i = start + 1;
    for (;;) {
      if (i >= text.length) unterminated();
      const char = text[i]!;
      if (char === '"') break;
      if (char === '\n') this.fail(i + 1, 'newline in string', `a closing '"' on the same line`);
      if (char !== '\\') {
        value += char;
        i++;
        continue;
      }
      const decoded = decodeEscape(text, i);
      if (decoded === null) {
        this.fail(i + 1, `invalid escape '${text.slice(i, i + 2)}' in string`, 'an escape such as \\" or \\\\');
      }
      value += decoded.text;
      i += decoded.length;
    }
    this.position = i + 1;
    return { kind: 'string', column: start + 1, raw: text.slice(start, i + 1), value };
  }

  private unexpected(token: Token, expected: string): never {
    if (token.kind === 'end') return this.fail(token.column, 'unexpected end of rule', expected);
    if (token.kind === 'other') return this.fail(token.column, `unexpected character '${token.raw}'`, expected);
    return this.fail(token.column, `unexpected '${token.raw}'`, expected);
  }

  private fail(column: number, reason: string, expected: string): never {
    throw new RuleSyntaxError(this.text, column, reason, expected);
  }
}

/** `{name}` or `{name:` not escaped and not Go's `\p{Class}`: v3 regex quantifiers start with a digit. */
const V2_PLACEHOLDER = /(?<![\\]|\\[pP])\{[A-Za-z_][A-Za-z0-9_]*[:}]/;

/** RFC 9110 token: header names and methods. */
const HTTP_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

const SIMPLE_ESCAPES: Readonly<Record<string, string>> = {
  a: '\x07',
  b: '\b',
  f: '\f',
  n: '\n',
  r: '\r',
  t: '\t',
  v: '\v',
  '\\': '\\',
  '"': '"',
};

/** Go escape at text[at] (a backslash): \n-style, \xHH, \uHHHH, \UHHHHHHHH, \OOO octal; null if invalid. */
function decodeEscape(text: string, at: number): { text: string; length: number } | null {
  const letter = text[at + 1];
  if (letter === undefined) return null;
  const simple = SIMPLE_ESCAPES[letter];
  if (simple !== undefined) return { text: simple, length: 2 };
  const digitsByLetter: Record<string, number> = { x: 2, u: 4, U: 8 };
  const hexDigits = digitsByLetter[letter];
  if (hexDigits !== undefined) {
    const hex = text.slice(at + 2, at + 2 + hexDigits);
    if (!new RegExp(`^[0-9A-Fa-f]{${hexDigits}}$`).test(hex)) return null;
    const code = parseInt(hex, 16);
    if (code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return null;
    return { text: String.fromCodePoint(code), length: 2 + hexDigits };
  }
  const octal = text.slice(at + 1, at + 4);
  if (/^[0-3][0-7]{2}$/.test(octal)) return { text: String.fromCharCode(parseInt(octal, 8)), length: 4 };
  return null;
}

function escapeRegExp(literal: string): string {
  return literal.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

function arityText(spec: MatcherSpec): string {
  const plural = (n: number): string => `${n} argument${n === 1 ? '' : 's'}`;
  if (spec.maxArgs === Infinity) return `at least ${plural(spec.minArgs)}`;
  if (spec.minArgs === spec.maxArgs) return `exactly ${plural(spec.minArgs)}`;
  return `${spec.minArgs} or ${plural(spec.maxArgs)}`;
}
