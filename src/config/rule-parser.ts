/**
 * Parses Traefik router rules (v3 syntax) into the RuleNode tree that workers compile. Every mistake a rule
 * can hold is caught here, at config time, and reported with the column it starts at, so a rule that reaches
 * a worker always compiles. Traefik v2 forms are sorted the way Traefik's migration guide sorts them: a form
 * v3 refuses but whose meaning is plain (`Headers`, `Host(a, b)`, `Query(k=v)`) is accepted with a warning
 * that names the v3 form; a form v3 reads differently (`{name:re}` templates in HostRegexp or Path) is an
 * error naming the v3 form, because accepting it either way would route differently from one of them.
 *
 * Grammar, loosest binding first (whitespace allowed between any two tokens):
 *   or      = and { '||' and }
 *   and     = unary { '&&' unary }
 *   unary   = '!' unary | '(' or ')' | matcher
 *   matcher = Name '(' [ string { ',' string } ] ')'      string = `raw` | "Go-escaped"
 */
import type { MatcherName, RuleNode } from './rule-ast.js';
import { KNOWN_MATCHERS, MATCHERS, V2_NAMES, arityText } from './rule-matchers.js';
import { closest } from './errors.js';
import { TemplateError, anyOf, hasV2Placeholder, isTcpMatcher, quote, tcpMatcherReplacement, templateToRegExp } from './rule-v2.js';
import { parseIpRange, toRuleRegExp } from '../worker/rule-matcher.js';

/** A rule that cannot be parsed. `message` is one line; the config loader prefixes it with the rule's location. */
export class RuleSyntaxError extends Error {
  /** 1-based, in UTF-16 code units of the rule text. */
  readonly column: number;
  readonly reason: string;
  /** Said after the column: a "did you mean", or why a Traefik v2 form cannot be read as it stands. */
  readonly hint: string;
  readonly expected: string;
  readonly rule: string;

  constructor(rule: string, column: number, reason: string, expected: string, hint = '') {
    // Line breaks (YAML block scalars keep them) become spaces so the message stays one line and the
    // column still points at the same character of the echoed rule.
    super(oneLine(`invalid rule '${rule}': ${reason} at column ${column}${hint === '' ? '' : `: ${hint}`} (expected ${expected})`));
    this.name = 'RuleSyntaxError';
    this.rule = rule;
    this.column = column;
    this.reason = reason;
    this.hint = hint;
    this.expected = expected;
  }
}

const EXPECT_OPERAND = "a matcher such as Host(...), '!' or '('";
const EXPECT_OPERATOR_OR_END = "'&&', '||' or end of rule";
const EXPECT_OPERATOR_OR_CLOSE = "'&&', '||' or ')'";
const EXPECT_STRING = 'a string in backticks or double quotes';
const EXPECT_COMMA_OR_CLOSE = "',' or ')'";
const EXPECT_REGEXP = 'a JavaScript regular expression';

type TokenKind = 'name' | 'string' | '(' | ')' | ',' | '&&' | '||' | '!' | 'end' | 'other';

interface Token {
  readonly kind: TokenKind;
  readonly column: number;
  /** The source text of the token (quotes included for strings). */
  readonly raw: string;
  /** Decoded contents for strings; same as raw otherwise. */
  readonly value: string;
}

/**
 * Parses one rule; throws RuleSyntaxError on the first problem, reading left to right. Each Traefik v2 form
 * that was accepted adds one line to `warnings` (when given), naming the v3 form and its column.
 */
export function parseRule(text: string, warnings?: string[]): RuleNode {
  return new RuleParser(text, warnings).parse();
}

class RuleParser {
  private position = 0;
  private lookahead: Token | null = null;

  constructor(
    private readonly text: string,
    private readonly warnings: string[] | undefined,
  ) {}

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
    const v2Name = V2_NAMES.get(written);
    const spec = MATCHERS.get(written) ?? v2Name;
    if (spec === undefined && !isTcpMatcher(written)) {
      const suggestion = closest(written, MATCHERS.keys());
      const hint = suggestion === undefined ? '' : `did you mean '${suggestion}'?`;
      return this.fail(nameToken.column, `unknown matcher '${written}'`, KNOWN_MATCHERS, hint);
    }
    const open = this.take();
    if (open.kind !== '(') this.unexpected(open, `'(' after ${written}`);

