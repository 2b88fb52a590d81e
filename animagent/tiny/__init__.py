"""Tiny random models in the real Hub repos' folder layouts, so the whole pipeline runs on any CPU.

Each builder writes one registry model's folder with the same file names as the real repo (configs,
tokenizers, fp16 variants, shards) and random weights small enough to run in seconds. Output is noise;
the loading code is the product's own. Builders import torch lazily; `build_all` is what
`animagent weights make-tiny` calls.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable


def _lazy(module: str, function: str) -> Callable[[Path], None]:
    def build(folder: Path) -> None:
        from importlib import import_module

        getattr(import_module(f"animagent.tiny.{module}"), function)(folder)

    return build


# registry name -> builder(folder); each writes exactly the registry's files for that model.
BUILDERS: dict[str, Callable[[Path], None]] = {
    "sdxl_base": _lazy("diffusion", "build_sdxl"),
    "sdxl_vae_fp16_fix": _lazy("diffusion", "build_vae_fp16_fix"),
    "ip_adapter_sdxl_vit_h": _lazy("diffusion", "build_ip_adapter"),
    "svd_xt": _lazy("diffusion", "build_svd"),
    "animatediff_sdxl": _lazy("diffusion", "build_animatediff_sdxl"),
    "wan2_2_ti2v_5b": _lazy("wan", "build_wan"),
    "qwen2_5_vl_7b": _lazy("director", "build_qwen2_5_vl"),
    "qwen3_vl_8b": _lazy("director_qwen3", "build_qwen3_vl"),
    "llava_onevision_7b": _lazy("llava", "build_llava_onevision"),
    "sam_vit_h": _lazy("vision", "build_sam"),
    "clip_vit_l": _lazy("vision", "build_clip"),
    "dinov2_base": _lazy("dino", "build_dinov2"),
    "kokoro_82m": _lazy("kokoro", "build_kokoro"),
}


def build_all(tiny_root: Path) -> dict[str, Path]:
    from animagent.weights import MODELS

    out = {}
    for name, build in BUILDERS.items():
        folder = tiny_root / MODELS[name].folder
        folder.mkdir(parents=True, exist_ok=True)
        build(folder)
        out[name] = folder
    return out
