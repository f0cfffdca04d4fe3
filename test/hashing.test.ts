/**
 * Consistent hashing with bounded load: a key maps to the same backend in two processes; removing
 * one backend of five moves about a fifth of the keys (only that backend's); a skewed key set
 * never pushes a backend past the bound; weights shift the share. Then through two real Sluice
 * processes: the same header value reaches the same backend in both.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { HashRing, hashString } from '../src/balancer/hash.js';
import { createShared } from '../src/shared/layout.js';
import { startSluice, type SluiceProcess } from './helpers/sluice.js';
import { reachBackend, startPoolBackend, type PoolBackend, type Reached } from './helpers/pool.js';
import { seededRandom } from './helpers/wait.js';

const NONE = new Int32Array(0);
const urls = (n: number): string[] => Array.from({ length: n }, (_, i) => `ws://10.0.0.${i + 1}:9000`);

function ring(identities: readonly string[], factor = 1.25, weights?: number[]): { ring: HashRing; shared: ReturnType<typeof createShared> } {
  const shared = createShared(identities.length, 1);
  const backends = identities.map((_, i) => i);
  return { ring: new HashRing(backends, shared, { weights }, identities, factor), shared };
}

const keyOf = (text: string): { hashKey: number; stickyBackend: number } => ({ hashKey: hashString(text), stickyBackend: -1 });

describe('rendezvous hashing', () => {
  test('the same key maps to the same backend in separate instances; backends are named by URL, not index', () => {
    const a = ring(urls(5)).ring;
    // The same servers listed in another order (another process, another config) agree by URL.
    const reversed = urls(5).reverse();
    const b = ring(reversed).ring;
    for (let i = 0; i < 200; i++) {
      const key = keyOf(`user-${i}`);
      const inA = urls(5)[a.pick(NONE, 0, key)];
      const inB = reversed[b.pick(NONE, 0, key)];
      assert.equal(inA, inB, `key user-${i}`);
    }
  });

  test('removing one backend of five moves about a fifth of the keys, and only the keys it held', () => {
    const five = ring(urls(5)).ring;
    const { ring: four, shared } = ring(urls(5));
    Atomics.store(shared.backendUp, 2, 0); // as good as removed
    let moved = 0;
    const keys = 5000;
    for (let i = 0; i < keys; i++) {
      const key = keyOf(`session:${i}`);
      const before = five.pick(NONE, 0, key);
      const after = four.pick(NONE, 0, key);
      if (before !== after) {
        moved++;
        assert.equal(before, 2, `key ${i} moved from ${before}, which was not removed`);
      }
    }
    assert.ok(moved > keys * 0.17 && moved < keys * 0.23, `${moved} of ${keys} keys moved (expected about ${keys / 5})`);
  });

  test('keys spread evenly: each of five backends gets a fifth, within 10%', () => {
    const { ring: r } = ring(urls(5));
    const counts = [0, 0, 0, 0, 0];
    for (let i = 0; i < 10_000; i++) counts[r.pick(NONE, 0, keyOf(`k${i}`))]!++;
    for (const c of counts) assert.ok(Math.abs(c - 2000) < 200, counts.join(','));
  });

  test('with a skewed key set no backend ever exceeds balanceFactor x the average', () => {
    const factor = 1.25;
    const { ring: r, shared } = ring(urls(5), factor);
    const random = seededRandom(7);
    // 80% of the connections carry one of three hot keys.
    for (let i = 0; i < 1000; i++) {
      const key = random() < 0.8 ? `hot-${Math.floor(random() * 3)}` : `cold-${i}`;
      const b = r.pick(NONE, 0, keyOf(key));
      const total = i + 1;
      Atomics.add(shared.backendActive, b, 1);
      const bound = Math.ceil((factor * total) / 5);
      assert.ok(shared.backendActive[b]! <= bound, `after ${total}: backend ${b} holds ${shared.backendActive[b]} > ${bound}`);
    }
    // And a hot key stays put while its backend has room.
    const { ring: calm } = ring(urls(5), factor);
    assert.equal(calm.pick(NONE, 0, keyOf('hot-0')), calm.pick(NONE, 0, keyOf('hot-0')));
  });

  test('a full backend overflows its keys to their second choice, the same one each time', () => {
    const { ring: r, shared } = ring(urls(5), 1.25);
    const key = keyOf('popular');
    const first = r.pick(NONE, 0, key);
    shared.backendActive.set([10, 10, 10, 10, 10]);
    shared.backendActive[first] = 14; // bound ceil(1.25 * 55 / 5) = 14: full
    const second = r.pick(NONE, 0, key);
    assert.notEqual(second, first);
    assert.equal(r.pick(NONE, 0, key), second);
  });

  test('weights shift the share of keys', () => {
    const { ring: r } = ring(urls(2), 100, [3, 1]);
    let heavy = 0;
    for (let i = 0; i < 8000; i++) if (r.pick(NONE, 0, keyOf(`w${i}`)) === 0) heavy++;
    assert.ok(Math.abs(heavy - 6000) < 250, `${heavy} of 8000 to the weight-3 backend`);
  });
});

describe('hashing through two Sluice processes', () => {
  let backends: PoolBackend[] = [];
  const sluices: SluiceProcess[] = [];
  const open: Reached[] = [];

  before(async () => {
    backends = await Promise.all(['h0', 'h1', 'h2', 'h3'].map((n) => startPoolBackend(n)));
    const config = `entryPoints:
  web: { address: "127.0.0.1:{PORT}" }
http:
  routers:
    all: { rule: "PathPrefix(\`/\`)", service: pool }
  services:
    pool:
      loadBalancer:
        strategy: hash
        hash: { key: "header:X-User", balanceFactor: 100 }
        servers:
${backends.map((b) => `          - url: "${b.url}"`).join('\n')}
`;
    sluices.push(await startSluice(config), await startSluice(config, { workers: 2 }));
  });

  after(async () => {
    for (const r of open) r.ws.terminate();
    await Promise.all(sluices.map((s) => s.stop()));
    await Promise.all(backends.map((b) => b.kill()));
  });

  test('the same X-User reaches the same backend through either process, and users spread', async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 16; i++) {
      const headers = { 'x-user': `user-${i}` };
      const viaA = await reachBackend(sluices[0]!.url, headers);
      const viaB = await reachBackend(sluices[1]!.url, headers);
      const again = await reachBackend(sluices[0]!.url, headers);
      open.push(viaA, viaB, again);
      assert.equal(viaB.backend, viaA.backend, `user-${i}`);
      assert.equal(again.backend, viaA.backend, `user-${i} again`);
      seen.add(viaA.backend);
    }
    assert.ok(seen.size >= 3, `16 users landed on only ${[...seen].join(', ')}`);
  });
});
