/**
 * Router rules end to end: Traefik rule text → parseRule → compileRule → match, the RouterTable's choice of
 * router per entry point, and the exact text of every syntax error (a config error is a user interface).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { RouteInput, RuleNode } from '../src/config/rule-ast.js';
import type { RouterSpec } from '../src/config/snapshot.js';
import { parseRule, RuleSyntaxError } from '../src/config/rule-parser.js';
import { compileRule } from '../src/worker/rule-matcher.js';
import { RouterTable } from '../src/worker/router-table.js';

interface RequestShape {
  host?: string;
  path?: string;
  query?: string;
  method?: string;
  clientIp?: string;
  headers?: Record<string, string>;
}

/** A request as a worker would describe it: host lowercased without port, header names lowercase. */
function request(shape: RequestShape = {}): RouteInput {
  const headers = shape.headers ?? {};
  return {
    host: shape.host ?? 'example.com',
    path: shape.path ?? '/',
    query: shape.query ?? '',
    method: shape.method ?? 'GET',
    clientIp: shape.clientIp ?? '192.0.2.10',
    header: (name) => headers[name] ?? '',
  };
}

function matches(rule: string, shape: RequestShape): boolean {
  return compileRule(parseRule(rule))(request(shape));
}

const H = (value: string): string => `Host(\`${value}\`)`;

