/**
 * Sticky sessions: the 101 carries a signed cookie naming the backend; a client that presents it
 * returns there; a forged, stale or foreign cookie falls back to the balancer and gets a new one;
 * a cookie whose backend died is replaced after a retry; two Sluice processes with the same secret
 * honour each other's cookies.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startSluice, simpleConfig, type SluiceProcess } from './helpers/sluice.js';
import { cookiePair, reach, reachBackend, startPoolBackend, type PoolBackend, type Reached } from './helpers/pool.js';
import { StickyCookies, cookieValue, stickyValue } from '../src/balancer/sticky.js';

const STICKY = `        sticky:
          cookie:
            name: sid
            httpOnly: true
            sameSite: lax
loadBalancer:
  stickySecret: "test-secret-1"
`;

function config(backends: readonly PoolBackend[]): string {
  return simpleConfig(backends.map((b) => b.url), STICKY);
}

describe('sticky cookie', () => {
  let backends: PoolBackend[] = [];
  let sluice: SluiceProcess | undefined;
  let other: SluiceProcess | undefined;
  const open: Reached[] = [];

  before(async () => {
    backends = await Promise.all(['b0', 'b1', 'b2'].map((n) => startPoolBackend(n)));
    sluice = await startSluice(config(backends));
  });

  after(async () => {
    for (const r of open) r.ws.terminate();
    await sluice?.stop();
    await other?.stop();
    await Promise.all(backends.map((b) => b.kill()));
  });

  async function keep(attempt: Promise<Reached>): Promise<Reached> {
    const reached = await attempt;
    open.push(reached);
    return reached;
  }

  test('the 101 sets a signed cookie with the configured attributes, and reconnects return to its backend', async () => {
    const first = await keep(reachBackend(sluice!.url));
    assert.match(first.setCookie, /^sid=[A-Za-z0-9_-]{22}; Path=\/; HttpOnly; SameSite=Lax$/);
    assert.ok(!first.setCookie.includes(String(backends[0]!.port)), 'the cookie must not reveal the address');
    const cookie = cookiePair(first.setCookie);
    // Without the cookie leastconn would spread these over all three backends.
    for (let i = 0; i < 6; i++) {
      const again = await keep(reachBackend(sluice!.url, { cookie: `theme=dark; ${cookie}` }));
      assert.equal(again.backend, first.backend, `reconnect ${i}`);
      assert.equal(again.setCookie, '', 'a valid cookie is not set again');
    }
  });

  test('a forged, stale or foreign cookie falls back to the balancer and is replaced', async () => {
    const foreign = stickyValue('another-secret', 'pool', backends[0]!.url);
    for (const value of ['forged', 'AAAAAAAAAAAAAAAAAAAAAA', foreign, '']) {
      const reached = await keep(reachBackend(sluice!.url, { cookie: `sid=${value}` }));
      assert.ok(['b0', 'b1', 'b2'].includes(reached.backend));
      assert.match(reached.setCookie, /^sid=[A-Za-z0-9_-]{22};/, `cookie '${value}' must be replaced`);
      // The new cookie works.
      const back = await keep(reachBackend(sluice!.url, { cookie: cookiePair(reached.setCookie) }));
      assert.equal(back.backend, reached.backend);
    }
  });

  test('two Sluice processes with the same secret honour each other\'s cookies', async () => {
    other = await startSluice(config(backends));
    const byBackend = new Map<string, string>();
    for (let i = 0; i < 9 && byBackend.size < 3; i++) {
      const reached = await keep(reachBackend(sluice!.url, { cookie: 'sid=none' }));
      byBackend.set(reached.backend, cookiePair(reached.setCookie));
    }
    assert.equal(byBackend.size, 3, 'leastconn should have handed out cookies for all three backends');
    for (const [backend, cookie] of byBackend) {
      for (let i = 0; i < 2; i++) {
        const there = await keep(reachBackend(other.url, { cookie }));
        assert.equal(there.backend, backend, `the other replica sent ${cookie} to ${there.backend}`);
        assert.equal(there.setCookie, '');
      }
    }
  });

  test('a cookie whose backend died lands elsewhere (after a retry) and is reset', async () => {
    const victim = backends[2]!;
    let cookie = '';
    for (let i = 0; i < 9 && cookie === ''; i++) {
      const reached = await keep(reachBackend(sluice!.url, { cookie: 'sid=none' }));
      if (reached.backend === victim.name) cookie = cookiePair(reached.setCookie);
    }
    assert.notEqual(cookie, '', 'no cookie for the victim backend');
    await victim.kill();
    const moved = await keep(reachBackend(sluice!.url, { cookie }));
    assert.notEqual(moved.backend, victim.name);
    assert.match(moved.setCookie, /^sid=/);
    assert.notEqual(cookiePair(moved.setCookie), cookie);
    const back = await keep(reachBackend(sluice!.url, { cookie: cookiePair(moved.setCookie) }));
    assert.equal(back.backend, moved.backend);
    await victim.revive();
  });
});

describe('sticky cookie without a configured secret', () => {
  test('a random secret is used and logged; cookies still hold within the process', async () => {
    const backend = await startPoolBackend('only');
    const sluice = await startSluice(simpleConfig([backend.url], '        sticky: { cookie: {} }\n'));
    try {
      assert.match(sluice.stderr(), /sticky cookies are signed with a random secret/);
      const first = await reach(sluice.url);
      assert.ok('ws' in first);
      // Traefik's default name: '_' and 6 hex digits of SHA-1 of the service name.
      assert.match(first.setCookie, /^_[0-9a-f]{6}=[A-Za-z0-9_-]{22}; Path=\/$/);
      first.ws.terminate();
    } finally {
      await sluice.stop();
      await backend.kill();
    }
  });
});

describe('cookie parsing', () => {
  test('finds the named cookie among others, quoted or not, and nothing else', () => {
    assert.equal(cookieValue('a=1; sid=abc; b=2', 'sid'), 'abc');
    assert.equal(cookieValue('sid="abc"', 'sid'), 'abc');
    assert.equal(cookieValue('xsid=abc; sid2=def', 'sid'), '');
    assert.equal(cookieValue('', 'sid'), '');
    assert.equal(cookieValue('sid=', 'sid'), '');
  });

  test('StickyCookies maps values back to backends, and forgets a slot that lost its address', () => {
    const service = {
      name: 'pool',
      backends: [0, 1],
      sticky: { cookieName: 'sid', attributes: '; Path=/' },
    } as unknown as ConstructorParameters<typeof StickyCookies>[0];
    const specs = [
      { url: 'ws://10.0.0.1:9000', dnsName: '' },
      { url: 'ws://pool.internal:9000', dnsName: 'pool.internal' },
    ] as unknown as ConstructorParameters<typeof StickyCookies>[1];
    const cookies = new StickyCookies(service, specs, 's3cret');
    const set0 = cookies.setCookieFor(0);
    assert.equal(cookies.backendFor(cookiePair(set0)), 0);
    assert.equal(cookies.setCookieFor(1), '', 'an empty discovery slot has no cookie');
    cookies.setIdentity(1, 'ws://10.0.0.7:9000');
    assert.equal(cookies.backendFor(cookiePair(cookies.setCookieFor(1))), 1);
    const old = cookiePair(cookies.setCookieFor(1));
    cookies.setIdentity(1, '');
    assert.equal(cookies.backendFor(old), -1);
  });
});
