#!/usr/bin/env bash
# Copies the built browser libraries the viewer ships from npm (versions pinned by package-lock.json) into the
# package's static files, where they are committed: the server never loads anything from a CDN and needs no Node.js.
#
#   cd vendor && npm ci && bash sync.sh
#
# tests/test_viewer_vendor.py checks that the committed files match the lockfile's version (and, when
# vendor/node_modules exists, that they are byte-identical to the npm package's built files).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dest="$here/../pixelquery_tiler/static/viewer/uplot"
mkdir -p "$dest"
cp "$here/node_modules/uplot/dist/uPlot.iife.min.js" "$here/node_modules/uplot/dist/uPlot.min.css" "$dest/"
cp "$here/node_modules/uplot/LICENSE" "$dest/LICENSE"
echo "uplot $(node -p "require('$here/node_modules/uplot/package.json').version") -> $dest"
