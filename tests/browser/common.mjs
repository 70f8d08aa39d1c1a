// Shared by the browser scripts: launch Debian's chromium through playwright-core and record every error the
// page could show a user (console errors, uncaught exceptions, failed/4xx/5xx requests, browser log entries).
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export function config() {
  return JSON.parse(process.argv[2] || '{}');
}

export async function launch(cfg) {
  // a fresh profile folder per run (Playwright passes it as --user-data-dir)
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'pq-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: cfg.chromium || '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--disable-dev-shm-usage',
    ],
    viewport: { width: 1280, height: 800 },
    timeout: 60000,
  });
  // the persistent context opens with one blank page: reuse it first
  const spare = context.pages();
  const browser = {
    newPage: async (opts = {}) => {
      const page = spare.length ? spare.shift() : await context.newPage();
      if (opts.viewport) await page.setViewportSize(opts.viewport);
      return page;
    },
  };
  const cleanup = async () => {
    await context.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
  };
  return { browser, context, cleanup };
}

export async function watch(page) {
  const problems = [];
  const requests = [];
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') problems.push({ kind: `console.${m.type()}`, text: m.text() });
  });
  page.on('pageerror', (e) => problems.push({ kind: 'pageerror', text: String(e && e.stack || e) }));
  page.on('requestfailed', (r) => problems.push({ kind: 'requestfailed', text: `${r.url()} ${r.failure() && r.failure().errorText}` }));
  page.on('response', (r) => {
    requests.push({ url: r.url(), status: r.status() });
    if (r.status() >= 400) problems.push({ kind: 'http', text: `${r.status()} ${r.url()}` });
  });
  // the browser's own log (e.g. "Failed to load resource") is not a console API call: read it over CDP
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Log.enable');
  cdp.on('Log.entryAdded', ({ entry }) => {
    if (entry.level === 'error' || entry.level === 'warning') problems.push({ kind: `log.${entry.source}`, text: `${entry.text} ${entry.url || ''}`.trim() });
  });
  return { problems, requests };
}

export function emit(obj) {
  process.stdout.write('\n' + JSON.stringify(obj) + '\n');
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
