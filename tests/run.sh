#!/usr/bin/env bash
# The one test command (README "Test"): installs everything the suite needs into a local venv, then runs pytest.
# Idempotent; CI (.ci/run) calls exactly this from a clean clone.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${PIXELQUERY_VENV:-.venv}"
PY="${PYTHON:-python3}"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e ".[test]"
# Static checks before any test (configured in pyproject.toml); each fails the run with its own label
"$VENV/bin/ruff" check . || { echo "FAILED: ruff check (lint)" >&2; exit 1; }
"$VENV/bin/ruff" format --check . || { echo "FAILED: ruff format --check (run: ruff format .)" >&2; exit 1; }
"$VENV/bin/mypy" pixelquery_tiler || { echo "FAILED: mypy pixelquery_tiler (types)" >&2; exit 1; }
# Debian packages some tests drive for real: a PostgreSQL server (scale-out catalog test) and gdal-bin
# (gdal_translate through GDAL's WMTS driver). Installed when missing and we are root (as in CI).
apt_missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || apt_missing+=(postgresql)
command -v gdal_translate >/dev/null 2>&1 || apt_missing+=(gdal-bin)
command -v strace >/dev/null 2>&1 || apt_missing+=(strace)  # tests/test_robustness_server.py traces file access
# nginx in front of serve replicas (tests/test_scaleout.py runs docker/nginx.conf)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || apt_missing+=(nginx-light)
if [ ${#apt_missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null
fi
# system packages and npm packages for the browser/OpenLayers tests (skipped if already present)
if [ -f tests/browser/setup.sh ]; then bash tests/browser/setup.sh; fi
# STAC Browser built from its npm package (lockfile) for the STAC Browser client test; skipped when already built
bash tests/stac_browser/setup.sh
# the viewer's chart library as pinned by vendor/package-lock.json (tests/test_viewer_vendor.py compares the shipped copy)
if [ -f vendor/package-lock.json ] && command -v npm >/dev/null; then (cd vendor && npm ci --no-audit --no-fund --silent); fi
# QGIS as a WMTS client: a ~2 minute Debian install, inside the CI budget, so every run checks the WMTS
# output with QGIS (PIXELQUERY_QGIS=0 skips it locally)
if [ "${PIXELQUERY_QGIS:-1}" = 1 ] && [ "$(id -u)" = 0 ]; then
  bash tests/qgis/setup.sh
  export PIXELQUERY_QGIS=1
fi
export PATH="$PWD/$VENV/bin:$PATH"
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
