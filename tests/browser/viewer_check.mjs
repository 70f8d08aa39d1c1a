// Drives the viewer like a person would and records what it saw. Config (argv[2], JSON):
//   base        server URL with trailing slash
//   artifacts   folder for screenshots
//   timeCollection / ndviCollection / ratioCollection   collection ids to use
// Prints one JSON object: screenshots, tile URLs per step, search results, problems (errors of any kind).
import path from 'node:path';
import { config, launch, watch, emit, sleep } from './common.mjs';

const cfg = config();
const out = { steps: {}, problems: [], search: null };
const shot = (name) => path.join(cfg.artifacts, `viewer-${name}.png`);

const { browser, cleanup } = await launch(cfg);
let page;
try {
  page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const { problems, requests } = await watch(page);
  out.problems = problems;

  // wait until the shown layer differs from `prev` and all its visible tiles are in, then let the fade finish
  async function settled(prev, expect) {
    await page.waitForFunction(
      ([p, e]) => window.pqViewer && window.pqViewer.tileUrl() && window.pqViewer.tileUrl() !== p &&
        (!e || window.pqViewer.tileUrl().includes(e)) && document.body.dataset.state === 'idle',
      [prev, expect || null], { timeout: 60000, polling: 100 });
    await sleep(600);
    return page.evaluate(() => window.pqViewer.tileUrl());
  }
  async function step(name, prev, action, expect) {
    const before = prev === undefined ? await page.evaluate(() => window.pqViewer && window.pqViewer.tileUrl()) : prev;
    if (action) await action();
    const url = await settled(before, expect);
    const file = shot(name);
    await page.locator('#map').screenshot({ path: file });
    out.steps[name] = {
      screenshot: file,
      tileUrl: url,
      label: await page.locator('#time-label').textContent(),
      status: await page.locator('#status').textContent(),
      tilesLoaded: await page.evaluate(() => window.pqViewer.state.tilesLoaded),
      tileErrors: await page.evaluate(() => window.pqViewer.state.tileErrors),
    };
    return url;
  }

  // 1. open the viewer on the time-series collection: latest date first
  await page.goto(`${cfg.base}#${encodeURIComponent(cfg.timeCollection)}`, { waitUntil: 'load' });
  let url = await step('time-latest', null);
  out.dates = await page.evaluate(() => window.pqViewer.state.dates);
  out.collections = await page.$$eval('#collection option', (os) => os.map((o) => o.value));
  out.snapshots = await page.$$eval('#snapshot option', (os) => os.map((o) => o.value));
  out.modes = await page.$$eval('#render-mode option', (os) => os.map((o) => ({ value: o.value, disabled: o.disabled })));
  await page.screenshot({ path: shot('page') });

  // 2. move the time slider with the keyboard, one date back (a person drags or uses the arrow keys)
  await page.locator('#time-slider').focus();
  url = await step('time-previous', url, () => page.keyboard.press('ArrowLeft'));
  // ... and to the first date
  url = await step('time-first', url, () => page.keyboard.press('Home'));

  // 3. all dates as a mosaic, then time travel to the oldest snapshot
  url = await step('mosaic-head', url, () => page.locator('#all-dates').check());
  const oldest = out.snapshots[out.snapshots.length - 1];
  url = await step('mosaic-oldest-snapshot', url, () => page.locator('#snapshot').selectOption(oldest));
  url = await step('mosaic-head-again', url, () => page.locator('#snapshot').selectOption(''));

  // 4. STAC search over the map extent; click the first result to show that item's layer
  await page.locator('#search-btn').click();
  await page.waitForFunction(() => document.body.dataset.search === 'done' || document.body.dataset.search === 'failed', null, { timeout: 30000 });
  out.search = {
    state: await page.evaluate(() => document.body.dataset.search),
    status: await page.locator('#search-status').textContent(),
    items: await page.$$eval('#search-results li', (lis) => lis.map((li) => ({ id: li.dataset.itemId, collection: li.dataset.collection }))),
    bbox: await page.evaluate(() => { const b = window.pqViewer.map.getBounds(); return [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()]; }),
  };
  if (out.search.items.length) {
    await page.locator('#search-results li').first().click();
    await page.waitForFunction(() => window.pqViewer.state.itemTileUrl && document.body.dataset.state === 'idle', null, { timeout: 60000 });
    await sleep(600);
    await page.locator('#map').screenshot({ path: shot('search-item') });
    await page.screenshot({ path: shot('search-page') });
    out.search.itemTileUrl = await page.evaluate(() => window.pqViewer.state.itemTileUrl);
    out.search.itemScreenshot = shot('search-item');
    out.search.itemTileRequests = requests.filter((r) => r.url.includes('/items/') && r.url.includes('/tiles/')).map((r) => r.status);
    await page.locator('#item-clear').click();
  }

  // 5. the NDVI control on a collection with red and nir bands
  if (cfg.ndviCollection) {
    const prev = await page.evaluate(() => window.pqViewer.tileUrl());
    await page.locator('#collection').selectOption(cfg.ndviCollection);
    url = await step('ndvi-default', prev);
    out.ndviModes = await page.$$eval('#render-mode option', (os) => os.map((o) => ({ value: o.value, disabled: o.disabled })));
    url = await step('ndvi', url, () => page.locator('#render-mode').selectOption('ndvi'));
    out.ndviRescale = await page.locator('#rescale').inputValue();
    out.ndviColormap = await page.locator('#colormap').inputValue();
    out.share = { xyz: await page.locator('#xyz-url').inputValue(), wmts: await page.locator('#wmts-url').inputValue() };
    await page.screenshot({ path: shot('ndvi-page') });
    url = await step('ndvi-band-nir', url, () => page.locator('#render-mode').selectOption('band').then(() => page.locator('#band').selectOption('nir')), 'bands=nir');
  }

  // 6. a band-ratio preset mixing bands of two resolutions (Sentinel-2 nir at 10 m, swir16 at 20 m)
  if (cfg.ratioCollection) {
    const prev = await page.evaluate(() => window.pqViewer.tileUrl());
    await page.locator('#collection').selectOption(cfg.ratioCollection);
    url = await step('ratio-default', prev);
    out.ratioModes = await page.$$eval('#render-mode option', (os) => os.map((o) => ({ value: o.value, disabled: o.disabled })));
    const seen = requests.length;
    url = await step('ndmi', url, () => page.locator('#render-mode').selectOption('ndmi'));
    out.ndmiTileRequests = requests.slice(seen).filter((r) => r.url.includes('/tiles/') && r.url.includes('swir16')).map((r) => r.status);
    out.ndmiHint = await page.locator('#render-hint').textContent();
  }
  out.statusClass = await page.locator('#status').getAttribute('class');
} catch (e) {
  out.error = String(e && e.stack || e);
  if (page) await page.screenshot({ path: shot('failure') }).catch(() => {});
} finally {
  await cleanup();
}
emit(out);
