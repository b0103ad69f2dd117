// Browser driver of the admin dashboard test (dashboard_test.go), run as
//
//   node dashboard.mjs CONFIG.json
//
// CONFIG: { base, token, executablePath, userDataDir, screenshot, timeoutMs }
//
// It starts headless Chromium through playwright-core with the suite's flags (driver.mjs: FLAGS) and talks to the
// Go test in JSON lines: it prints { step, ... } on stdout after each step and reads commands on stdin:
//   { "wait": "row", "id": "N" }   wait until the live-allocations table shows a row for allocation N, screenshot
//   { "wait": "gone", "id": "N" }  wait until that row is gone
//   { "done": true }               run the last checks (keyboard) and exit
// Exit status: 0 when every step ran (whether its check passed or not), 2 when the browser could not be driven.

import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';
import { FLAGS } from './driver.mjs';

function fail(msg) {
  process.stderr.write(`dashboard driver: ${msg}\n`);
  process.exit(2);
}

const say = (o) => process.stdout.write(JSON.stringify(o) + '\n');

async function main() {
  const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
  const timeout = config.timeoutMs ?? 15000;
  const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  const context = await chromium.launchPersistentContext(config.userDataDir, {
    executablePath: config.executablePath,
    headless: true,
    args: FLAGS,
    timeout: 30000,
    viewport: { width: 1280, height: 900 },
  });
  try {
    const page = await context.newPage();
    const consoleErrors = [];
    page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
    page.on('pageerror', (e) => consoleErrors.push(String(e)));

    // Without the token: 401, a sign-in form, no data.
    let resp = await page.goto(config.base + '/', { timeout });
    say({ step: 'no-token', status: resp.status(), form: await page.locator('form input[name=token]').count(),
      sessionsTable: await page.locator('#t-sessions').count() });

    // With the token in the URL: a cookie, a redirect to /, the dashboard; the script starts updating. From here on
    // the page must log no error at all (a CSP violation, a failed fetch, a script error).
    consoleErrors.length = 0;
    resp = await page.goto(config.base + '/?token=' + encodeURIComponent(config.token), { timeout });
    await page.waitForFunction(() => document.getElementById('status')?.textContent.startsWith('Live:'), null, { timeout });
    // The JSON needs the cookie (or the bearer token): asked without it, from another page of the same origin.
    const other = await context.newPage();
    await other.goto(config.base + '/help', { timeout });
    const noCookie = await other.evaluate(async () => (await fetch('/api/dashboard', { credentials: 'omit' })).status);
    await other.close();
    say({ step: 'signed-in', status: resp.status(), url: page.url(), apiWithoutCookie: noCookie,
      cookieVisibleToScript: await page.evaluate(() => document.cookie), consoleErrors: [...consoleErrors] });

    for (;;) {
      const { value, done } = await lines.next();
      if (done) break;
      const cmd = JSON.parse(value);
      if (cmd.done) break;
      const sel = `#t-sessions tbody tr[data-id="${cmd.id}"]`;
      const start = Date.now();
      try {
        if (cmd.wait === 'row') {
          await page.waitForSelector(sel, { state: 'attached', timeout });
          // One more update, so the bit rates have a window to measure over.
          await page.waitForFunction(() => !document.getElementById('f-rate-peer').textContent.startsWith('measuring'), null, { timeout });
          const cells = await page.locator(sel + ' td').allTextContents();
          if (config.screenshot) await page.screenshot({ path: config.screenshot, fullPage: true });
          say({ step: 'row', ok: true, cells, ms: Date.now() - start, allocations: await page.textContent('#f-allocations'),
            doors: await page.locator('#t-doors tbody tr').allTextContents() });
        } else if (cmd.wait === 'gone') {
          await page.waitForSelector(sel, { state: 'detached', timeout });
          say({ step: 'gone', ok: true, ms: Date.now() - start, allocations: await page.textContent('#f-allocations'),
            empty: await page.locator('#t-sessions tbody tr.empty').count() });
        }
      } catch (e) {
        say({ step: cmd.wait, ok: false, reason: String(e.message ?? e), ms: Date.now() - start,
          html: await page.locator('#t-sessions').innerHTML().catch(() => '') });
      }
    }

    // Keyboard: the first Tab reaches the pause button; Enter pauses and resumes.
    await page.keyboard.press('Tab');
    const focused = await page.evaluate(() => document.activeElement?.id);
    await page.keyboard.press('Enter');
    const paused = await page.getAttribute('#pause', 'aria-pressed');
    await page.keyboard.press('Enter');
    const resumed = await page.getAttribute('#pause', 'aria-pressed');
    say({ step: 'keyboard', focused, paused, resumed, live: await page.getAttribute('#summary', 'aria-live'),
      captions: await page.locator('table > caption').count(), tables: await page.locator('table').count(),
      consoleErrors });
  } finally {
    await context.close();
  }
}

main().catch((e) => fail(e.stack ?? String(e)));
