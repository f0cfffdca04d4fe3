/**
 * Streaming plain HTTP bodies through Sluice without holding them: 1 GiB down to a client that reads slowly
 * and 1 GiB up from a client that writes slowly (to a backend that also reads in bursts), each hashed on both
 * ends, while Sluice's resident memory is sampled. The bound: Sluice's RSS never grows more than 128 MiB over
 * what it was before the transfer, for a gigabyte that passes through it (a proxy that buffered would need
 * the gigabyte). Then aborts on either side: a client that leaves mid-download or mid-upload, a backend that
 * drops an upload; afterwards nothing is in flight and Sluice holds no more file descriptors than before.
 *
 * Rates are set so that each transfer takes about 15 s on an idle machine (the reader pauses 100 ms every
 * 8 MiB, the writer likewise); on this shared 2-core machine the file takes 30-60 s.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { startSluice, type SluiceProcess } from './helpers/sluice.js';
import { fetchRaw, pattern, startHttpBackend, type HttpBackend } from './helpers/http-backend.js';
import { parsePrometheus, sampleSum } from './helpers/admin.js';
import { waitFor } from './helpers/wait.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const RSS_GROWTH_BOUND = 128 * MiB;
const PAUSE_EVERY = 8 * MiB;
const PAUSE_MS = 100;

function rssOf(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(match![1]) * 1024;
}

function fdsOf(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** Sample `pid`'s RSS every 100 ms until stopped; returns the peak. */
function sampleRss(pid: number): { stop(): number } {
  let peak = rssOf(pid);
  const timer = setInterval(() => (peak = Math.max(peak, rssOf(pid))), 100);
  return {
    stop() {
      clearInterval(timer);
      return Math.max(peak, rssOf(pid));
    },
  };
}

