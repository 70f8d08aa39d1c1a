// Opens the viewer, clicks the map and drags a rectangle, and records the time-series charts it drew. Config (argv[2]):
//   base        server URL with trailing slash
//   artifacts   folder for screenshots
//   collection  a collection with several dates (point series of the default rendering)
//   ndviCollection  a collection with red and nir (point series of the NDVI rendering)
// Prints one JSON object: per chart the entries it plotted, whether uPlot drew a canvas, and problems (errors of any kind).
import path from 'node:path';
import { config, launch, watch, emit, sleep } from './common.mjs';

const cfg = config();
const out = { charts: {}, problems: [] };
const shot = (name) => path.join(cfg.artifacts, `chart-${name}.png`);

const { browser, cleanup } = await launch(cfg);
let page;
try {
  page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const { problems, requests } = await watch(page);
  out.problems = problems;

  const idle = () => page.waitForFunction(() => window.pqViewer && window.pqViewer.tileUrl() && document.body.dataset.state === 'idle', null, { timeout: 60000, polling: 100 });
  async function chart(name, action) {
    await page.evaluate(() => { delete document.body.dataset.chart; });
    await action();
    await page.waitForFunction(() => document.body.dataset.chart === 'ready' || document.body.dataset.chart === 'failed', null, { timeout: 30000 });
    await sleep(300);
    const file = shot(name);
    await page.screenshot({ path: file });
    out.charts[name] = await page.evaluate(() => ({
      state: document.body.dataset.chart,
      kind: window.pqChart.kind,
      names: window.pqChart.names,
      series: window.pqChart.series,
      canvas: !!document.querySelector('#chart-plot canvas'),
      title: document.getElementById('chart-title').textContent,
      note: document.getElementById('chart-note').textContent,
      selectedDate: window.pqViewer.chartView().selectedDate,
    }));
    out.charts[name].screenshot = file;
  }

  await page.goto(`${cfg.base}#${encodeURIComponent(cfg.collection)}`, { waitUntil: 'load' });
  await idle();
  out.dates = await page.evaluate(() => window.pqViewer.state.dates);
  // 1. click the middle of the map: the series at that point over all dates
  await chart('point', () => page.locator('#map').click());
  // 2. the previous date on the slider: the chart highlights it (redraw, same data)
  await page.locator('#time-slider').focus();
  await page.keyboard.press('ArrowLeft');
  await sleep(400);
  out.highlightAfterSlider = await page.evaluate(() => window.pqViewer.chartView().selectedDate);
  // 3. drag a rectangle around the middle: mean per date
  await page.locator('#chart-rect').click();
  const box = await page.locator('#map').boundingBox();
  const cx = box.x + box.width / 2, cy = box.y + box.height / 2;
  await chart('rectangle', async () => {
    await page.mouse.move(cx - 60, cy - 40);
    await page.mouse.down();
    await page.mouse.move(cx, cy, { steps: 5 });
    await page.mouse.move(cx + 60, cy + 40, { steps: 5 });
    await page.mouse.up();
  });
  out.rectangleRequests = requests.filter((r) => r.url.includes('/timeseries/statistics')).map((r) => r.status);
  // 4. NDVI rendering on another collection: the chart follows the rendering
  if (cfg.ndviCollection) {
    await page.locator('#collection').selectOption(cfg.ndviCollection);
    await idle();
    await page.locator('#render-mode').selectOption('ndvi');
    await idle();
    await chart('ndvi', () => page.locator('#map').click({ position: { x: box.width / 2 - 40, y: box.height / 2 - 30 } }));
  }
} catch (e) {
  out.error = String(e && e.stack || e);
  if (page) await page.screenshot({ path: shot('failure') }).catch(() => {});
} finally {
  await cleanup();
}
emit(out);
