// Browser driver of the Postern interop suite; the Go test (browser_test.go) runs it as
//
//   node driver.mjs CONFIG.json
//
// CONFIG: { url, executablePath, userDataDir, extraFlags, cases: [{ name, iceServers, wantRelayProtocol, messages, timeoutMs, retryTimeout }] }
//
// It starts headless Chromium once through playwright-core (never a downloaded browser: executablePath is the
// system /usr/bin/chromium), opens a fresh page of `url` per case, calls window.runCase (web/relay.js) and prints
// one JSON line per case on stdout: { name, ok, reason, pair, relayProtocol, sent, received, ms, iceErrors, ... }.
// Exit status: 0 when every case produced a line (whether it passed or not), 2 when the browser or a page could
// not be driven at all. The Go side bounds the whole run with a timeout and kills the process group.

import { readFileSync, realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';

// Flags, and why each is there. Playwright adds its own automation defaults (see chromiumSwitches in
// playwright-core) before these. Chromium may keep only the last of a repeated switch, so --disable-features below
// repeats the background-network features Playwright disables as well as adding ours.
export const FLAGS = [
  // Headless, unsandboxed (CI runs as root, where the sandbox refuses to start), no GPU, no first-run UI.
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  // Nothing may leave the machine: no background fetches, updates, sync, QUIC, and every host name resolves to
  // nothing except loopback (the page and every TURN URL use 127.0.0.1 literals).
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
  '--disable-default-apps',
  '--disable-extensions',
  '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost',
  // WebRTC on loopback: Chromium skips the loopback interface when it gathers unless told otherwise, and would
  // hide host addresses behind mDNS names (which the resolver rules above could not resolve anyway).
  '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns,OptimizationHints,NetworkTimeServiceQuerying,AimEnabled,' +
    'PreconnectToSearch,MediaRouter,DestroyProfileOnBrowserClose,HttpsUpgrades,HttpsFirstBalancedModeAutoEnable',
];

// Certificates: Chromium verifies a turns: server's certificate like any other TLS peer; with the suite's
// self-signed certificate and no flag, every turns: case fails with icecandidateerror 701 "Failed to establish
// connection". The Go side passes --ignore-certificate-errors-spki-list=<hash of its key> in extraFlags, which
// accepts only that key (the blanket --ignore-certificate-errors works too, but accepts anything).

function fail(msg) {
  process.stderr.write(`driver: ${msg}\n`);
  process.exit(2);
}

async function main() {
  const configPath = process.argv[2];
  if (!configPath) fail('usage: node driver.mjs CONFIG.json');
  const config = JSON.parse(readFileSync(configPath, 'utf8'));
  const extra = config.extraFlags ?? [];
  const context = await chromium.launchPersistentContext(config.userDataDir, {
    executablePath: config.executablePath,
    headless: true,
    args: [...FLAGS, ...extra],
    timeout: 30000,
  });
  try {
    for (const c of config.cases) {
      let out = await runOnce(context, config.url, c);
      // A case that connected but timed out is run once more on a fresh page, and says so: now and then
      // (a few runs in a hundred, on every transport) Chromium's answerer sends SCTP acknowledgements but never
      // its own data, while the server logs every packet that side sent as relayed (see scripts/interop/doc.go).
      if (c.retryTimeout && !out.ok && String(out.reason).startsWith('timed out')) {
        const first = out;
        out = await runOnce(context, config.url, c);
        out.retriedAfter = first.reason;
        out.firstCandidates = first.candidates;
      }
      process.stdout.write(JSON.stringify({ name: c.name, ...out }) + '\n');
    }
  } finally {
    await context.close();
  }
}

// runOnce runs case c on a fresh page and returns its result with the page's console errors.
async function runOnce(context, url, c) {
  const page = await context.newPage();
  const consoleErrors = [];
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  let res;
  try {
    await page.goto(url, { timeout: 10000 });
    res = await page.evaluate((cfg) => window.runCase(cfg), {
      iceServers: c.iceServers,
      rtcConfiguration: c.rtcConfiguration,
      wantRelayProtocol: c.wantRelayProtocol,
      messages: c.messages,
      timeoutMs: c.timeoutMs,
    });
  } catch (e) {
    res = { ok: false, reason: `driver: ${e.message ?? e}` };
  }
  await page.close();
  return { consoleErrors, ...res };
}

// Run only as a program: dashboard.mjs imports FLAGS from here.
// (import.meta.url has symlinks resolved, argv[1] not.)
if (process.argv[1] && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) main().catch((e) => fail(e.stack ?? String(e)));
