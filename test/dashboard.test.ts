/**
 * The dashboard in a real browser: Debian's headless Chromium driven by playwright-core loads /dashboard
 * from a Sluice process with two workers. Its numbers change under traffic (active connections, upgrades,
 * messages and a per-backend row) and go back to 0 active when the clients leave; its charts render, and
 * their pixels move as load arrives (screenshots of the chart canvases before and after, decoded here).
 * Sluice samples every 200 ms in these tests (SLUICE_HISTORY_INTERVAL_MS) so the charts move within a
 * second. Skipped with a message when /usr/bin/chromium is missing (.ci/run installs it).
 */
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import type { WebSocket } from 'ws';
import { freePort, simpleConfig, startBackend, startSluice, type SluiceProcess, type TestBackend } from './helpers/sluice.js';
import { connect, closed, terminateAll } from './helpers/clients.js';
import { decodePng, type Image } from './helpers/png.js';
import { waitFor } from './helpers/wait.js';

const CHROMIUM = '/usr/bin/chromium';
/** The page's colours for a backend that is up and one that is down (dashboard.ts). */
const UP_RGB = [0x2d, 0xa4, 0x4e] as const;
const DOWN_RGB = [0xcf, 0x22, 0x2e] as const;

async function textOf(page: Page, testid: string): Promise<string> {
  return (await page.getByTestId(testid).textContent()) ?? '';
}

/** Wait until the element's text satisfies `check` (the page refreshes itself every second). */
async function waitForText(page: Page, testid: string, check: (text: string) => boolean, what: string): Promise<string> {
  const deadline = Date.now() + 10_000;
  let text = await textOf(page, testid);
  while (!check(text)) {
    if (Date.now() > deadline) throw new Error(`dashboard: ${what}; '${testid}' shows '${text}'`);
    await new Promise((resolve) => setTimeout(resolve, 100));
    text = await textOf(page, testid);
  }
  return text;
}

/** The chart card's data-* attribute as a number (the page sets them after each render). */
async function chartNumber(page: Page, chart: string, attribute: 'peak' | 'samples' | 'series'): Promise<number> {
  return Number((await page.getByTestId(`chart-${chart}`).getAttribute(`data-${attribute}`)) ?? 'NaN');
}