describe('streaming 1 GiB through Sluice', { timeout: 180_000 }, () => {
  let sluice: SluiceProcess | undefined;
  let backend: HttpBackend | undefined;
  let baselineFds = 0;

  before(async () => {
    backend = await startHttpBackend('bulk', {
      readPauses: { every: 16 * MiB, ms: PAUSE_MS },
      handler: (req, res, seen) => {
        if (req.url === '/uploaded') {
          res.end(JSON.stringify({ bytes: seen.bodyBytes, sha: seen.bodySha }));
          return true;
        }
        return false;
      },
    });
    sluice = await startSluice(`entryPoints: { web: { address: "127.0.0.1:{PORT}" } }
http:
  routers: { r: { rule: "PathPrefix(\`/\`)", service: bulk } }
  services: { bulk: { loadBalancer: { servers: [ { url: "${backend.url}" } ] } } }
`);
    // One request first, so the pool's keep-alive connection is part of the baseline.
    assert.equal((await fetchRaw(`http://127.0.0.1:${sluice.port}/warm`)).status, 200);
    baselineFds = fdsOf(sluice.child.pid!);
  });
  after(async () => {
    await sluice?.stop();
    await backend?.close();
  });

  test('1 GiB down to a slow reader: every byte, in order, with bounded memory', async () => {
    const pid = sluice!.child.pid!;
    const before = rssOf(pid);
    const rss = sampleRss(pid);
    const expected = createHash('sha256');
    for (let at = 0; at < GiB; at += MiB) expected.update(pattern(at, MiB));
    const { bytes, sha } = await new Promise<{ bytes: number; sha: string }>((resolve, reject) => {
      const req = http.get(`http://127.0.0.1:${sluice!.port}/bytes?n=${GiB}`, { agent: false }, (res) => {
        assert.equal(res.headers['content-length'], String(GiB));
        const hash = createHash('sha256');
        let bytes = 0;
        let sincePause = 0;
        res.on('data', (chunk: Buffer) => {
          hash.update(chunk);
          bytes += chunk.length;
          sincePause += chunk.length;
          if (sincePause >= PAUSE_EVERY) {
            sincePause = 0;
            res.pause();
            setTimeout(() => res.resume(), PAUSE_MS);
          }
        });
        res.on('end', () => resolve({ bytes, sha: hash.digest('hex') }));
        res.on('error', reject);
      });
      req.on('error', reject);
    });
    const peak = rss.stop();
    assert.equal(bytes, GiB);
    assert.equal(sha, expected.digest('hex'));
    assert.ok(peak - before < RSS_GROWTH_BOUND, `Sluice's RSS grew by ${Math.round((peak - before) / MiB)} MiB (bound ${RSS_GROWTH_BOUND / MiB} MiB)`);
  });

  test('1 GiB up from a slow writer to a backend that reads in bursts: every byte, with bounded memory', async () => {
    const pid = sluice!.child.pid!;
    const before = rssOf(pid);
    const rss = sampleRss(pid);
    // The backend reads the upload in bursts too (readPauses), so Sluice must also hold the client back.
    const slowServer = backend!;
    const sent = createHash('sha256');
    const answer = await new Promise<{ bytes: number; sha: string }>((resolve, reject) => {
      const req = http.request(
        // Chunked: uWebSockets.js refuses a Content-Length of 1,000,000,000 or more (README, HTTP limits).
        { host: '127.0.0.1', port: sluice!.port, path: '/uploaded', method: 'POST', agent: false },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (text += d));
          res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(text) as { bytes: number; sha: string }) : reject(new Error(`${res.statusCode}: ${text}`))));
        },
      );
      req.on('error', reject);
      let at = 0;
      let sincePause = 0;
      const write = (): void => {
        while (at < GiB) {
          const chunk = pattern(at, MiB);
          sent.update(chunk);
          at += MiB;
          sincePause += MiB;
          const more = req.write(chunk);
          if (at >= GiB) break;
          if (sincePause >= PAUSE_EVERY) {
            sincePause = 0;
            // 'drain' may come during the pause: look again when it is over.
            setTimeout(() => (req.writableNeedDrain ? req.once('drain', write) : write()), PAUSE_MS);
            return;
          }
          if (!more) {
            req.once('drain', write);
            return;
          }
        }
        req.end();
      };
      write();
    });
    const peak = rss.stop();
    assert.equal(answer.bytes, GiB);
    assert.equal(answer.sha, sent.digest('hex'));
    assert.ok(peak - before < RSS_GROWTH_BOUND, `Sluice's RSS grew by ${Math.round((peak - before) / MiB)} MiB (bound ${RSS_GROWTH_BOUND / MiB} MiB)`);
    assert.ok(slowServer.requests.some((r) => r.url === '/uploaded' && r.bodyBytes === GiB));
  });

  test('aborts on either side free everything', async () => {
    const port = sluice!.port;
    // A client that leaves in the middle of a download.
    await new Promise<void>((resolve) => {
      const req = http.get(`http://127.0.0.1:${port}/bytes?n=${GiB}`, { agent: false }, (res) => {
        let bytes = 0;
        res.on('data', (c: Buffer) => {
          bytes += c.length;
          if (bytes > 32 * MiB) {
            req.destroy();
            resolve();
          }
        });
      });
      req.on('error', () => resolve());
    });
    await waitFor('the backend to see the download cancelled', () => backend!.requests.at(-1)?.closedEarly === true, undefined, { timeoutMs: 10_000 });

    // A client that leaves in the middle of an upload.
    const uploadsBefore = backend!.requests.length;
    await new Promise<void>((resolve) => {
      const req = http.request({ host: '127.0.0.1', port, path: '/uploaded', method: 'POST', agent: false, headers: { 'content-length': String(512 * MiB) } });
      req.on('error', () => resolve());
      let at = 0;
      const write = (): void => {
        while (at < 32 * MiB) {
          at += MiB;
          if (!req.write(pattern(0, MiB))) {
            req.once('drain', write);
            return;
          }
        }
        setTimeout(() => {
          req.destroy();
          resolve();
        }, 200);
      };
      write();
    });
    await waitFor('the backend to see the upload cancelled', () => backend!.requests.length > uploadsBefore && backend!.requests.at(-1)!.closedEarly, undefined, { timeoutMs: 10_000 });

    // A backend that drops an upload: the client gets an answer or a reset, never a hang.
    const server = http.createServer((req) => {
      let got = 0;
      req.on('data', (c: Buffer) => {
        got += c.length;
        if (got > 8 * MiB) req.socket.destroy();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    const dropPort = (server.address() as { port: number }).port;
    const second = await startSluice(`entryPoints: { web: { address: "127.0.0.1:{PORT}" } }
http:
  routers: { r: { rule: "PathPrefix(\`/\`)", service: d } }
  services: { d: { loadBalancer: { servers: [ { url: "http://127.0.0.1:${dropPort}" } ] } } }
`);
    try {
      const outcome = await new Promise<string>((resolve) => {
        const req = http.request({ host: '127.0.0.1', port: second.port, path: '/drop', method: 'POST', agent: false, headers: { 'content-length': String(64 * MiB) } }, (res) => {
          res.resume();
          res.on('end', () => resolve(`status ${res.statusCode}`));
        });
        req.on('error', (e) => resolve(`error ${(e as NodeJS.ErrnoException).code ?? e.message}`));
        let at = 0;
        const write = (): void => {
          while (at < 64 * MiB) {
            at += MiB;
            if (!req.write(pattern(0, MiB))) {
              req.once('drain', write);
              return;
            }
          }
          req.end();
        };
        write();
      });
      assert.match(outcome, /^(status 502|error (ECONNRESET|EPIPE))$/, outcome);
      await waitForNothingInFlight(second);
    } finally {
      await second.stop();
      server.close();
    }

    await waitForNothingInFlight(sluice!);
    await waitFor(`Sluice to hold no more descriptors than before (${baselineFds})`, () => fdsOf(sluice!.child.pid!) <= baselineFds, () => `${fdsOf(sluice!.child.pid!)} open`, { timeoutMs: 10_000 });
    // Sluice still serves.
    assert.equal((await fetchRaw(`http://127.0.0.1:${port}/after`)).status, 200);
  });
});

async function waitForNothingInFlight(sluice: SluiceProcess): Promise<void> {
  let left = -1;
  for (let i = 0; i < 200 && left !== 0; i++) {
    left = sampleSum(parsePrometheus(await (await fetch(`${sluice.adminUrl}/metrics`)).text()), 'sluice_backend_http_requests_in_flight');
    if (left !== 0) await new Promise((r) => setTimeout(r, 25));
  }
  assert.equal(left, 0, 'HTTP requests still counted in flight');
}
