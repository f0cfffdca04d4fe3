/**
 * One table of Traefik middleware cases, run against plain HTTP requests and against WebSocket upgrades
 * (Hono's shared-suite style: test/middlewares-http.test.ts and test/middlewares-upgrade.test.ts each call
 * runMiddlewareCases with their way of sending). Each case names the request, and what the client and the
 * backend must see. One Sluice serves every case: a router per case, each with its middlewares, in front of
 * one backend that answers HTTP with the request it saw and greets an upgraded WebSocket with the same.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import bcrypt from 'bcryptjs';
import { WebSocket } from 'ws';
import { startSluice, type SluiceProcess } from './sluice.js';
import { fetchRaw, startHttpBackend, type HttpBackend } from './http-backend.js';

/** What one request came to. */
export interface Outcome {
  /** 101 for an upgrade that went through, else the answer's status. */
  readonly status: number;
  /** Response headers (lowercase; repeated ones joined with ', ' except set-cookie, kept as a list). */
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
  /** The request as the backend saw it, when it got there. */
  readonly backend: { url: string; headers: Record<string, string> } | null;
}

export type Send = (port: number, path: string, headers: Record<string, string>) => Promise<Outcome>;

interface Case {
  readonly name: string;
  /** Only for one kind (CORS preflights exist only in HTTP). */
  readonly only?: 'http' | 'upgrade';
  readonly path: string;
  readonly headers?: Record<string, string>;
  readonly method?: string;
  check(outcome: Outcome, context: CaseContext): void;
}

interface CaseContext {
  readonly kind: 'http' | 'upgrade';
  readonly port: number;
  /** Requests the authentication service received. */
  readonly authRequests: http.IncomingHttpHeaders[];
}

const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

function passed(outcome: Outcome, kind: 'http' | 'upgrade'): { url: string; headers: Record<string, string> } {
  assert.equal(outcome.status, kind === 'http' ? 200 : 101, `expected the request to reach the backend, got ${outcome.status} ${outcome.body}`);
  assert.ok(outcome.backend !== null, 'the backend saw nothing');
  return outcome.backend;
}

