#!/usr/bin/env bash
# One command: install, then run the default test suite (fast unit tests + e2e smoke tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
python -m pytest -q "$@"
