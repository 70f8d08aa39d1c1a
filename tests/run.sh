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
# a PostgreSQL server for the scale-out catalog test (Debian package; needs root, as in CI)
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
# system packages and npm packages for the browser/OpenLayers tests (skipped if already present)
if [ -f tests/browser/setup.sh ]; then bash tests/browser/setup.sh; fi
export PATH="$PWD/$VENV/bin:$PATH"
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
