#!/usr/bin/env bash
# Runs the segment-anything segmenter tests on a CPU-only machine, without touching the project venv:
# torchvision==0.28.0 and segment-anything go into an isolated --target folder, and a sitecustomize shim
# (docs: ../shared/research/feasibility.md, pitfall 3) defines torchvision::nms/qnms before the first torchvision
# import, since that wheel's _C.so needs libtorch_cuda.so and registers no ops against CPU torch. Test-only.
# Usage: [SA_SITE=/tmp/sa-site] scripts/check_segment_anything.sh [extra pytest args, e.g. -rA]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
SITE=${SA_SITE:-/tmp/sa-site}
SHIM="$SITE-shim"

if [ ! -d "$SITE/torchvision" ] || [ ! -d "$SITE/segment_anything" ]; then
    "$PY" -m pip install --quiet --no-deps --target "$SITE" torchvision==0.28.0 segment-anything
fi
mkdir -p "$SHIM"
cat > "$SHIM/sitecustomize.py" <<'PYEOF'
# Test-only: let torchvision 0.28.0 import against CPU torch (its C++ ops stay unavailable).
import torch

_torchvision_shim = torch.library.Library("torchvision", "DEF")
_torchvision_shim.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
_torchvision_shim.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
PYEOF

export PYTHONPATH="$SHIM:$SITE${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c "import torchvision, segment_anything; print('torchvision', torchvision.__version__, torchvision.__file__)"
exec "$PY" -m pytest -q -rs -p no:cacheprovider tests/test_consistency_config.py \
    -k segment_anything "$@"
