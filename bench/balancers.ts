/**
 * Cost of one pick per balancing policy, over pools of 3, 16 and 100 backends with live counts
 * changing between picks (as concurrent upgrades change them): nanoseconds per pick and heap bytes
 * allocated per pick (from process.memoryUsage around a run with GC off the measured path, so a
 * policy that allocates shows it). Run: `npm run build && node --expose-gc dist/bench/balancers.js`.
 */
import { createShared } from '../src/shared/layout.js';
import { LeastConnections } from '../src/balancer/leastconn.js';
import { RoundRobin } from '../src/balancer/roundrobin.js';
import { WeightedRoundRobin } from '../src/balancer/weighted.js';
import { HashRing, hashString } from '../src/balancer/hash.js';
import { StickyBalancer } from '../src/balancer/sticky.js';
import type { Balancer, BackendState, PickRequest } from '../src/balancer/balancer.js';

const PICKS = 2_000_000;
const gc = (globalThis as { gc?: () => void }).gc;

type Policy = [string, (backends: number[], state: BackendState) => Balancer];
const policies: Policy[] = [
  ['leastconn', (b, s) => new LeastConnections(b, s)],
  ['leastconn + slowStart', (b, s) => new LeastConnections(b, s, { slowStartMs: 30_000 })],
  ['roundrobin', (b, s) => new RoundRobin(b, s)],
  ['roundrobin weighted', (b, s) => new WeightedRoundRobin(b, s, { weights: b.map((_, i) => 1 + (i % 3)) })],
  ['hash (bounded load)', (b, s) => new HashRing(b, s, {}, b.map((i) => `ws://10.0.${i >> 8}.${i & 255}:9000`), 1.25)],
  ['sticky over leastconn', (b, s) => new StickyBalancer(new LeastConnections(b, s), b, s)],
];

const tried = new Int32Array(3);
const rows: string[] = ['| policy | backends | ns/pick | bytes allocated/pick |', '|---|---:|---:|---:|'];
for (const size of [3, 16, 100]) {
  for (const [name, make] of policies) {
    const shared = createShared(size, 1);
    const backends = Array.from({ length: size }, (_, i) => i);
    const balancer = make(backends, shared);
    // Keys and sticky targets vary per pick, as they would per request; the request object is reused
    // (the upgrade's Handshake plays this part).
    const request: { hashKey: number; stickyBackend: number } = { hashKey: 0, stickyBackend: -1 };
    const keys = Uint32Array.from({ length: 1024 }, (_, i) => hashString(`user-${i}`));
    const run = (n: number): number => {
      let sink = 0;
      for (let i = 0; i < n; i++) {
        request.hashKey = keys[i & 1023]!;
        request.stickyBackend = (i & 7) === 0 ? i % size : -1;
        const b = balancer.pick(tried, 0, request as PickRequest);
        sink += b;
        // A connection opens on the pick and an older one closes: counts move as in production.
        Atomics.add(shared.backendActive, b, 1);
        if ((i & 1) === 1) Atomics.sub(shared.backendActive, (b + 1) % size, 1);
        if (shared.backendActive[(b + 1) % size]! < 0) shared.backendActive[(b + 1) % size] = 0;
      }
      return sink;
    };
    run(200_000); // warm up
    gc?.();
    const heapBefore = process.memoryUsage().heapUsed;
    const start = process.hrtime.bigint();
    run(PICKS);
    const ns = Number(process.hrtime.bigint() - start) / PICKS;
    const bytes = Math.max(0, process.memoryUsage().heapUsed - heapBefore) / PICKS;
    rows.push(`| ${name} | ${size} | ${ns.toFixed(0)} | ${bytes.toFixed(2)} |`);
  }
}
process.stdout.write(`${rows.join('\n')}\n`);
if (gc === undefined) process.stdout.write('(run with --expose-gc for a clean allocation figure)\n');