describe('matching', () => {
  const cases: [rule: string, shape: RequestShape, expected: boolean][] = [
    // Host: case-insensitive, trailing dots ignored, v2 list = any.
    ['Host(`example.com`)', { host: 'example.com' }, true],
    ['Host(`Example.COM`)', { host: 'example.com' }, true],
    ['Host(`example.com`)', { host: 'www.example.com' }, false],
    ['Host(`example.com.`)', { host: 'example.com' }, true],
    ['Host(`example.com`)', { host: 'example.com.' }, true],
    ['Host(`example.com`)', { host: 'example.co' }, false],
    ['Host(`example.com`)', { host: 'example.comx' }, false],
    ['Host(`a.com`, `b.com`)', { host: 'b.com' }, true],
    ['Host(`a.com`, `b.com`)', { host: 'c.com' }, false],
    ['Host("example.com")', { host: 'example.com' }, true],
    // HostRegexp: v3 regex, unanchored.
    ['HostRegexp(`^[a-z]+\\.example\\.com$`)', { host: 'chat.example.com' }, true],
    ['HostRegexp(`^[a-z]+\\.example\\.com$`)', { host: 'example.com' }, false],
    ['HostRegexp(`example`)', { host: 'www.example.org' }, true],
    ['HostRegexp(`(?i)^CHAT\\.`)', { host: 'chat.example.com' }, true],
    // Traefik v2 forms accepted with a warning match what v2 matched.
    ['HostHeader(`a.com`)', { host: 'a.com' }, true],
    ['Headers(`x-a`, `1`, `x-b`, `2`)', { headers: { 'x-a': '1', 'x-b': '2' } }, true],
    ['Headers(`x-a`, `1`, `x-b`, `2`)', { headers: { 'x-a': '1' } }, false],
    ['HeadersRegexp(`x-a`, `^[0-9]+$`)', { headers: { 'x-a': '42' } }, true],
    ['Query(`room=blue`, `lang=en`)', { query: 'lang=en&room=blue' }, true],
    ['Query(`room=blue`, `lang=en`)', { query: 'room=blue' }, false],
    ['Query(`room=`)', { query: 'room=red' }, true],
    ['Query(`room=`)', { query: 'room' }, true],
    ['Query(`room=`)', { query: 'rooms=red' }, false],
    // Path and PathPrefix, exact and case-sensitive.
    ['Path(`/chat`)', { path: '/chat' }, true],
    ['Path(`/chat`)', { path: '/chat/' }, false],
    ['Path(`/chat`)', { path: '/Chat' }, false],
    ['Path(`/a`, `/b`)', { path: '/b' }, true],
    ['PathPrefix(`/ws`)', { path: '/ws/room/1' }, true],
    ['PathPrefix(`/ws`)', { path: '/api/ws' }, false],
    ['PathPrefix(`/a`, `/b`)', { path: '/b/c' }, true],
    ['PathRegexp(`^/rooms/[0-9]+$`)', { path: '/rooms/42' }, true],
    ['PathRegexp(`^/rooms/[0-9]+$`)', { path: '/rooms/x' }, false],
    ['PathRegexp(`/(?P<id>[0-9]+)$`)', { path: '/rooms/42' }, true],
    // Headers: name case-insensitive, value exact; Headers is the v2 spelling.
    ['Header(`X-Room`, `blue`)', { headers: { 'x-room': 'blue' } }, true],
    ['Header(`X-Room`, `blue`)', { headers: { 'x-room': 'Blue' } }, false],
    ['Header(`X-Room`, `blue`)', {}, false],
    ['Headers(`x-room`, `blue`)', { headers: { 'x-room': 'blue' } }, true],
    ['HeaderRegexp(`X-Version`, `^v[23]$`)', { headers: { 'x-version': 'v3' } }, true],
    ['HeaderRegexp(`X-Version`, `^v[23]$`)', { headers: { 'x-version': 'v4' } }, false],
    ['HeadersRegexp(`X-Version`, `^v`)', { headers: { 'x-version': 'v1' } }, true],
    // Query: v3 pair, v2 `k=v`, key-present form, decoding, repeated keys.
    ['Query(`room`, `blue`)', { query: 'room=blue' }, true],
    ['Query(`room`, `blue`)', { query: 'a=1&room=red&room=blue' }, true],
    ['Query(`room`, `blue`)', { query: 'room=red' }, false],
    ['Query(`room`, `blue`)', { query: 'rooms=blue' }, false],
    ['Query(`room=blue`)', { query: 'room=blue' }, true],
    ['Query(`room=blue`)', { query: 'room=red' }, false],
    ['Query(`room`)', { query: 'x=1&room' }, true],
    ['Query(`room`)', { query: 'room=' }, true],
    ['Query(`room`)', { query: 'roomy=1' }, false],
    ['Query(`room`)', { query: '' }, false],
    ['Query(`room`, ``)', { query: 'room' }, true],
    ['Query(`room`, `a b`)', { query: 'room=a+b' }, true],
    ['Query(`room`, `a b/é`)', { query: 'room=a%20b%2F%C3%A9' }, true],
    ['Query(`my key`, `1`)', { query: 'my%20key=1' }, true],
    ['Query(`room`, `a+b`)', { query: 'room=a%2Bb' }, true],
    ['Query(`room`, `a+b`)', { query: 'room=a+b' }, false],
    ['Query(`room`, `blue`)', { query: 'room=blue;x=1' }, false],
    ['Query(`room`, `blue`)', { query: 'bad=%zz&room=blue' }, true],
    ['Query(`room`)', { query: 'room=%zz' }, false],
    ['QueryRegexp(`id`, `^[0-9]+$`)', { query: 'id=x&id=17' }, true],
    ['QueryRegexp(`id`, `^[0-9]+$`)', { query: 'id=x' }, false],
    // Method: rule names are uppercased, the request method is compared as sent.
    ['Method(`GET`)', { method: 'GET' }, true],
    ['Method(`get`)', { method: 'GET' }, true],
    ['Method(`GET`)', { method: 'get' }, false],
    ['Method(`POST`, `GET`)', { method: 'GET' }, true],
    ['Method(`POST`)', { method: 'GET' }, false],
    // ClientIP: addresses, CIDRs, IPv6, IPv4-mapped IPv6 on either side.
    ['ClientIP(`192.0.2.10`)', { clientIp: '192.0.2.10' }, true],
    ['ClientIP(`192.0.2.10`)', { clientIp: '192.0.2.11' }, false],
    ['ClientIP(`10.0.0.0/8`)', { clientIp: '10.255.1.2' }, true],
    ['ClientIP(`10.0.0.0/8`)', { clientIp: '11.0.0.1' }, false],
    ['ClientIP(`10.1.2.3/8`)', { clientIp: '10.9.9.9' }, true],
    ['ClientIP(`0.0.0.0/0`)', { clientIp: '203.0.113.9' }, true],
    ['ClientIP(`192.168.1.128/25`)', { clientIp: '192.168.1.200' }, true],
    ['ClientIP(`192.168.1.128/25`)', { clientIp: '192.168.1.100' }, false],
    ['ClientIP(`10.0.0.0/8`)', { clientIp: '::ffff:10.1.2.3' }, true],
    ['ClientIP(`10.0.0.0/8`)', { clientIp: '::ffff:a01:203' }, true],
    ['ClientIP(`::ffff:10.0.0.0/104`)', { clientIp: '10.200.0.1' }, true],
    ['ClientIP(`::ffff:10.1.2.3`)', { clientIp: '10.1.2.3' }, true],
    ['ClientIP(`10.0.0.0/8`)', { clientIp: '::a01:203' }, false],
    ['ClientIP(`::1`)', { clientIp: '::1' }, true],
    ['ClientIP(`::1`)', { clientIp: '0:0:0:0:0:0:0:1' }, true],
    ['ClientIP(`::1`)', { clientIp: '::2' }, false],
    ['ClientIP(`2001:db8::/32`)', { clientIp: '2001:db8:ffff::1' }, true],
    ['ClientIP(`2001:db8::/32`)', { clientIp: '2001:db9::1' }, false],
    ['ClientIP(`2001:DB8:0:0:1::/80`)', { clientIp: '2001:db8::1:0:ab:cd' }, true],
    ['ClientIP(`2001:db8:0:0:1::/80`)', { clientIp: '2001:db8::2:0:ab:cd' }, false],
    ['ClientIP(`fe80::/10`)', { clientIp: 'febf:1::' }, true],
    ['ClientIP(`fe80::/10`)', { clientIp: 'fec0::' }, false],
    ['ClientIP(`::/0`)', { clientIp: '2001:db8::1' }, true],
    ['ClientIP(`::/0`)', { clientIp: '192.0.2.1' }, false],
    ['ClientIP(`10.0.0.0/8`, `2001:db8::/32`)', { clientIp: '2001:db8::5' }, true],
    ['ClientIP(`10.0.0.0/8`, `2001:db8::/32`)', { clientIp: '10.0.0.5' }, true],
    ['ClientIP(`10.0.0.0/8`)', { clientIp: 'not-an-ip' }, false],
    ['ClientIP(`2001:db8::/32`)', { clientIp: '2001:db8::1::2' }, false],
    // Operators, precedence (! > && > ||), parentheses, whitespace.
    [`${H('a')} && Path(\`/x\`)`, { host: 'a', path: '/x' }, true],
    [`${H('a')} && Path(\`/x\`)`, { host: 'a', path: '/y' }, false],
    [`${H('a')} || ${H('b')}`, { host: 'b' }, true],
    [`${H('a')} || ${H('b')} && Path(\`/x\`)`, { host: 'a', path: '/y' }, true],
    [`(${H('a')} || ${H('b')}) && Path(\`/x\`)`, { host: 'a', path: '/y' }, false],
    [`${H('b')} && Path(\`/x\`) || ${H('a')}`, { host: 'a', path: '/y' }, true],
    [`!${H('a')}`, { host: 'a' }, false],
    [`!${H('a')}`, { host: 'b' }, true],
    [`!${H('a')} && Path(\`/x\`)`, { host: 'b', path: '/x' }, true],
    [`!(${H('a')} && Path(\`/x\`))`, { host: 'a', path: '/y' }, true],
    [`!!${H('a')}`, { host: 'a' }, true],
    [`! ! ${H('a')}`, { host: 'b' }, false],
    [`${H('a')}&&!PathPrefix(\`/admin\`)`, { host: 'a', path: '/admin/x' }, false],
    [`\n  ${H('a')}\n\t&& ( Path( \`/x\` ,\`/y\` ) )  `, { host: 'a', path: '/y' }, true],
  ];
  for (const [rule, shape, expected] of cases) {
    it(`${rule.replace(/\s+/g, ' ')} ${expected ? 'matches' : 'does not match'} ${JSON.stringify(shape)}`, () => {
      assert.equal(matches(rule, shape), expected);
    });
  }
});

