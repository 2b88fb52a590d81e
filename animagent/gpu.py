"""Device and dtype resolution, memory readings, the out-of-memory ladder: where and how models run.

This module owns the mapping from config (`device`, `dtype`) to torch objects, peak-memory readings for the
manifest, and the retry-on-OOM mechanism the painter and animator use. It imports torch lazily.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable, TypeVar

from animagent.config import Config
from animagent.errors import InputError, MissingError, ResourceError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
T = TypeVar("T")
_threads_before: int | None = None  # torch's CPU thread count before `device` pinned it, for restore_threads


def device(config: Config) -> str:
    global _threads_before
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
        if _threads_before is None:
            _threads_before = torch.get_num_threads()
        torch.set_num_threads(1)
    return name


def check_compile(config: Config) -> None:
    """Fail before minutes of work when `gpu.compile_animator` or `gpu.compile_director` is on and torch cannot
    compile for a GPU here."""
    wanted = [name for name, on in (("compile_animator", config.gpu.compile_animator and config.animator.kind == "svd"),
                                    ("compile_director", config.gpu.compile_director
                                     and config.director.kind == "transformers")) if on]
    if not wanted:
        return
    from torch.utils._triton import has_triton

    if not has_triton():
        raise MissingError(
            f"{' and '.join('gpu.' + name for name in wanted)} {'needs' if len(wanted) == 1 else 'need'} a CUDA GPU "
            f"and triton, which this torch does not have; use {' '.join(f'--set gpu.{name}=false' for name in wanted)}"
        )


def restore_threads() -> None:
    """Give the process back the CPU thread count it had before a run pinned it (the Python API's caller)."""
    global _threads_before
    if _threads_before is not None:
        import torch

        torch.set_num_threads(_threads_before)
        _threads_before = None


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


def cpu_offload(pipe, device: str) -> bool:
    """The OOM ladder's first rung for a diffusers pipeline: each model on the GPU only while it runs (CUDA
    only; on the CPU there is nothing to free). Returns whether offload is now on."""
    if device != "cuda":
        return False
    pipe.enable_model_cpu_offload()
    return True


class OomLadder:
    """Retries a call that ran out of GPU memory, applying the next rung of a ladder before each retry.

    One ladder per backend; `taken` lists every rung applied (for the manifest) until `take()` clears it.
    Errors other than out-of-memory pass through untouched; when the rungs run out the OOM becomes a
    ResourceError (exit 5, resumable) naming what was tried.
    """

    def __init__(self, backend: str, hint: str):
        self.backend = backend
        self.hint = hint
        self.taken: list[str] = []

    def run(self, phase: str, attempt: Callable[[], T], rungs: list[tuple[str, Callable[[], None]]]) -> T:
        remaining = list(rungs)
        while True:
            try:
                return attempt()
            except Exception as exc:
                if not is_oom(exc):
                    raise
                free_memory()
                if not remaining:
                    raise ResourceError(
                        f"out of GPU memory in the {self.backend} after {', '.join(self.taken) or 'no recovery steps'}"
                        f" ({exc}); {self.hint}, then resume"
                    ) from exc
                name, apply = remaining.pop(0)
                apply()
                log.warning("%s %s out of memory: %s", self.backend, phase, name)
                self.taken.append(f"{phase} out of memory: {name}")

    def take(self) -> list[str]:
        taken, self.taken = self.taken, []
        return taken
