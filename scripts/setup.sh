#!/usr/bin/env bash
# Create .venv (Python 3.11+) and install the workbench into it. Idempotent: a second run is quick.
# Usage: scripts/setup.sh [--test]   (--test also installs pytest, Playwright, psycopg, Ray, and Debian's Chromium and
# PostgreSQL: the tests start a throwaway PostgreSQL server and a local Ray head of their own)
# A machine that only runs the ray executor needs `pip install -e '.[ray]'` (docs/cluster.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
extras=""
if [ "${1:-}" = "--test" ]; then
  extras="[test]"
  missing=""
  # Playwright cannot download its own browser here: use Debian's Chromium.
  [ -x /usr/bin/chromium ] || missing="$missing chromium"
  # the store tests run on SQLite and on a real PostgreSQL server (initdb + pg_ctl into a temporary folder)
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$missing postgresql"
  if [ -n "$missing" ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
  fi
fi
stamp=".venv/.installed$extras"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # torch is pinned (torch==2.13.0, a CPU build) in pyproject.toml: an unpinned torch pulls a multi-GB CUDA build
  .venv/bin/python -m pip install -q -e ".$extras"
  touch "$stamp"
fi
