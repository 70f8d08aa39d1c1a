#!/usr/bin/env bash
# Installs what the browser and OpenLayers tests need; idempotent (a second run changes nothing and takes ~1 s).
#
#   - Debian packages: chromium (the headless browser, /usr/bin/chromium) and fonts-dejavu-core;
#     Node.js >= 20 is expected on the machine (it is on the project's machine image; Debian's own is too old
#     for playwright-core, so it is not installed from here).
#   - npm packages from tests/browser/package-lock.json into tests/browser/node_modules (test-only, never shipped):
#     playwright-core (drives Debian's chromium through executablePath: no browser download), ol (OpenLayers,
#     for the WMTS client test) and esbuild (bundles the OpenLayers test page at test time).
#
# Usage: bash tests/browser/setup.sh            (as root, or with sudo available, for the apt step)
# Env:   PIXELQUERY_SKIP_APT=1 skips the apt step (e.g. when chromium is provided another way).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
start=$(date +%s)

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else echo "browser setup: need root (or sudo) to run: $*" >&2; return 1
  fi
}

# ---- Debian packages
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
dpkg -s fonts-dejavu-core >/dev/null 2>&1 || missing+=(fonts-dejavu-core)
if [ "${#missing[@]}" -gt 0 ] && [ "${PIXELQUERY_SKIP_APT:-0}" != 1 ]; then
  echo "browser setup: apt-get install ${missing[*]}" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# ---- Node.js
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "browser setup: Node.js >= 20 and npm are required (not found on PATH)" >&2
  exit 1
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
  echo "browser setup: Node.js >= 20 is required (found $(node --version))" >&2
  exit 1
fi

# ---- npm packages, exactly as locked; skipped when node_modules already matches the lockfile
stamp="$here/node_modules/.pixelquery-lock"
if [ ! -f "$stamp" ] || ! cmp -s "$here/package-lock.json" "$stamp"; then
  echo "browser setup: npm ci in tests/browser" >&2
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  cp "$here/package-lock.json" "$stamp"
fi

# ---- smoke check: the tools the tests call
"$here/node_modules/.bin/esbuild" --version >/dev/null
node -e "require('$here/node_modules/playwright-core')" >/dev/null
echo "browser setup: ok ($(( $(date +%s) - start )) s; $(/usr/bin/chromium --version 2>/dev/null | head -1), node $(node --version))" >&2