const CASES: readonly Case[] = [
  {
    name: 'headers: custom request headers are set, replaced and removed (an empty value removes)',
    path: '/hdr/x',
    headers: { 'x-remove-me': 'gone', origin: 'https://evil.test' },
    check(o, c) {
      const seen = passed(o, c.kind);
      assert.equal(seen.headers['x-added'], 'yes');
      assert.equal(seen.headers.origin, 'https://app.example.com');
      assert.equal(seen.headers['x-remove-me'], undefined);
      assert.equal(o.headers['x-response'], 'set-by-sluice');
      assert.equal(o.headers['x-frame-options'], 'DENY');
    },
  },
  {
    name: 'headers: a CORS preflight is answered by Sluice and never reaches the backend',
    only: 'http',
    path: '/cors/x',
    method: 'OPTIONS',
    headers: { origin: 'https://app.example.com', 'access-control-request-method': 'PUT' },
    check(o) {
      assert.equal(o.status, 200);
      assert.equal(o.backend, null);
      assert.equal(o.headers['access-control-allow-origin'], 'https://app.example.com');
      assert.equal(o.headers['access-control-allow-methods'], 'GET,PUT');
      assert.equal(o.headers['access-control-allow-headers'], 'X-Token');
      assert.equal(o.headers['access-control-max-age'], '600');
      assert.equal(o.headers['access-control-allow-credentials'], 'true');
    },
  },
  {
    name: 'headers: an allowed origin is echoed with Vary: Origin; another origin gets no CORS header',
    path: '/cors/y',
    headers: { origin: 'https://app.example.com' },
    check(o, c) {
      passed(o, c.kind);
      assert.equal(o.headers['access-control-allow-origin'], 'https://app.example.com');
      assert.match(String(o.headers.vary), /Origin/);
    },
  },
  {
    name: 'headers: an origin outside the list gets no Access-Control-Allow-Origin',
    path: '/cors/z',
    headers: { origin: 'https://other.test' },
    check(o, c) {
      passed(o, c.kind);
      assert.equal(o.headers['access-control-allow-origin'], undefined);
    },
  },
  {
    name: 'stripPrefix: the first matching prefix goes, X-Forwarded-Prefix says which',
    path: '/strip/api/items?id=7',
    check(o, c) {
      const seen = passed(o, c.kind);
      assert.equal(seen.url, '/items?id=7');
      assert.equal(seen.headers['x-forwarded-prefix'], '/strip/api');
    },
  },
  {
    name: 'stripPrefix: a path equal to the prefix becomes /',
    path: '/strip/api',
    check(o, c) {
      assert.equal(passed(o, c.kind).url, '/');
    },
  },
  {
    name: 'stripPrefixRegex: the matched start of the path goes',
    path: '/sre/v42/items',
    check(o, c) {
      const seen = passed(o, c.kind);
      assert.equal(seen.url, '/items');
      assert.equal(seen.headers['x-forwarded-prefix'], '/sre/v42');
    },
  },
  {
    name: 'replacePath: the path is replaced, the query kept, X-Replaced-Path has the original',
    path: '/wsk/anything/here?EIO=4&transport=websocket',
    check(o, c) {
      const seen = passed(o, c.kind);
      assert.equal(seen.url, '/socket.io/?EIO=4&transport=websocket');
      assert.equal(seen.headers['x-replaced-path'], '/wsk/anything/here');
    },
  },
  {
    name: 'replacePathRegex: Go-style $1 and ${name} groups',
    path: '/rpr/users/42/profile',
    check(o, c) {
      const seen = passed(o, c.kind);
      assert.equal(seen.url, '/v2/profile-of-42');
      assert.equal(seen.headers['x-replaced-path'], '/rpr/users/42/profile');
    },
  },
  {
    name: 'addPrefix: the prefix goes in front',
    path: '/ap/x',
    check(o, c) {
      assert.equal(passed(o, c.kind).url, '/prefixed/ap/x');
    },
  },
  {
    name: 'redirectScheme: a plain request is sent to https on the configured port (301 when permanent)',
    path: '/rs/page?q=1',
    headers: { host: 'site.test:8080' },
    check(o) {
      assert.equal(o.status, 301);
      assert.equal(o.headers.location, 'https://site.test:8443/rs/page?q=1');
      assert.equal(o.backend, null);
    },
  },
  {
    name: 'redirectRegex: a matching URL is redirected to the replacement (302)',
    path: '/old/a/b',
    headers: { host: 'site.test' },
    check(o) {
      assert.equal(o.status, 302);
      assert.equal(o.headers.location, 'http://site.test/new/a/b');
    },
  },
  {
    name: 'chain: its middlewares apply in order, nested chains included',
    path: '/chain/x',
    check(o, c) {
      const seen = passed(o, c.kind);
      assert.equal(seen.url, '/outer/inner/x');
      assert.equal(seen.headers['x-added'], 'yes');
    },
  },
  {
    name: 'router middlewares apply in the order listed',
    path: '/order/x',
    check(o, c) {
      // addPrefix first (/p/order/x), then stripPrefix /p: back to /order/x
      assert.equal(passed(o, c.kind).url, '/order/x');
    },
  },
  {
    name: 'basicAuth: no credentials is a 401 with the realm, and nothing reaches the backend',
    path: '/auth/x',
    check(o) {
      assert.equal(o.status, 401);
      assert.equal(o.headers['www-authenticate'], 'Basic realm="private"');
      assert.equal(o.backend, null);
    },
  },
  {
    name: 'basicAuth: a wrong password is a 401',
    path: '/auth/x',
    headers: { authorization: basic('bob', 'wrong') },
    check(o) {
      assert.equal(o.status, 401);
    },
  },
  {
    name: 'basicAuth: bcrypt, SHA-1 and apr1 users pass; the header is removed and the user named',
    path: '/auth/x',
    headers: { authorization: basic('bob', 'bcrypt-pass') },
    check(o, c) {
      const seen = passed(o, c.kind);
      assert.equal(seen.headers.authorization, undefined);
      assert.equal(seen.headers['x-user'], 'bob');
    },
  },
  {
    name: 'basicAuth: a SHA-1 user passes',
    path: '/auth/sha',
    headers: { authorization: basic('sha', 'sha-pass') },
    check(o, c) {
      assert.equal(passed(o, c.kind).headers['x-user'], 'sha');
    },
  },
  {
    name: 'basicAuth: an apr1 user from usersFile passes, with a non-ASCII password',
    path: '/auth/apr',
    headers: { authorization: basic('apr', 'pässwörd') },
    check(o, c) {
      assert.equal(passed(o, c.kind).headers['x-user'], 'apr');
    },
  },
  {
    name: 'forwardAuth: a 2xx lets the request on, with the auth headers replacing what the client sent',
    path: '/fa/x?y=1',
    headers: { authorization: 'Bearer good', 'x-auth-user': 'forged' },
    check(o, c) {
      const seen = passed(o, c.kind);
      assert.equal(seen.headers['x-auth-user'], 'alice');
      const asked = c.authRequests.at(-1)!;
      assert.equal(asked['x-forwarded-uri'], '/fa/x?y=1');
      assert.equal(asked['x-forwarded-method'], 'GET');
      assert.equal(asked['x-forwarded-proto'], c.kind === 'http' ? 'http' : 'ws');
      assert.equal(asked.authorization, 'Bearer good');
      assert.match(String(o.headers['set-cookie']), /session=abc/);
    },
  },
  {
    name: "forwardAuth: the service's 401 goes back to the client as it came, and nothing reaches the backend",
    path: '/fa/x',
    headers: { authorization: 'Bearer bad' },
    check(o) {
      assert.equal(o.status, 401);
      assert.equal(o.headers['www-authenticate'], 'Bearer error="invalid_token"');
      assert.equal(o.body, 'denied by auth\n');
      assert.equal(o.backend, null);
    },
  },
  {
    name: "forwardAuth: the service's redirect goes back with its Location made absolute",
    path: '/fa/x',
    check(o) {
      assert.equal(o.status, 302);
      assert.match(String(o.headers.location), /^http:\/\/127\.0\.0\.1:\d+\/login\?next=%2Ffa%2Fx$/);
      assert.equal(o.backend, null);
    },
  },
];

