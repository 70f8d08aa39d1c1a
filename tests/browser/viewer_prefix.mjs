// The viewer behind a path-prefix reverse proxy. Config: base (proxied URL with trailing slash), collection.
// Opens the viewer, waits for tiles, searches the map extent, shows the first item; prints every request made.
import path from 'node:path';
import { config, launch, watch, emit, sleep } from './common.mjs';

const cfg = config();
const out = { problems: [], requests: [] };
const { browser, cleanup } = await launch(cfg);
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 700 } });
  const { problems, requests } = await watch(page);
  out.problems = problems;
  out.requests = requests;
  await page.goto(`${cfg.base}#${encodeURIComponent(cfg.collection)}`, { waitUntil: 'load' });
  await page.waitForFunction(() => window.pqViewer && window.pqViewer.tileUrl() && document.body.dataset.state === 'idle', null, { timeout: 60000 });
  out.tilesLoaded = await page.evaluate(() => window.pqViewer.state.tilesLoaded);
  await page.locator('#search-btn').click();
  await page.waitForFunction(() => document.body.dataset.search === 'done' || document.body.dataset.search === 'failed', null, { timeout: 30000 });
  out.items = await page.$$eval('#search-results li', (lis) => lis.map((li) => li.dataset.itemId));
  if (out.items.length) {
    await page.locator('#search-results li').first().click();
    await page.waitForFunction(() => window.pqViewer.state.itemTileUrl && document.body.dataset.state === 'idle', null, { timeout: 60000 });
    out.itemTileUrl = await page.evaluate(() => window.pqViewer.state.itemTileUrl);
  }
  await sleep(400);
  await page.screenshot({ path: path.join(cfg.artifacts, 'viewer-behind-prefix.png') });
} catch (e) {
  out.error = String(e && e.stack || e);
} finally {
  await cleanup();
}
emit(out);
