// Browser driver of the self-test page test (selftest_test.go), run as
//
//   node selftest.mjs CONFIG.json
//
// CONFIG: { url, executablePath, userDataDir, extraFlags, screenshot, timeoutMs }
//
// It opens the page with the suite's flags (driver.mjs: FLAGS), waits for the verdict, takes a screenshot and
// prints one JSON line: { verdict, rows: [{door, stun, turn, ms}], report, caption, live, headers, consoleErrors,
// focused }.
// Exit status: 0 when the page was read (whatever it says), 2 when the browser could not be driven.

import { readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { FLAGS } from './driver.mjs';

async function main() {
  const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
  const timeout = config.timeoutMs ?? 90000;
  const context = await chromium.launchPersistentContext(config.userDataDir, {
    executablePath: config.executablePath,
    headless: true,
    args: [...FLAGS, ...(config.extraFlags ?? [])],
    timeout: 30000,
    viewport: { width: 1000, height: 700 },
  });
  try {
    const page = await context.newPage();
    const consoleErrors = [];
    page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
    page.on('pageerror', (e) => consoleErrors.push(String(e)));
    await page.goto(config.url, { timeout });
    await page.waitForSelector('#verdict[data-done="1"]', { timeout });
    const rows = await page.$$eval('#doors tbody tr', (trs) => trs.map((tr) => {
      const c = [...tr.children].map((x) => x.textContent);
      return { door: c[0], stun: c[2], turn: c[3], ms: c[4] };
    }));
    // Keyboard: the first Tab reaches the re-run button.
    await page.keyboard.press('Tab');
    const focused = await page.evaluate(() => document.activeElement?.id ?? '');
    if (config.screenshot) await page.screenshot({ path: config.screenshot, fullPage: true });
    process.stdout.write(JSON.stringify({
      verdict: await page.textContent('#verdict'),
      live: await page.getAttribute('#verdict', 'aria-live'),
      caption: await page.textContent('#doors caption'),
      headers: await page.$$eval('#doors thead th[scope=col]', (t) => t.length),
      report: await page.inputValue('#report'),
      rows, consoleErrors, focused,
    }) + '\n');
  } finally {
    await context.close();
  }
}

main().catch((e) => { process.stderr.write(`selftest driver: ${e?.stack ?? e}\n`); process.exit(2); });
