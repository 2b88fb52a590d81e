"""Device and dtype resolution, memory readings: the one place that decides where models run.

This module owns the mapping from config (`device`, `dtype`) to torch objects and peak-memory readings for
the manifest. It imports torch lazily, inside each function.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from animagent.config import Config
from animagent.errors import InputError, MissingError

if TYPE_CHECKING:
    import torch


def device(config: Config) -> str:
    import torch
    from packaging.version import Version

    if Version(torch.__version__.split("+")[0]) < Version("2.6"):
        # weights_only loading is only a defence from torch 2.6 on (CVE-2025-32434)
        raise MissingError(f"animagent needs torch >= 2.6, found {torch.__version__}; upgrade torch")
    name = config.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("device is 'cuda' but torch sees no CUDA GPU; use --set device=cpu or the tiny profile")
    if name == "cpu":
        # Multi-threaded CPU kernels do not always reduce in the same order, and the tiny random models
        # amplify the last bit into visible pixels: one thread keeps same-seed runs byte-identical.
        torch.set_num_threads(1)
    return name


def dtype(config: Config) -> torch.dtype:
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[config.dtype]


def generator(seed: int) -> torch.Generator:
    """A CPU generator: the same seed gives the same noise on every device (diffusers' reproducibility advice)."""
    import torch

    return torch.Generator("cpu").manual_seed(seed)


def peak_memory_bytes() -> int | None:
    """Peak GPU memory allocated by this process since the last reset, or None without CUDA."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    return int(torch.cuda.max_memory_allocated())


def reset_peak_memory() -> None:
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def is_oom(exc: BaseException) -> bool:
    """A CUDA out-of-memory error, whichever way torch or a kernel library reports it."""
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


def free_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
