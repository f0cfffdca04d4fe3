/**
 * The dashboard in a real browser: Debian's headless Chromium driven by playwright-core loads /dashboard
 * from a Sluice process with two workers, and its numbers change under traffic (active connections,
 * upgrades, messages and a per-backend row), then go back to 0 active when the clients leave.
 * Skipped with a message when /usr/bin/chromium is missing (.ci/run installs it).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import type { WebSocket } from 'ws';
import { simpleConfig, startBackend, startSluice, type SluiceProcess, type TestBackend } from './helpers/sluice.js';
import { connect, closed, terminateAll } from './helpers/clients.js';

const CHROMIUM = '/usr/bin/chromium';

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

describe('dashboard in headless Chromium', { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (apt-get install chromium)` }, () => {
  let sluice: SluiceProcess | undefined;
  let backends: TestBackend[] = [];
  let browser: BrowserContext | undefined;
  let profile = '';
  const clients: WebSocket[] = [];

  before(async () => {
    backends = [await startBackend(), await startBackend()];
    sluice = await startSluice(simpleConfig(backends.map((b) => b.url)), { workers: 2 });
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
    terminateAll(clients);
    await browser?.close();
    await sluice?.stop();
    await Promise.all(backends.map((b) => b.close()));
    if (profile !== '') rmSync(profile, { recursive: true, force: true });
  });

  test('shows connections, messages and backends change under traffic', async () => {
    const page = await browser!.newPage();
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(error.message));
    const response = await page.goto(`${sluice!.adminUrl}/dashboard`);
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

    for (let i = 0; i < 4; i++) clients.push(await connect(`${sluice!.url}/`));
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
});