async function waitForChart(page: Page, chart: string, attribute: 'peak' | 'samples' | 'series', check: (n: number) => boolean, what: string): Promise<number> {
  let n = NaN;
  const poll = async (): Promise<boolean> => check((n = await chartNumber(page, chart, attribute)));
  const deadline = Date.now() + 10_000;
  while (!(await poll())) {
    if (Date.now() > deadline) throw new Error(`dashboard: ${what}; chart '${chart}' has data-${attribute}=${n}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return n;
}

async function waitForJson<T>(url: string, check: (document: T) => boolean, what: string): Promise<void> {
  let last: unknown;
  const deadline = Date.now() + 10_000;
  for (;;) {
    last = await (await fetch(url)).json();
    if (check(last as T)) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(last)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Wait until the chart's legend (one entry per series) matches `pattern`. */
async function waitForLegend(page: Page, chart: string, pattern: RegExp, what: string): Promise<void> {
  const legend = page.getByTestId(`chart-${chart}`).locator('.u-legend');
  const deadline = Date.now() + 10_000;
  for (;;) {
    const text = (await legend.count()) === 0 ? '' : ((await legend.textContent()) ?? '');
    if (pattern.test(text)) return;
    if (Date.now() > deadline) throw new Error(`dashboard: ${what}; chart '${chart}' legend shows '${text}'`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A screenshot of the chart's canvas alone (plot, axes and lines; not the legend or the page). */
async function chartPixels(page: Page, chart: string): Promise<{ png: Buffer; image: Image }> {
  const png = await page.getByTestId(`chart-${chart}`).locator('canvas').screenshot();
  return { png, image: decodePng(png) };
}

/** The highest row holding a line's pixels: series colours are saturated, while axes, grid and text are grey. */
function topOfLines(image: Image): number {
  for (let y = 0; y < image.height; y++) {
    for (let x = 0; x < image.width; x++) {
      const i = (y * image.width + x) * 4;
      const [r, g, b] = [image.rgba[i]!, image.rgba[i + 1]!, image.rgba[i + 2]!];
      if (Math.max(r, g, b) - Math.min(r, g, b) > 80) return y;
    }
  }
  return image.height;
}

function pixelsOfColour(image: Image, rgb: readonly [number, number, number]): number {
  let n = 0;
  for (let i = 0; i < image.rgba.length; i += 4) {
    if (Math.abs(image.rgba[i]! - rgb[0]) < 12 && Math.abs(image.rgba[i + 1]! - rgb[1]) < 12 && Math.abs(image.rgba[i + 2]! - rgb[2]) < 12) n++;
  }
  return n;
}

describe('dashboard in headless Chromium', { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (apt-get install chromium)` }, () => {
  let browser: BrowserContext | undefined;
  let profile = '';

  before(async () => {
    profile = mkdtempSync(path.join(tmpdir(), 'sluice-chromium-'));
    // A fresh profile per run (playwright passes it to Chromium as --user-data-dir).
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      timeout: 30_000,
    });
  });

  after(async () => {
    await browser?.close();
    if (profile !== '') rmSync(profile, { recursive: true, force: true });
  });

  /** A fresh Sluice (two workers, 200 ms samples) with two echo backends, so each test starts from zero;
   *  `servers` adds backends to the pool and `extra` lines to its loadBalancer. */
  async function startStack(t: TestContext, servers: string[] = [], extra = ''): Promise<{ sluice: SluiceProcess; backends: TestBackend[]; clients: WebSocket[] }> {
    const backends = [await startBackend(), await startBackend()];
    const config = simpleConfig([...backends.map((b) => b.url), ...servers], extra.replace(/^/gm, '        '));
    const sluice = await startSluice(config, { workers: 2, env: { ...process.env, SLUICE_HISTORY_INTERVAL_MS: '200' } });
    const clients: WebSocket[] = [];
    t.after(async () => {
      terminateAll(clients);
      await sluice.stop();
      await Promise.all(backends.map((b) => b.close()));
    });
    return { sluice, backends, clients };
  }

  test('shows connections, messages and backends change under traffic', async (t) => {
    const { sluice, backends, clients } = await startStack(t);
    const page = await browser!.newPage();
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(error.message));
    const response = await page.goto(`${sluice.adminUrl}/dashboard`);
    assert.equal(response?.status(), 200);
    assert.equal(await page.title(), 'Sluice dashboard');
    await waitForText(page, 'total-active', (t) => t === '0', 'the first poll shows 0 active');
    assert.equal(await textOf(page, 'total-messages-in'), '0');
    // One row per backend, healthy.
    for (const b of backends) {
      const row = page.getByTestId(`backend-${b.url}`);
      assert.equal(await row.count(), 1, `a row for ${b.url}`);
      assert.equal(await row.locator('td').nth(2).textContent(), 'up');
    }

    for (let i = 0; i < 4; i++) clients.push(await connect(`${sluice.url}/`));
    await waitForText(page, 'total-active', (t) => t === '4', 'active connections rise to 4');
    await waitForText(page, 'total-upgraded', (t) => t === '4', 'upgrades rise to 4');

    for (const ws of clients) for (let i = 0; i < 5; i++) ws.send('hello');
    await waitForText(page, 'total-messages-in', (t) => t === '20', 'messages in rise to 20');
    // A rate appears in the poll after the messages, and each backend row carries its share.
    const shares = await Promise.all(backends.map(async (b) => Number(((await page.getByTestId(`backend-${b.url}`).locator('td').nth(7).textContent()) ?? '0').replace(/,/g, ''))));
    assert.equal(shares[0]! + shares[1]!, 20);

    for (const ws of clients) ws.close(1000);
    await Promise.all(clients.map((ws) => closed(ws)));
    await waitForText(page, 'total-active', (t) => t === '0', 'active connections fall back to 0');
    assert.deepEqual(errors, [], 'no script errors on the page');
    await page.close();
  });

  test('charts render, and move as load arrives', async (t) => {
    // A third backend on a closed port, found down by the first active check: the health chart shows
    // a red band for it. The echo backends answer a plain GET with 426 (ws), which the check expects.
    const deadUrl = `ws://127.0.0.1:${await freePort()}`;
    const { sluice, backends, clients } = await startStack(t, [deadUrl], 'healthCheck: { path: /, interval: 100ms, timeout: 500ms, status: 426, fall: 1 }');
    const page = await browser!.newPage();
    await page.setViewportSize({ width: 1400, height: 2400 });
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(error.message));
    const requested: string[] = [];
    page.on('request', (request) => requested.push(request.url()));
    assert.equal((await page.goto(`${sluice.adminUrl}/dashboard`))?.status(), 200);

    // Idle: a few samples of zeros, drawn, with the dead backend marked down for a few of them.
    await waitForJson(`${sluice.adminUrl}/api/backends`, (list: { url: string; state: string }[]) => list.find((b) => b.url === deadUrl)?.state === 'down', 'the dead backend to be marked down');
    const samplesWhenDown = await chartNumber(page, 'backend-health', 'samples');
    await waitForChart(page, 'backend-health', 'samples', (n) => n >= samplesWhenDown + 3, 'samples after the dead backend went down');
    await waitForChart(page, 'messages', 'samples', (n) => n >= 4, 'idle samples are charted');
    for (const chart of ['connections', 'upgrades', 'messages', 'bytes', 'backend-health', 'backend-connections']) {
      assert.equal(await page.getByTestId(`chart-${chart}`).locator('canvas').count(), 1, `chart '${chart}' is drawn`);
    }
    assert.equal(await chartNumber(page, 'messages', 'series'), 2, 'messages/s each way');
    assert.equal(await chartNumber(page, 'messages', 'peak'), 0);
    assert.equal(await chartNumber(page, 'backend-health', 'series'), 3, 'one band per backend');
    for (const [chart, text] of [['errors', 'no errors'], ['closes', 'no closes'], ['upgrade-latency', 'no upgrades'], ['http-requests', 'HTTP proxying is not in this build yet']]) {
      assert.match((await page.getByTestId(`chart-${chart}`).textContent()) ?? '', new RegExp(text!), `chart '${chart}' says it has nothing yet`);
    }
    const health = await chartPixels(page, 'backend-health');
    assert.ok(pixelsOfColour(health.image, UP_RGB) > 500, 'the live backends show an "up" band');
    assert.ok(pixelsOfColour(health.image, DOWN_RGB) > 50, 'the dead backend shows a "down" band');
    const idle = await chartPixels(page, 'messages');
    const idleTop = topOfLines(idle.image);
    assert.ok(idleTop < idle.image.height, 'the zero lines are drawn');

    // Load: four clients, 50 echoed messages each.
    for (let i = 0; i < 4; i++) clients.push(await connect(`${sluice.url}/`));
    let echoed = 0;
    for (const ws of clients) ws.on('message', () => echoed++);
    for (const ws of clients) for (let i = 0; i < 50; i++) ws.send('hello, dashboard');
    await waitFor('every message echoed', () => echoed === 200, () => `${echoed} of 200`);
    await waitForChart(page, 'messages', 'peak', (n) => n > 0, 'messages/s rises');
    await waitForChart(page, 'connections', 'peak', (n) => n === 4, 'live connections reach 4');
    await waitForChart(page, 'upgrades', 'peak', (n) => n > 0, 'upgrades/s rises');
    await waitForChart(page, 'bytes', 'peak', (n) => n > 0, 'bytes/s rises');
    await waitForChart(page, 'backend-connections', 'peak', (n) => n >= 2, 'connections per backend (least connections: 2 each)');
    await waitForChart(page, 'upgrade-latency', 'series', (n) => n === 2, 'p50 and p99 of the upgrades');
    const loaded = await chartPixels(page, 'messages');
    assert.ok(!loaded.png.equals(idle.png), 'the messages chart changed');
    const loadedTop = topOfLines(loaded.image);
    assert.ok(loadedTop < idleTop - 40, `the messages line rose: its top row went from ${idleTop} to ${loadedTop} (of ${loaded.image.height})`);

    // A backend that drops its connection: an error by reason, and a close by side and code class.
    const victim = backends.find((b) => b.sockets.size > 0)!;
    [...victim.sockets][0]!.terminate();
    await waitForChart(page, 'errors', 'series', (n) => n >= 1, 'errors/s by reason appears');
    await waitForChart(page, 'closes', 'series', (n) => n >= 1, 'closes/s by side and code appears');
    await waitForLegend(page, 'errors', /backend_lost/, 'the lost backend connection is charted by reason');
    await waitForLegend(page, 'closes', /backend error/, 'its close (1006, started by the backend) is charted');
    assert.equal(await page.getByTestId('chart-errors').locator('canvas').count(), 1);

    for (const ws of clients) ws.close(1000);
    await Promise.all(clients.map((ws) => closed(ws)));
    await waitForLegend(page, 'closes', /client normal/, "the clients' 1000 closes are charted");
    assert.deepEqual(errors, [], 'no script errors on the page');
    assert.ok(requested.some((url) => url.endsWith('/dashboard/uplot.min.js')), 'the chart library came from Sluice');
    assert.deepEqual(requested.filter((url) => !url.startsWith(`${sluice.adminUrl}/`)), [], 'no request leaves the admin listener');
    await page.close();
  });
});