/** Run every case (those for `kind`) through one Sluice. */
export function runMiddlewareCases(kind: 'http' | 'upgrade', send: Send): void {
  describe(`Traefik middlewares on ${kind === 'http' ? 'plain HTTP requests' : 'WebSocket upgrades'}`, () => {
    let sluice: SluiceProcess | undefined;
    let backend: HttpBackend | undefined;
    let auth: http.Server | undefined;
    const authRequests: http.IncomingHttpHeaders[] = [];
    const dir = mkdtempSync(path.join(tmpdir(), 'sluice-mw-'));
    before(async () => {
      backend = await startHttpBackend('mw');
      auth = http.createServer((req, res) => {
        authRequests.push(req.headers);
        if (req.headers.authorization === 'Bearer good') {
          res.writeHead(200, { 'x-auth-user': 'alice', 'x-other': 'not copied', 'set-cookie': ['session=abc; Path=/', 'tracking=1'] }).end();
        } else if (req.headers.authorization === 'Bearer bad') {
          res.writeHead(401, { 'www-authenticate': 'Bearer error="invalid_token"', 'content-type': 'text/plain' }).end('denied by auth\n');
        } else {
          res.writeHead(302, { location: `/login?next=${encodeURIComponent(String(req.headers['x-forwarded-uri']))}` }).end();
        }
      });
      await new Promise<void>((resolve) => auth!.listen(0, '127.0.0.1', () => resolve()));
      const authPort = (auth.address() as AddressInfo).port;
      const bcryptHash = bcrypt.hashSync('bcrypt-pass', 5).replace(/^\$2b\$/, '$2y$');
      const shaHash = `{SHA}${createHash('sha1').update('sha-pass').digest('base64')}`;
      const apr1Hash = execFileSync('openssl', ['passwd', '-apr1', '-salt', 'Zq9xY2kL', 'pässwörd'], { encoding: 'utf8' }).trim();
      const usersFile = path.join(dir, 'htpasswd');
      writeFileSync(usersFile, `# users\napr:${apr1Hash}\n`);
      const router = (name: string, prefix: string, middlewares: string[]): string =>
        `    ${name}: { rule: "PathPrefix(\`${prefix}\`)", service: mw, middlewares: [${middlewares.join(', ')}] }\n`;
      sluice = await startSluice(`entryPoints: { web: { address: "127.0.0.1:{PORT}" } }
http:
  routers:
${router('hdr', '/hdr', ['custom'])}${router('cors', '/cors', ['cors'])}${router('strip', '/strip', ['strip'])}${router('sre', '/sre', ['sre'])}${router('wsk', '/wsk', ['wsk'])}${router('rpr', '/rpr', ['rpr'])}${router('ap', '/ap', ['ap'])}${router('rs', '/rs', ['rs'])}${router('old', '/old', ['old'])}${router('chain', '/chain', ['outer@file'])}${router('order', '/order', ['addP', 'stripP'])}${router('auth', '/auth', ['users'])}${router('fa', '/fa', ['fa'])}
  services:
    mw: { loadBalancer: { servers: [ { url: "${backend.url}" } ] } }
  middlewares:
    custom:
      headers:
        customRequestHeaders: { X-Added: "yes", Origin: "https://app.example.com", X-Remove-Me: "" }
        customResponseHeaders: { X-Response: "set-by-sluice" }
        frameDeny: true
    cors:
      headers:
        accessControlAllowOriginList: [ "https://app.example.com" ]
        accessControlAllowMethods: [ GET, PUT ]
        accessControlAllowHeaders: [ X-Token ]
        accessControlMaxAge: 600
        accessControlAllowCredentials: true
        addVaryHeader: true
    strip: { stripPrefix: { prefixes: [ "/nope", "/strip/api" ] } }
    sre: { stripPrefixRegex: { regex: [ "/sre/v[0-9]+" ] } }
    wsk: { replacePath: { path: "/socket.io/" } }
    rpr: { replacePathRegex: { regex: "^/rpr/users/(?P<id>[0-9]+)/(.*)$", replacement: "/v2/$2-of-\${id}" } }
    ap: { addPrefix: { prefix: "/prefixed" } }
    rs: { redirectScheme: { scheme: https, port: "8443", permanent: true } }
    old: { redirectRegex: { regex: "^http://([^/]+)/old/(.*)", replacement: "http://\${1}/new/$2" } }
    inner: { addPrefix: { prefix: "/inner" } }
    outerPrefix: { addPrefix: { prefix: "/outer" } }
    innerChain: { chain: { middlewares: [ custom, inner ] } }
    outer: { chain: { middlewares: [ strip1, innerChain, outerPrefix ] } }
    strip1: { stripPrefix: { prefixes: [ "/chain" ] } }
    addP: { addPrefix: { prefix: "/p" } }
    stripP: { stripPrefix: { prefixes: [ "/p" ] } }
    users:
      basicAuth:
        users: [ "bob:${bcryptHash}", "sha:${shaHash}" ]
        usersFile: "${usersFile}"
        realm: private
        removeHeader: true
        headerField: X-User
    fa:
      forwardAuth:
        address: "http://127.0.0.1:${authPort}/verify"
        authResponseHeaders: [ X-Auth-User ]
        addAuthCookiesToResponse: [ session ]
`);
    });
    after(async () => {
      await sluice?.stop();
      await backend?.close();
      await new Promise<void>((resolve) => (auth === undefined ? resolve() : auth.close(() => resolve())));
      rmSync(dir, { recursive: true, force: true });
    });

    for (const c of CASES) {
      if (c.only !== undefined && c.only !== kind) continue;
      test(c.name, async () => {
        const headers = { ...(c.headers ?? {}), ...(c.method !== undefined ? { 'x-method': c.method } : {}) };
        const outcome = await send(sluice!.port, c.path, headers);
        c.check(outcome, { kind, port: sluice!.port, authRequests });
      });
    }
  });
}