describe('parse trees', () => {
  const m = (name: string, ...args: string[]): RuleNode => ({ kind: 'matcher', name, args }) as RuleNode;
  const cases: [rule: string, tree: RuleNode][] = [
    ['Headers(`X-A`, `1`)', m('Header', 'X-A', '1')],
    ['Query(`k=v=w`)', m('Query', 'k', 'v=w')],
    ['Query(`k`)', m('Query', 'k')],
    ['Headers(`X-A`, `1`, `X-B`, `2`)', { kind: 'and', left: m('Header', 'X-A', '1'), right: m('Header', 'X-B', '2') }],
    ['Query(`a=1`, `b=`)', { kind: 'and', left: m('Query', 'a', '1'), right: m('QueryRegexp', 'b', '.*') }],
    ['HostRegexp(`^[a-z]{2}\\.example\\.com$`)', m('HostRegexp', '^[a-z]{2}\\.example\\.com$')],
    ['Path("/a\\"b\\\\c\\u00e9\\x41\\101\\n")', m('Path', '/a"b\\cé' + 'AA\n')],
    ['Path(`/a\\"b`)', m('Path', '/a\\"b')],
    [
      `${H('a')} || ${H('b')} && !${H('c')}`,
      { kind: 'or', left: m('Host', 'a'), right: { kind: 'and', left: m('Host', 'b'), right: { kind: 'not', operand: m('Host', 'c') } } },
    ],
    [
      `${H('a')} && ${H('b')} && ${H('c')}`,
      { kind: 'and', left: { kind: 'and', left: m('Host', 'a'), right: m('Host', 'b') }, right: m('Host', 'c') },
    ],
  ];
  for (const [rule, tree] of cases) {
    it(rule, () => assert.deepEqual(parseRule(rule), tree));
  }
});

