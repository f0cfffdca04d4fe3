/**
 * permessage-deflate with a real browser: Debian's headless Chromium (driven by playwright-core) opens
 * WebSockets to entry points with compression off, shared and dedicated, in front of a backend that cannot
 * compress and one that compresses everything; it sees the extension negotiated as configured and gets
 * every payload back intact, text and binary, 0 B to 1 MiB. Skipped with a message when /usr/bin/chromium
 * is missing (.ci/run installs it).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { freePort, startBackend, startSluice, type SluiceProcess, type TestBackend } from './helpers/sluice.js';

const CHROMIUM = '/usr/bin/chromium';

interface BrowserRun {
  readonly extensions: string;
  /** Sizes whose echo differed from what was sent, as `text:N` / `binary:N`. */
  readonly mismatches: string[];
  readonly echoed: number;
}

/** In the page: open `url`, echo text and binary of every size in `sizes`, compare. */
function echoInBrowser(page: Page, url: string, sizes: number[]): Promise<BrowserRun> {
  return page.evaluate(
    async ({ url, sizes }) => {
      const ws = new WebSocket(url);
      ws.binaryType = 'arraybuffer';
      await new Promise((resolve, reject) => {
        ws.onopen = resolve;
        ws.onerror = () => reject(new Error(`could not open ${url}`));
      });
      const queue: (string | ArrayBuffer)[] = [];
      let wake: (() => void) | null = null;
      ws.onmessage = (event: MessageEvent) => {
        queue.push(event.data as string | ArrayBuffer);
        wake?.();
      };
      const next = async (): Promise<string | ArrayBuffer> => {
        while (queue.length === 0) await new Promise<void>((resolve) => (wake = resolve));
        return queue.shift()!;
      };
      const mismatches: string[] = [];
      let echoed = 0;
      for (const size of sizes) {
        let text = '';
        for (let i = 0; text.length < size; i++) text += `{"seq":${i},"price":${(i * 37) % 1000},"venue":"XNAS"},`;
        text = text.slice(0, size);
        const binary = new Uint8Array(size);
        for (let at = 0; at < size; at += 65536) crypto.getRandomValues(binary.subarray(at, Math.min(size, at + 65536)));
        ws.send(text);
        ws.send(binary);
        const gotText = await next();
        const gotBinary = await next();
        if (gotText !== text) mismatches.push(`text:${size}`);
        const back = new Uint8Array(gotBinary as ArrayBuffer);
        if (back.length !== size || back.some((b, i) => b !== binary[i])) mismatches.push(`binary:${size}`);
        echoed += 2;
      }
      const extensions = ws.extensions;
      ws.close(1000);
      return { extensions, mismatches, echoed };
    },
    { url, sizes },
  );
}

describe('compression with headless Chromium', { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (apt-get install chromium)` }, () => {
  let sluice: SluiceProcess | undefined;
  let plain: TestBackend | undefined;
  let deflating: TestBackend | undefined;
  let browser: BrowserContext | undefined;
  let profile = '';
  const ports = { off: 0, shared: 0, dedicated: 0 };

  before(async () => {
    plain = await startBackend();
    deflating = await startBackend(undefined, { perMessageDeflate: { threshold: 0 } });
    ports.shared = await freePort();
    ports.dedicated = await freePort();
    sluice = await startSluice(`entryPoints:
  off: { address: "127.0.0.1:{PORT}" }
  shared: { address: "127.0.0.1:${ports.shared}", websocket: { compression: shared, compressionThreshold: 0 } }
  dedicated: { address: "127.0.0.1:${ports.dedicated}", websocket: { compression: dedicated } }
http:
  routers:
    plain: { rule: "PathPrefix(\`/plain\`)", service: plain }
    deflating: { rule: "PathPrefix(\`/deflating\`)", service: deflating }
  services:
    plain: { loadBalancer: { servers: [ { url: "${plain.url}" } ] } }
    deflating: { loadBalancer: { servers: [ { url: "${deflating.url}" } ], serversTransport: deflate } }
  serversTransports:
    deflate: { websocketCompression: true }
`);
    ports.off = sluice.port;
    profile = mkdtempSync(path.join(tmpdir(), 'sluice-chromium-'));
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      timeout: 30_000,
    });
  });

  after(async () => {
    await browser?.close();
    await sluice?.stop();
    await Promise.all([plain?.close(), deflating?.close()]);
    if (profile !== '') rmSync(profile, { recursive: true, force: true });
  });

  const sizes = [0, 1, 125, 126, 1023, 1024, 2048, 65535, 65536, 1024 * 1024];
  const expected = {
    off: '',
    shared: 'permessage-deflate; client_no_context_takeover; server_no_context_takeover',
    // The default decompressor is shared: the client is told not to keep context either.
    dedicated: 'permessage-deflate; client_no_context_takeover; server_max_window_bits=12',
  };

  for (const entry of ['off', 'shared', 'dedicated'] as const) {
    test(`${entry} entry point: negotiated as configured, payloads intact to both backends`, { timeout: 60_000 }, async () => {
      const page = await browser!.newPage();
      try {
        const errors: string[] = [];
        page.on('pageerror', (error) => errors.push(error.message));
        await page.goto(`${sluice!.adminUrl}/health`);
        for (const backend of ['plain', 'deflating']) {
          const run = await echoInBrowser(page, `ws://127.0.0.1:${ports[entry]}/${backend}/browser`, sizes);
          assert.equal(run.extensions, expected[entry], `${backend}: Sec-WebSocket-Extensions as Chromium saw it`);
          assert.deepEqual(run.mismatches, [], `${backend}: echoes that differ`);
          assert.equal(run.echoed, 2 * sizes.length);
        }
        assert.deepEqual(errors, []);
      } finally {
        await page.close();
      }
    });
  }
});
