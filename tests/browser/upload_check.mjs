// Drives the viewer's "Add imagery" panel: paste the key, drop a GeoTIFF on the drop zone, watch the job.
// Config (argv[2], JSON): base (server URL, trailing slash), key, file (GeoTIFF path), collection, datetime.
// Prints one JSON object: job states seen, the slider's dates before and after, problems (errors of any kind).
import fs from 'node:fs';
import path from 'node:path';
import { config, launch, watch, emit } from './common.mjs';

const cfg = config();
const out = { problems: [], statuses: [], datesBefore: null, datesAfter: null };
const { browser, cleanup } = await launch(cfg);
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const { problems } = await watch(page);
  out.problems = problems;
  await page.goto(`${cfg.base}#${encodeURIComponent(cfg.collection)}`, { waitUntil: 'load' });
  await page.waitForFunction(() => window.pqViewer && window.pqViewer.state.dates.length > 0 &&
    document.getElementById('add-imagery'), null, { timeout: 60000 });
  out.datesBefore = await page.evaluate(() => window.pqViewer.state.dates.slice());
  // record every job state the panel shows
  await page.evaluate(() => {
    window.__jobStates = [];
    const el = document.getElementById('add-imagery');
    new MutationObserver(() => {
      const s = el.dataset.jobStatus;
      if (s && window.__jobStates[window.__jobStates.length - 1] !== s) window.__jobStates.push(s);
    }).observe(el, { attributes: true, attributeFilter: ['data-job-status'] });
  });
  await page.fill('#api-key', cfg.key);
  await page.fill('#upload-datetime', cfg.datetime);
  // a real drag and drop: a File in a DataTransfer, dispatched as a drop event on the zone
  const b64 = fs.readFileSync(cfg.file).toString('base64');
  const transfer = await page.evaluateHandle(([data, name]) => {
    const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
    const dt = new DataTransfer();
    dt.items.add(new File([bytes], name, { type: 'image/tiff' }));
    return dt;
  }, [b64, path.basename(cfg.file)]);
  await page.dispatchEvent('#drop-zone', 'dragover', { dataTransfer: transfer });
  await page.dispatchEvent('#drop-zone', 'drop', { dataTransfer: transfer });
  await page.waitForFunction(() => ['succeeded', 'failed'].includes(document.getElementById('add-imagery').dataset.jobStatus),
    null, { timeout: 120000, polling: 100 });
  await page.waitForFunction(() => document.body.dataset.state === 'idle', null, { timeout: 60000 });
  out.statuses = await page.evaluate(() => window.__jobStates);
  out.message = await page.locator('#upload-status').textContent();
  out.datesAfter = await page.evaluate(() => window.pqViewer.state.dates.slice());
  out.sliderMax = await page.evaluate(() => document.getElementById('time-slider').max);
  out.timeLabel = await page.locator('#time-label').textContent();
  out.storedKey = await page.evaluate(() => localStorage.getItem('pixelquery-api-key') === null ? null : 'set');
  await page.locator('body').screenshot({ path: path.join(cfg.artifacts, 'viewer-upload.png') });
} catch (err) {
  out.error = String(err && err.stack || err);
} finally {
  await cleanup();
}
emit(out);
