#!/usr/bin/env bash
# Install what is needed and serve the workbench on http://127.0.0.1:${PORT:-8501} (SQLite store in .workbench/).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/workbench ui --port "${PORT:-8501}"
