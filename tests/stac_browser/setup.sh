#!/usr/bin/env bash
# Builds STAC Browser (npm package @radiantearth/stac-browser, exact versions in package-lock.json) into
# tests/stac_browser/dist for tests/test_stac_browser.py; idempotent (skipped while dist matches the lockfile).
#
# The npm package ships sources only, so this installs its build tool chain (vue-cli, the same major versions as
# its devDependencies) from the lockfile and runs its production build. Two pins make the build work offline:
#   - ol-stac 1.1.0: newer ol-stac releases import OpenLayers functions that STAC Browser 4.0.1's OpenLayers
#     (~10.6) does not have (parseTileMatrixSet, fromProjectionDefinition), which fails the build;
#   - the sources are copied to build/ with node_modules linked beside them, because STAC Browser's styles import
#     '../../node_modules/ol/ol.css' relative to its own folder.
# Hash-based routing (--historyMode=hash) lets any static file server host the build.
# Needs Node.js >= 20 and npm (as tests/browser/setup.sh). ~1 GB of node_modules, 2-5 minutes on 2 cores.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
stamp="$here/dist/.pixelquery-lock"
if [ -f "$stamp" ] && cmp -s "$here/package-lock.json" "$stamp"; then
  exit 0
fi
start=$(date +%s)
cd "$here"
echo "stac-browser setup: npm ci" >&2
npm ci --no-audit --no-fund --loglevel=error >/dev/null
rm -rf build dist
cp -r node_modules/@radiantearth/stac-browser build
rm -rf build/node_modules
ln -s ../node_modules build/node_modules
echo "stac-browser setup: vue-cli-service build" >&2
(cd build && ../node_modules/.bin/vue-cli-service build --dest ../dist --noSourceMaps --historyMode=hash >build.log 2>&1) || {
  tail -40 build/build.log >&2
  exit 1
}
rm -rf build
cp package-lock.json "$stamp"
echo "stac-browser setup: ok ($(( $(date +%s) - start )) s)" >&2