describe('syntax errors', () => {
  const operand = "a matcher such as Host(...), '!' or '('";
  const cases: [rule: string, message: string][] = [
    ['Host(`a`) &&', `invalid rule 'Host(\`a\`) &&': unexpected end of rule at column 13 (expected ${operand})`],
    ['', `invalid rule '': empty rule at column 1 (expected ${operand})`],
    ['   ', `invalid rule '   ': empty rule at column 1 (expected ${operand})`],
    [
      'Hots(`a`)',
      "invalid rule 'Hots(`a`)': unknown matcher 'Hots' at column 1: did you mean 'Host'? (expected one of Host, HostRegexp, " +
        'Path, PathPrefix, PathRegexp, Header, HeaderRegexp, Query, QueryRegexp, ClientIP, Method)',
    ],
    [
      'Host(`a`) && PathPrefx(`/a`)',
      "invalid rule 'Host(`a`) && PathPrefx(`/a`)': unknown matcher 'PathPrefx' at column 14: did you mean 'PathPrefix'? " +
        '(expected one of Host, HostRegexp, Path, PathPrefix, PathRegexp, Header, HeaderRegexp, Query, QueryRegexp, ClientIP, Method)',
    ],
    [
      'Frobnicate(`a`)',
      "invalid rule 'Frobnicate(`a`)': unknown matcher 'Frobnicate' at column 1 (expected one of Host, HostRegexp, " +
        'Path, PathPrefix, PathRegexp, Header, HeaderRegexp, Query, QueryRegexp, ClientIP, Method)',
    ],
    ['(Host(`a`)', "invalid rule '(Host(`a`)': unexpected end of rule at column 11 (expected ')' to close the '(' at column 1)"],
    ['Host(`a`))', "invalid rule 'Host(`a`))': unmatched ')' at column 10 (expected '&&', '||' or end of rule)"],
    [
      '(Host(`a`) Path(`/`))',
      "invalid rule '(Host(`a`) Path(`/`))': unexpected 'Path' at column 12 (expected '&&', '||' or ')')",
    ],
    [
      'Host(`a`) Path(`/`)',
      "invalid rule 'Host(`a`) Path(`/`)': unexpected 'Path' at column 11 (expected '&&', '||' or end of rule)",
    ],
    ['&& Host(`a`)', `invalid rule '&& Host(\`a\`)': unexpected '&&' at column 1 (expected ${operand})`],
    ['Host(`a`) || || Host(`b`)', `invalid rule 'Host(\`a\`) || || Host(\`b\`)': unexpected '||' at column 14 (expected ${operand})`],
    ['!', `invalid rule '!': unexpected end of rule at column 2 (expected ${operand})`],
    ['()', `invalid rule '()': unexpected ')' at column 2 (expected ${operand})`],
    [
      'Host(`a`) & Path(`/`)',
      "invalid rule 'Host(`a`) & Path(`/`)': unexpected character '&' at column 11 (expected '&&', '||' or end of rule)",
    ],
    ['Host(`a)', "invalid rule 'Host(`a)': unterminated string at column 6 (expected a closing '`')"],
    ['Host("a)', `invalid rule 'Host("a)': unterminated string at column 6 (expected a closing '"')`],
    ['Host("a\\"', `invalid rule 'Host("a\\"': unterminated string at column 6 (expected a closing '"')`],
    ['Host("a\\q")', `invalid rule 'Host("a\\q")': invalid escape '\\q' in string at column 8 (expected an escape such as \\" or \\\\)`],
    [
      'Host("a\nb")',
      `invalid rule 'Host("a b")': newline in string at column 8 (expected a closing '"' on the same line)`,
    ],
    ['Host', "invalid rule 'Host': unexpected end of rule at column 5 (expected '(' after Host)"],
    ['Host(`a`', "invalid rule 'Host(`a`': unexpected end of rule at column 9 (expected ',' or ')')"],
    ['Host(a)', "invalid rule 'Host(a)': unexpected 'a' at column 6 (expected a string in backticks or double quotes)"],
    ['Host(`a`,)', "invalid rule 'Host(`a`,)': unexpected ')' at column 10 (expected a string in backticks or double quotes)"],
    ['Host(`a` `b`)', "invalid rule 'Host(`a` `b`)': unexpected '`b`' at column 10 (expected ',' or ')')"],
    ['Host()', "invalid rule 'Host()': Host takes at least 1 argument, got 0 at column 1 (expected Host(`example.com`))"],
    [
      'Path(`/`) && Header(`X`)',
      "invalid rule 'Path(`/`) && Header(`X`)': Header takes exactly 2 arguments, got 1 at column 14 (expected Header(`name`, `value`))",
    ],
    [
      'PathRegexp(`a`, `b`)',
      "invalid rule 'PathRegexp(`a`, `b`)': PathRegexp takes exactly 1 argument, got 2 at column 1 " +
        '(expected PathRegexp(`^/rooms/[0-9]+$`))',
    ],
    [
      'Query(`a`,`b`,`c`)',
      "invalid rule 'Query(`a`,`b`,`c`)': Query takes 1 or 2 arguments, got 3 at column 1 " +
        '(expected Query(`name`) or Query(`name`, `value`))',
    ],
    [
      'PathRegexp(`[`)',
      "invalid rule 'PathRegexp(`[`)': invalid regular expression '[': Unterminated character class at column 12 " +
        '(expected a JavaScript regular expression)',
    ],
    [
      'HeaderRegexp(`X-A`, `(a`)',
      "invalid rule 'HeaderRegexp(`X-A`, `(a`)': invalid regular expression '(a': Unterminated group at column 21 " +
        '(expected a JavaScript regular expression)',
    ],
    // Traefik v2 forms that v3 reads differently, and TCP matchers: errors naming the v3 form.
    [
      'HostRegexp(`{sub:[a-z]+}.example.com`)',
      "invalid rule 'HostRegexp(`{sub:[a-z]+}.example.com`)': Traefik v2 host template '{sub:[a-z]+}.example.com' at column 12: " +
        'in Traefik v3 HostRegexp takes a regular expression, so this would match something else ' +
        '(expected HostRegexp(`^[a-z]+\\.example\\.com$`))',
    ],
    [
      'HostRegexp(`{sub}.Example.com`)',
      "invalid rule 'HostRegexp(`{sub}.Example.com`)': Traefik v2 host template '{sub}.Example.com' at column 12: " +
        'in Traefik v3 HostRegexp takes a regular expression, so this would match something else ' +
        '(expected HostRegexp(`^[^.]+\\.example\\.com$`))',
    ],
    [
      'HostRegexp(`{cc:fr|de}.example.com`)',
      "invalid rule 'HostRegexp(`{cc:fr|de}.example.com`)': Traefik v2 host template '{cc:fr|de}.example.com' at column 12: " +
        'in Traefik v3 HostRegexp takes a regular expression, so this would match something else ' +
        '(expected HostRegexp(`^(?:fr|de)\\.example\\.com$`))',
    ],
    [
      'HostRegexp(`a.com`, `{x}.b.com`)',
      "invalid rule 'HostRegexp(`a.com`, `{x}.b.com`)': HostRegexp with 2 host templates is Traefik v2 syntax at column 1: " +
        'in Traefik v3 HostRegexp takes one regular expression (expected Host(`a.com`) || HostRegexp(`^[^.]+\\.b\\.com$`))',
    ],
    [
      'Path(`/rooms/{id:[0-9]+}`)',
      "invalid rule 'Path(`/rooms/{id:[0-9]+}`)': Traefik v2 path template '/rooms/{id:[0-9]+}' at column 6: " +
        'in Traefik v3 Path matches text as written, so this would match something else (expected PathRegexp(`^/rooms/[0-9]+$`))',
    ],
    [
      'PathPrefix(`/api/{version}/`)',
      "invalid rule 'PathPrefix(`/api/{version}/`)': Traefik v2 path template '/api/{version}/' at column 12: " +
        'in Traefik v3 PathPrefix matches text as written, so this would match something else (expected PathRegexp(`^/api/[^/]+/`))',
    ],
    [
      'Query(`id={id:[0-9]+}`)',
      "invalid rule 'Query(`id={id:[0-9]+}`)': Traefik v2 query template 'id={id:[0-9]+}' at column 7: " +
        'in Traefik v3 Query compares values as written, so this would match something else (expected QueryRegexp(`id`, `^[0-9]+$`))',
    ],
    [
      'Query(`a=1`, `b`)',
      "invalid rule 'Query(`a=1`, `b`)': 'b' is not a name=value pair at column 14 " +
        '(expected Query(`name=value`, ...) in Traefik v2, or Query(`name`, `value`))',
    ],
    [
      'Headers(`X-A`, `1`, `X-B`)',
      "invalid rule 'Headers(`X-A`, `1`, `X-B`)': Headers takes name/value pairs, got 3 at column 1 (expected Header(`name`, `value`))",
    ],
    [
      'HostSNI(`chat.example.com`)',
      "invalid rule 'HostSNI(`chat.example.com`)': HostSNI is a TCP router matcher at column 1: Sluice routers are HTTP routers, " +
        'and the certificate is chosen by SNI from tls.certificates (expected Host(`chat.example.com`))',
    ],
    [
      'HostSNI(`*`)',
      "invalid rule 'HostSNI(`*`)': HostSNI is a TCP router matcher at column 1: Sluice routers are HTTP routers, " +
        'and the certificate is chosen by SNI from tls.certificates (expected PathPrefix(`/`))',
    ],
    [
      'HostSNIRegexp(`^.+\\.example\\.com$`)',
      "invalid rule 'HostSNIRegexp(`^.+\\.example\\.com$`)': HostSNIRegexp is a TCP router matcher at column 1: Sluice routers " +
        'are HTTP routers, and the certificate is chosen by SNI from tls.certificates (expected HostRegexp(`^.+\\.example\\.com$`))',
    ],
    [
      'Host(`a`) && ALPN(`h2`)',
      "invalid rule 'Host(`a`) && ALPN(`h2`)': ALPN is a TCP router matcher at column 14: Sluice routers are HTTP routers, " +
        'and the certificate is chosen by SNI from tls.certificates (expected an HTTP matcher such as Host(`example.com`))',
    ],
    [
      'HostRegexp(`{sub:[a-z]+.example.com`)',
      "invalid rule 'HostRegexp(`{sub:[a-z]+.example.com`)': unbalanced braces in '{sub:[a-z]+.example.com' at column 12 " +
        '(expected a v2 template such as {sub:[a-z]+}.example.com)',
    ],
    [
      'ClientIP(`10.0.0.0/8`, `1.2.3.256`)',
      "invalid rule 'ClientIP(`10.0.0.0/8`, `1.2.3.256`)': invalid IP address or CIDR '1.2.3.256' at column 24 " +
        '(expected an IPv4 or IPv6 address or CIDR such as 10.0.0.0/8 or 2001:db8::/32)',
    ],
    [
      'ClientIP(`10.0.0.0/33`)',
      "invalid rule 'ClientIP(`10.0.0.0/33`)': invalid IP address or CIDR '10.0.0.0/33' at column 10 " +
        '(expected an IPv4 or IPv6 address or CIDR such as 10.0.0.0/8 or 2001:db8::/32)',
    ],
    [
      'ClientIP(`2001:db8:::1`)',
      "invalid rule 'ClientIP(`2001:db8:::1`)': invalid IP address or CIDR '2001:db8:::1' at column 10 " +
        '(expected an IPv4 or IPv6 address or CIDR such as 10.0.0.0/8 or 2001:db8::/32)',
    ],
    ['Path(`chat`)', "invalid rule 'Path(`chat`)': path 'chat' does not start with '/' at column 6 (expected a path such as /chat)"],
    [
      'PathPrefix(`/a`, `b`)',
      "invalid rule 'PathPrefix(`/a`, `b`)': path 'b' does not start with '/' at column 18 (expected a path such as /chat)",
    ],
    [
      'Header(`X A`, `1`)',
      "invalid rule 'Header(`X A`, `1`)': invalid header name 'X A' at column 8 (expected a header name such as X-Api-Version)",
    ],
    ['Host(``)', "invalid rule 'Host(``)': empty host at column 6 (expected a host name such as example.com)"],
    ['Method(`G T`)', "invalid rule 'Method(`G T`)': invalid method 'G T' at column 8 (expected a method such as GET)"],
    ['Query(`=v`)', "invalid rule 'Query(`=v`)': empty query parameter name at column 7 (expected a parameter name such as room)"],
  ];
  for (const [rule, message] of cases) {
    it(JSON.stringify(rule), () => {
      assert.throws(
        () => parseRule(rule),
        (error: unknown) => {
          assert.ok(error instanceof RuleSyntaxError, `not a RuleSyntaxError: ${String(error)}`);
          assert.equal(error.message, message);
          return true;
        },
      );
    });
  }

  it('exposes column, reason and expected separately', () => {
    try {
      parseRule('Host(`a`) &&');
      assert.fail('parseRule accepted an incomplete rule');
    } catch (error) {
      assert.ok(error instanceof RuleSyntaxError);
      assert.equal(error.column, 13);
      assert.equal(error.reason, 'unexpected end of rule');
      assert.equal(error.expected, "a matcher such as Host(...), '!' or '('");
      assert.equal(error.name, 'RuleSyntaxError');
    }
  });
});

