#!/usr/bin/env bash
# One command: install, then run the main job end to end on the bundled sample data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
fusionlog train --config configs/demo.yaml "$@"