/** Plain HTTP: the backend's JSON echo is what it saw. `x-method` (test-only) picks the method. */
export const sendHttp: Send = async (port, path, headers) => {
  const { 'x-method': method, ...rest } = headers;
  const answer = await fetchRaw(`http://127.0.0.1:${port}${path}`, { method: method ?? 'GET', headers: rest });
  const fromBackend = answer.headers['x-backend'] === 'mw';
  return {
    status: answer.status,
    headers: answer.headers,
    body: answer.text(),
    backend: fromBackend ? answer.json<{ url: string; headers: Record<string, string> }>() : null,
  };
};

/** An upgrade: the backend's first message is what it saw; a refusal comes back as an answer. */
export const sendUpgrade: Send = (port, path, headers) =>
  new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, { headers, perMessageDeflate: false });
    let upgradeHeaders: http.IncomingHttpHeaders = {};
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`no answer to the upgrade of ${path}`));
    }, 5000);
    ws.on('upgrade', (res) => (upgradeHeaders = res.headers));
    ws.once('message', (data) => {
      clearTimeout(timer);
      ws.terminate();
      resolve({ status: 101, headers: upgradeHeaders, body: '', backend: JSON.parse(String(data)) as { url: string; headers: Record<string, string> } });
    });
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => {
        clearTimeout(timer);
        ws.terminate();
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, backend: null });
      });
    });
    ws.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
