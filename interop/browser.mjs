// A person at a browser, for the interop tier's browser logins: Latchkey runs this
// as its BROWSER command with the authorize URL. It drives Debian's headless
// Chromium (/usr/bin/chromium; never a downloaded browser) with playwright-core,
// signs in on oidc-provider's login page, clicks through consent, and waits until
// the browser lands on Latchkey's loopback callback page.
//
// Usage: node interop/browser.mjs --login NAME --password PW [--report FILE] URL
//
// The report (JSON) says where the browser ended and what the page said; it holds
// no token (the callback URL's code is cut off). Exits non-zero on any failure.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { chromium } from 'playwright-core';

const { values: opts, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    login: { type: 'string' },
    password: { type: 'string' },
    report: { type: 'string' },
    timeout: { type: 'string', default: '90' },
  },
});
const [url] = positionals;
if (!url || !opts.login || !opts.password) {
  process.stderr.write('usage: browser.mjs --login NAME --password PW [--report FILE] URL\n');
  process.exit(2);
}
const timeoutMs = Number(opts.timeout) * 1000;

// Everything the page may load must stay on loopback: the provider's pages import a
// web font, and the machine has no network.
const loopback = (u) => {
  try {
    const { protocol, hostname } = new URL(u);
    return protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(hostname);
  } catch {
    return false;
  }
};

const steps = [];
const step = (what) => {
  steps.push(what);
  process.stderr.write(`browser.mjs: ${what}\n`);
};

const profile = mkdtempSync(join(tmpdir(), 'latchkey-chromium-'));
let context;
let exitCode = 1;
// A hard stop so a stuck page never outlives the test.
const watchdog = setTimeout(() => {
  process.stderr.write(`browser.mjs: gave up after ${opts.timeout} s\n`);
  process.exit(3);
}, timeoutMs + 15000);
watchdog.unref();

try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
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
    timeout: timeoutMs,
  });
  context.setDefaultTimeout(timeoutMs);
  await context.route('**/*', (route) => (loopback(route.request().url()) ? route.continue() : route.abort()));
  const page = context.pages()[0] ?? (await context.newPage());

  step('open the authorize URL');
  await page.goto(url, { waitUntil: 'domcontentloaded' });

  step('sign in on the provider\'s login page');
  await page.locator('input[name="login"]').fill(opts.login);
  await page.locator('input[name="password"]').fill(opts.password);
  await page.locator('button[type="submit"]').click();

  step('consent');
  // The consent page is another /interaction/ page: wait for its form, not a URL.
  await page.locator('form input[name="prompt"][value="consent"]').waitFor({ state: 'attached' });
  await Promise.all([
    page.waitForURL((u) => u.pathname === '/callback', { waitUntil: 'domcontentloaded' }),
    page.locator('form button[type="submit"]').click(),
  ]);

  const landed = new URL(page.url());
  const text = await page.locator('body').innerText();
  step(`landed on ${landed.origin}${landed.pathname}`);
  const report = {
    ok: true,
    steps,
    final_origin: landed.origin,
    final_path: landed.pathname,
    callback_had_code: landed.searchParams.has('code'),
    page_text: text.slice(0, 500),
  };
  if (opts.report) {
    writeFileSync(opts.report, JSON.stringify(report));
  }
  exitCode = 0;
} catch (err) {
  const message = String(err?.message ?? err).split('\n')[0];
  step(`failed: ${message}`);
  if (opts.report) {
    writeFileSync(opts.report, JSON.stringify({ ok: false, steps, error: message }));
  }
} finally {
  await context?.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
process.exit(exitCode);