describe('Traefik v2 forms that v3 still understands: accepted, one warning per use naming the v3 form', () => {
  const v2 = (source: string, column: number, v3: string): string => `Traefik v2 syntax '${source}' at column ${column} (Traefik v3 form: ${v3})`;
  const cases: [rule: string, warnings: string[]][] = [
    ['Host(`a.com`, `b.com`)', [v2('Host(`a.com`, `b.com`)', 1, 'Host(`a.com`) || Host(`b.com`)')]],
    ['HostHeader(`a.com`)', [v2('HostHeader(`a.com`)', 1, 'Host(`a.com`)')]],
    ['Headers(`X-A`, `1`)', [v2('Headers(`X-A`, `1`)', 1, 'Header(`X-A`, `1`)')]],
    ['HeadersRegexp(`X-A`, `^1`)', [v2('HeadersRegexp(`X-A`, `^1`)', 1, 'HeaderRegexp(`X-A`, `^1`)')]],
    ['Headers(`X-A`, `1`, `X-B`, `2`)', [v2('Headers(`X-A`, `1`, `X-B`, `2`)', 1, 'Header(`X-A`, `1`) && Header(`X-B`, `2`)')]],
    ['Path(`/a`, `/b`)', [v2('Path(`/a`, `/b`)', 1, 'Path(`/a`) || Path(`/b`)')]],
    ['PathPrefix(`/a`,`/b`)', [v2('PathPrefix(`/a`,`/b`)', 1, 'PathPrefix(`/a`) || PathPrefix(`/b`)')]],
    ['Method(`GET`, `POST`)', [v2('Method(`GET`, `POST`)', 1, 'Method(`GET`) || Method(`POST`)')]],
    ['ClientIP(`10.0.0.0/8`, `::1`)', [v2('ClientIP(`10.0.0.0/8`, `::1`)', 1, 'ClientIP(`10.0.0.0/8`) || ClientIP(`::1`)')]],
    ['Query(`room=blue`)', [v2('Query(`room=blue`)', 1, 'Query(`room`, `blue`)')]],
    ['Query(`a=1`, `b=`)', [v2('Query(`a=1`, `b=`)', 1, 'Query(`a`, `1`) && QueryRegexp(`b`, `.*`)')]],
    // Only part of the rule: the v3 form is bracketed so that it can replace the v2 one as it stands.
    [
      'Host(`a`, "b") && PathPrefix(`/ws`)',
      [v2('Host(`a`, "b")', 1, '(Host(`a`) || Host("b"))')],
    ],
    [
      'Headers(`X-A`, `1`) && (Path(`/a`, `/b`) || !Method(`GET`, `HEAD`))',
      [
        v2('Headers(`X-A`, `1`)', 1, 'Header(`X-A`, `1`)'),
        v2('Path(`/a`, `/b`)', 25, '(Path(`/a`) || Path(`/b`))'),
        v2('Method(`GET`, `HEAD`)', 46, '(Method(`GET`) || Method(`HEAD`))'),
      ],
    ],
    // v3 forms warn about nothing.
    ['Host(`a`) && Header(`X-A`, `1`) && Query(`k`, `v`) && Query(`k`) && HostRegexp(`^a\\.`)', []],
  ];
  for (const [rule, expected] of cases) {
    it(rule, () => {
      const warnings: string[] = [];
      parseRule(rule, warnings);
      assert.deepEqual(warnings, expected);
    });
  }

  it('a v2 form parses the same whether or not warnings are collected', () => {
    const rule = 'Headers(`X-A`, `1`, `X-B`, `2`) && Query(`a=1`)';
    assert.deepEqual(parseRule(rule), parseRule(rule, []));
  });
});

