// OpenLayers WMTS client test. Config (argv[2], JSON): base (server URL, trailing slash), collection, runs
// ([{name, time}] — one page load each), artifacts. The test page and its bundle (npm "ol" via esbuild) are
// served by this script under <base>__ol_test__/ through request interception, so the page has the tile
// server's origin (canvas readback needs no CORS). Prints one JSON object.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { config, launch, watch, emit, sleep } from './common.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const cfg = config();
const out = { runs: {}, problems: [] };

const built = await esbuild.build({
  entryPoints: [path.join(here, 'ol_page', 'wmts.js')],
  bundle: true, format: 'iife', target: 'es2020', write: false, logLevel: 'error',
});
const bundle = built.outputFiles[0].text;
const html = fs.readFileSync(path.join(here, 'ol_page', 'index.html'), 'utf8');
out.bundleBytes = bundle.length;

const { browser, cleanup } = await launch(cfg);
try {
  for (const run of cfg.runs) {
    const page = await browser.newPage({ viewport: { width: 768, height: 512 } });
    const { problems } = await watch(page);
    await page.route(`${cfg.base}__ol_test__/**`, (route) => {
      const url = new URL(route.request().url());
      if (url.pathname.endsWith('/bundle.js')) return route.fulfill({ status: 200, contentType: 'text/javascript', body: bundle });
      return route.fulfill({ status: 200, contentType: 'text/html', body: html });
    });
    await page.goto(`${cfg.base}__ol_test__/index.html`, { waitUntil: 'load' });
    await page.waitForFunction(() => window.olReady === true, null, { timeout: 30000 });
    // with the collection's rendering (as in its STAC "wmts" link) unless the run asks for the plain document
    const query = cfg.capsQuery && !run.plain ? `?${cfg.capsQuery}` : '';
    const capabilitiesUrl = `${cfg.base}collections/${encodeURIComponent(cfg.collection)}/WMTSCapabilities.xml${query}`;
    const result = await page.evaluate((args) => window.runWmts(args), {
      capabilitiesUrl, layer: cfg.layer || null, matrixSet: cfg.matrixSet || null, time: run.time || null,
      requestEncoding: run.requestEncoding || null,
    });
    await sleep(200);
    const file = path.join(cfg.artifacts, `openlayers-${run.name}.png`);
    await page.screenshot({ path: file });
    out.runs[run.name] = { ...result, screenshot: file, problems };
    out.problems.push(...problems);
    await page.close();
  }
} catch (e) {
  out.error = String(e && e.stack || e);
} finally {
  await cleanup();
}
emit(out);
