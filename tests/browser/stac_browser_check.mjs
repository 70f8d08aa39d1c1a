// STAC Browser (built by tests/stac_browser/setup.sh) against a live pixelquery-tiler STAC API: the catalog page
// lists the collections, a collection's item opens with its thumbnail, bands and the item's XYZ web-map link
// on the map, and a search by bbox and datetime lists the items. Prints one JSON line for the pytest side.
import { config, launch, watch } from './common.mjs';

const cfg = config();
const { browser, cleanup } = await launch(cfg);
const page = await browser.newPage();
const { problems, requests } = await watch(page);
const out = { steps: {}, searches: [] };
page.on('request', (r) => {
  if (r.url().startsWith(cfg.api + 'stac/search')) out.searches.push({ method: r.method(), url: r.url(), body: r.postData() });
});
const shot = async (name) => page.screenshot({ path: `${cfg.artifacts}/stac-browser-${name}.png` });
const text = () => page.evaluate(() => document.body.innerText);

try {
  // 1. the catalog: every collection is listed
  await page.goto(cfg.browser + '#/', { waitUntil: 'networkidle', timeout: 90000 });
  for (const c of cfg.collections) await page.getByText(`${c} (pixelquery.${c})`).first().waitFor({ timeout: 60000 });
  out.steps.catalog = await text();
  await shot('catalog');

  // 2. a collection, then its item (clicked as a user does): thumbnail, bands, web-map link on the map
  await page.goto(cfg.browser + `#/collections/${cfg.collection}`, { waitUntil: 'networkidle', timeout: 90000 });
  await page.getByText(cfg.itemTitle).first().click();
  await page.waitForURL(/\/items\//, { timeout: 60000 });
  await page.waitForLoadState('networkidle', { timeout: 90000 });
  await page.waitForTimeout(2000);
  out.itemUrl = page.url();
  out.steps.item = await text();
  out.thumbnails = await page.evaluate(() => [...document.images]
    .filter((img) => img.src.includes('/preview'))
    .map((img) => ({ src: img.src, loaded: img.complete && img.naturalWidth > 0 })));
  await shot('item');

  // 3. search by bbox (the map's current extent) and datetime, submitted through the form
  await page.goto(cfg.browser + '#/search', { waitUntil: 'networkidle', timeout: 90000 });
  const dates = page.locator('.filter-datetime input').first();
  await dates.click();
  await dates.fill(cfg.datetimeRange);
  await dates.press('Enter');
  await page.locator('.filter-bbox .custom-control-label').first().click();
  await page.locator('.filter-bbox .ol-viewport, .filter-bbox canvas').first().waitFor({ timeout: 60000 });
  await page.waitForTimeout(2000);
  // STAC Browser's bbox picker: a click on the map draws a box around the clicked point. Click where the item is
  // (the OpenLayers map of the Vue component converts lon/lat to a pixel of its own view)
  const container = page.locator('.filter-bbox .map-container').first();
  const pixel = await container.evaluate((el, [lon, lat]) => {
    const x = lon * 20037508.342789244 / 180;
    const y = Math.log(Math.tan((90 + lat) * Math.PI / 360)) * 6378137;
    return el.__vue__.map.getPixelFromCoordinate([x, y]);
  }, cfg.searchPoint);
  const box = await page.locator('.filter-bbox .map').first().boundingBox();
  await page.mouse.click(box.x + pixel[0], box.y + pixel[1]);
  await page.waitForTimeout(1000);
  await page.getByRole('button', { name: 'Submit' }).click();
  await page.getByText(cfg.itemTitle).first().waitFor({ timeout: 60000 });
  out.steps.search = await text();
  await shot('search');
} catch (e) {
  out.error = String(e && e.stack || e);
  await shot('error').catch(() => {});
}
out.problems = problems;
out.requests = requests.filter((r) => r.url.startsWith(cfg.api));
await cleanup();
console.log(JSON.stringify(out));