describe('RouterTable', () => {
  const router = (name: string, rule: string, entryPoints: number[]): RouterSpec => ({
    name,
    rule,
    ast: parseRule(rule),
    priority: 0,
    service: 0,
    entryPoints,
    tls: false,
    middlewares: [],
  });
  // Already in priority order, as the snapshot delivers them.
  const routers = [
    router('admin', 'Host(`a.com`) && PathPrefix(`/admin`)', [0]),
    router('site', 'Host(`a.com`)', [0, 1]),
    router('internal', 'ClientIP(`10.0.0.0/8`)', [1]),
    router('anything', 'PathPrefix(`/`)', [2]),
  ];
  const table = new RouterTable(routers, 3);

  const cases: [name: string, entryPoint: number, shape: RequestShape, expected: number][] = [
    ['first matching router wins over a later one', 0, { host: 'a.com', path: '/admin/x' }, 0],
    ['falls through to the next router', 0, { host: 'a.com', path: '/chat' }, 1],
    ['no router matches', 0, { host: 'b.com', path: '/' }, -1],
    ['routers on other entry points are ignored', 0, { host: 'b.com', clientIp: '10.0.0.1' }, -1],
    ['a router listed on two entry points serves both', 1, { host: 'a.com', path: '/admin' }, 1],
    ['second entry point, second router', 1, { host: 'b.com', clientIp: '10.0.0.1' }, 2],
    ['third entry point', 2, { host: 'a.com', path: '/admin' }, 3],
    ['unknown entry point', 3, { host: 'a.com' }, -1],
  ];
  for (const [name, entryPoint, shape, expected] of cases) {
    it(name, () => assert.equal(table.match(entryPoint, request(shape)), expected));
  }

  it('an entry point without routers matches nothing', () => {
    assert.equal(new RouterTable(routers, 4).match(3, request()), -1);
  });

  it('refuses a router that names a missing entry point', () => {
    assert.throws(() => new RouterTable(routers, 2), {
      name: 'RangeError',
      message: "router 'anything' refers to entry point #2, but there are 2",
    });
  });
});
