#!/usr/bin/env bash
# Install what is needed (venv, test extras, Debian Chromium) and run the whole test suite, browser test included.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
exec .venv/bin/python -m pytest -q "$@"
