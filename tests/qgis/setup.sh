#!/usr/bin/env bash
# Installs QGIS for the opt-in QGIS client test (PIXELQUERY_QGIS=1 pytest -m qgis); idempotent.
# Debian packages python3-qgis + qgis-providers (no recommends): ~210 packages, about 2 minutes on the 2-core
# machine (measured: 1 min 56 s after apt-get update). Run as root (or with sudo).
set -euo pipefail
if /usr/bin/python3 -c "import qgis.core" >/dev/null 2>&1 && dpkg -s qgis-providers >/dev/null 2>&1; then
  echo "qgis setup: already installed" >&2
  exit 0
fi
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
start=$(date +%s)
as_root apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-qgis qgis-providers >/dev/null
echo "qgis setup: installed in $(( $(date +%s) - start )) s" >&2