    const args: Token[] = [];
    let close = this.take();
    if (close.kind !== ')') {
      for (;;) {
        if (close.kind !== 'string') this.unexpected(close, EXPECT_STRING);
        args.push(close);
        const separator = this.take();
        if (separator.kind === ')') {
          close = separator;
          break;
        }
        if (separator.kind !== ',') this.unexpected(separator, EXPECT_COMMA_OR_CLOSE);
        close = this.take();
      }
    }
    const call: MatcherCall = { nameToken, args, source: this.text.slice(nameToken.column - 1, close.column) };

    const tcpForm = tcpMatcherReplacement(written, args);
    if (tcpForm !== undefined) {
      return this.fail(
        nameToken.column,
        `${written} is a TCP router matcher`,
        tcpForm,
        'Sluice routers are HTTP routers, and the certificate is chosen by SNI from tls.certificates',
      );
    }
    const count = args.length;
    if (written === 'HostRegexp' && count > 1) {
      // v2 read each argument as a host template (literal text unless braced); v3 takes one regular expression.
      const v3Form = args.map((arg) =>
        hasV2Placeholder(arg.value) ? `HostRegexp(\`^${this.template(arg, arg.value, '[^.]+', true)}$\`)` : `Host(${arg.raw})`,
      );
      this.fail(nameToken.column, `HostRegexp with ${count} host templates is Traefik v2 syntax`, v3Form.join(' || '), 'in Traefik v3 HostRegexp takes one regular expression');
    }
    if (count < spec!.minArgs || count > spec!.maxArgs || (v2Name !== undefined && v2Name.minArgs === 2 && count % 2 !== 0)) {
      const arity = v2Name !== undefined && v2Name.minArgs === 2 ? 'name/value pairs' : arityText(spec!);
      this.fail(nameToken.column, `${written} takes ${arity}, got ${count}`, spec!.usage);
    }
    return this.checkArguments(spec!.name, call);
  }

  /** Validates arguments now rather than in the worker; returns the node as stored (v2 forms normalised). */
  private checkArguments(name: MatcherName, call: MatcherCall): RuleNode {
    const { args } = call;
    const values = args.map((arg) => arg.value);
    const written = call.nameToken.value;
    switch (name) {
      case 'Host':
        for (const arg of args) {
          if (arg.value === '') this.fail(arg.column, 'empty host', 'a host name such as example.com');
          // Traefik v3 refuses these too: the Host header is ASCII (IDNs arrive in punycode).
          if (!/^[\x21-\x7e]+$/.test(arg.value)) {
            this.fail(arg.column, `invalid host '${arg.value}'`, 'an ASCII host name such as example.com');
          }
        }
        if (written !== name || args.length > 1) this.warnV2(call, anyOf(name, args));
        return matcher(name, values);
      case 'HostRegexp': {
        const arg = args[0]!;
        if (hasV2Placeholder(arg.value)) {
          const regex = `^${this.template(arg, arg.value, '[^.]+', true)}$`;
          this.failV2Template(arg, 'host', 'HostRegexp takes a regular expression', `HostRegexp(\`${regex}\`)`);
        }
        return matcher(name, [this.checkRegExp(arg, arg.value)]);
      }
      case 'Path':
      case 'PathPrefix':
        for (const arg of args) {
          if (!arg.value.startsWith('/')) {
            this.fail(arg.column, `path '${arg.value}' does not start with '/'`, 'a path such as /chat');
          }
          if (hasV2Placeholder(arg.value)) {
            const regex = `^${this.template(arg, arg.value, '[^/]+', false)}${name === 'Path' ? '$' : ''}`;
            this.failV2Template(arg, 'path', `${name} matches text as written`, `PathRegexp(\`${regex}\`)`);
          }
        }
        if (args.length > 1) this.warnV2(call, anyOf(name, args));
        return matcher(name, values);
      case 'PathRegexp':
        return matcher(name, [this.checkRegExp(args[0]!, args[0]!.value)]);
      case 'Header':
      case 'HeaderRegexp': {
        // v2's Headers(`a`, `1`, `b`, `2`): every pair must match, as v3's Header(...) && Header(...).
        const pairs: RuleNode[] = [];
        const v3Form: string[] = [];
        for (let i = 0; i < args.length; i += 2) {
          this.checkHeaderName(args[i]!);
          const value = name === 'HeaderRegexp' ? this.checkRegExp(args[i + 1]!, values[i + 1]!) : values[i + 1]!;
          pairs.push(matcher(name, [values[i]!, value]));
          v3Form.push(`${name}(${args[i]!.raw}, ${args[i + 1]!.raw})`);
        }
        if (written !== name) this.warnV2(call, v3Form.join(' && '));
        return allOf(pairs);
      }
      case 'Query':
        return this.checkQuery(call);
      case 'QueryRegexp':
        if (values[0] === '') this.fail(args[0]!.column, 'empty query parameter name', 'a parameter name such as room');
        return matcher(name, [values[0]!, this.checkRegExp(args[1]!, args[1]!.value)]);
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
        if (args.length > 1) this.warnV2(call, anyOf(name, args));
        return matcher(name, values);
      case 'Method':
        for (const arg of args) {
          if (!HTTP_TOKEN.test(arg.value)) this.fail(arg.column, `invalid method '${arg.value}'`, 'a method such as GET');
        }
        if (args.length > 1) this.warnV2(call, anyOf(name, args));
        return matcher(name, values);
    }
  }

  /**
   * v3: Query(`k`) or Query(`k`, `v`). v2: Query(`k=v`, …), every pair must match, and (gorilla/mux) an
   * empty value matches any value and `{name:re}` in a value is a regular expression. A parameter name cannot
   * hold '=' (the query string splits on it), so a first argument with one is the v2 form.
   */
  private checkQuery(call: MatcherCall): RuleNode {
    const { args } = call;
    const emptyName = (arg: Token): never => this.fail(arg.column, 'empty query parameter name', 'a parameter name such as room');
    if (!args[0]!.value.includes('=')) {
      if (args.length > 2) this.fail(call.nameToken.column, `Query takes 1 or 2 arguments, got ${args.length}`, 'Query(`name`) or Query(`name`, `value`)');
      if (args[0]!.value === '') emptyName(args[0]!);
      return matcher('Query', args.map((arg) => arg.value));
    }
    const pairs: RuleNode[] = [];
    const v3Form: string[] = [];
    for (const arg of args) {
      const equals = arg.value.indexOf('=');
      if (equals < 0) this.fail(arg.column, `'${arg.value}' is not a name=value pair`, 'Query(`name=value`, ...) in Traefik v2, or Query(`name`, `value`)');
      const key = arg.value.slice(0, equals);
      const value = arg.value.slice(equals + 1);
      if (key === '') emptyName(arg);
      if (hasV2Placeholder(value)) {
        const regex = `^${this.template(arg, value, '.*', false)}$`;
        this.failV2Template(arg, 'query', 'Query compares values as written', `QueryRegexp(${quote(key)}, \`${regex}\`)`);
      }
      if (value === '') {
        pairs.push(matcher('QueryRegexp', [key, '.*']));
        v3Form.push(`QueryRegexp(${quote(key)}, \`.*\`)`);
      } else {
        pairs.push(matcher('Query', [key, value]));
        v3Form.push(`Query(${quote(key)}, ${quote(value)})`);
      }
    }
    this.warnV2(call, v3Form.join(' && '));
    return allOf(pairs);
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

  /** One warning per v2 form accepted; the v3 form is bracketed when the matcher is only part of the rule. */
  private warnV2(call: MatcherCall, v3Form: string): void {
    if (this.warnings === undefined) return;
    const whole = this.text.trim() === call.source;
    const replacement = whole || !/ (\|\||&&) /.test(v3Form) ? v3Form : `(${v3Form})`;
    this.warnings.push(oneLine(`Traefik v2 syntax '${call.source}' at column ${call.nameToken.column} (Traefik v3 form: ${replacement})`));
  }

  private failV2Template(arg: Token, kind: string, v3Reading: string, v3Form: string): never {
    return this.fail(arg.column, `Traefik v2 ${kind} template '${arg.value}'`, v3Form, `in Traefik v3 ${v3Reading}, so this would match something else`);
  }

  /** A v2 template as a regular expression (templateToRegExp), or the parser's error at the argument. */
  private template(arg: Token, template: string, defaultPattern: string, lowerCase: boolean): string {
    try {
      return templateToRegExp(template, defaultPattern, lowerCase);
    } catch (error) {
      if (!(error instanceof TemplateError)) throw error;
      return this.fail(arg.column, error.reason, error.expected);
    }
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

  private fail(column: number, reason: string, expected: string, hint = ''): never {
    throw new RuleSyntaxError(this.text, column, reason, expected, hint);
  }
}

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

interface MatcherCall {
  readonly nameToken: Token;
  readonly args: readonly Token[];
  /** The matcher as written, name to closing parenthesis. */
  readonly source: string;
}

function matcher(name: MatcherName, args: readonly string[]): RuleNode {
  return { kind: 'matcher', name, args };
}

function allOf(nodes: readonly RuleNode[]): RuleNode {
  return nodes.slice(1).reduce<RuleNode>((left, right) => ({ kind: 'and', left, right }), nodes[0]!);
}

function oneLine(text: string): string {
  return text.replace(/[\r\n\t\v\f]/g, ' ');
}
