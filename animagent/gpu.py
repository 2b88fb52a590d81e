"""Device and dtype resolution, memory readings, the out-of-memory ladder, CUDA graphs: where and how models run.

This module owns the mapping from config (`device`, `dtype`) to torch objects, peak-memory readings for the
manifest, the retry-on-OOM mechanism the painter and animator use, the checks of the GPU levers a machine may lack
(`lever_off`), `HostCopy`, which parks weights in CPU memory, and `CudaGraphs`, which replays a module's forward
from captured CUDA graphs. It imports torch lazily.
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


class HostCopy:
    """Parks models' weights in CPU memory and brings them back, keeping the CPU copy once it is made.

    Weights never change, so the copy of a tensor made at its first park (pinned, under CUDA) serves every later
    park: a later park only lets the GPU tensors go, and the way back copies from pinned memory without staging
    through pageable memory. The price is host memory: the copy stays while the model is loaded. Tensors are
    gathered at each park, so weights that arrive later (an adapter) get their copy at their first park."""

    def __init__(self) -> None:
        self._host: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # id(tensor) -> (tensor, its CPU copy)

    def park(self, modules: list[torch.nn.Module]) -> None:
        import torch

        pin = torch.cuda.is_available()
        for tensor in _weights(modules):
            if id(tensor) not in self._host:
                copy = torch.empty_like(tensor.data, device="cpu", pin_memory=pin).copy_(tensor.data)
                self._host[id(tensor)] = (tensor, copy)
            tensor.data = self._host[id(tensor)][1]

    def unpark(self, modules: list[torch.nn.Module], device: str) -> None:
        import torch

        for tensor in _weights(modules):
            tensor.data = self._host[id(tensor)][1].to(device, non_blocking=True)
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # the copies are queued; the caller's log times their arrival


def _weights(modules: list[torch.nn.Module]) -> list[torch.Tensor]:
    """Every parameter and buffer of `modules`, once each (pipelines share modules)."""
    seen: dict[int, torch.Tensor] = {}
    for module in modules:
        for tensor in (*module.parameters(), *module.buffers()):
            seen.setdefault(id(tensor), tensor)
    return list(seen.values())


def lever_off(config: Config, lever: str) -> str | None:
    """Why the GPU lever `gpu.<lever>` (`graph_painter`, `fp8_animator`) cannot run on this machine, or None when
    it can (or is off). The backends switch such a lever off with one log line; `animagent doctor` reports it."""
    import importlib.util

    import torch

    if not getattr(config.gpu, lever):
        return None
    if lever == "fp8_animator" and config.animator.kind != "svd":
        return None
    if config.device == "cpu" or not torch.cuda.is_available():
        return f"gpu.{lever} needs a CUDA GPU; running without it"
    if lever == "fp8_animator":
        if importlib.util.find_spec("torchao") is None:
            return (f"gpu.fp8_animator needs torchao (pip install 'animagent[fp8]'); running the animator in "
                    f"{config.dtype}")
        major, minor = torch.cuda.get_device_capability()
        if (major, minor) < (8, 9):
            return (f"gpu.fp8_animator needs a GPU with FP8 matmuls (compute capability 8.9+: Ada, Hopper); "
                    f"{torch.cuda.get_device_name()} is {major}.{minor}; running the animator in {config.dtype}")
    return None


def graph_key(args: tuple, kwargs: dict, state: object) -> tuple[tuple, list, object]:
    """(the key of a call's CUDA graph, the call's pytree leaves, its tree spec). The key holds the structure, each
    tensor's shape, dtype and device, every other leaf's value, and `state`: never a tensor's values, so calls that
    differ only in their tensors' contents (latents, timesteps, masks, embeddings) share one graph."""
    import torch
    from torch.utils import _pytree as pytree

    leaves, spec = pytree.tree_flatten((args, kwargs))
    parts: list[object] = [str(spec), state]
    for leaf in leaves:
        if isinstance(leaf, torch.Tensor):
            parts.append((tuple(leaf.shape), leaf.dtype, leaf.device))
        elif leaf is None or isinstance(leaf, (bool, int, float, str, torch.dtype, torch.device)):
            parts.append(leaf)
        else:
            # an object keyed by identity would capture a new graph on every call
            raise TypeError(f"CudaGraphs got a {type(leaf).__name__} argument; register its type as a pytree node "
                            "(torch.utils._pytree.register_pytree_node) so its tensors become graph inputs")
    return tuple(parts), leaves, spec


class CudaGraphs:
    """Replays a module's forward from CUDA graphs: one graph per distinct call (`graph_key`: its tensors' shapes,
    dtypes and devices, its other arguments, and `key()`, the state the forward reads besides its arguments, such as
    adapter scales, which a graph bakes in). The first call of each kind runs as usual (the warm-up) and is then
    captured; later ones copy their tensors into the graph's inputs and replay it: the same kernels, without the
    host launching each one.

    A graph holds the addresses of the module's weights: `clear()` whenever they move (CPU parking) or change
    (adapters loaded), `remove()` before anything else takes over the module's forward (model CPU offload). All
    graphs share one memory pool: they run one at a time and every output is copied out before the next replay.
    """

    def __init__(self, module, key: Callable[[], object] = tuple):
        import torch

        self._module = module
        self._forward = module.forward
        self._key = key
        self._graphs: dict[tuple, tuple] = {}
        self._pool = torch.cuda.graph_pool_handle()
        self.captured = 0
        module.forward = self

    def __call__(self, *args, **kwargs):
        import torch
        from torch.utils import _pytree as pytree

        key, leaves, spec = graph_key(args, kwargs, self._key())
        entry = self._graphs.get(key)
        if entry is None:
            output = self._forward(*args, **kwargs)
            self._graphs[key] = self._capture(leaves, spec)
            return output
        inputs, graph, output = entry
        for static, leaf in zip(inputs, leaves):
            if isinstance(leaf, torch.Tensor):
                static.copy_(leaf)
        graph.replay()
        return pytree.tree_map(lambda x: x.clone() if isinstance(x, torch.Tensor) else x, output)

    def _capture(self, leaves: list, spec) -> tuple:
        import torch
        from torch.utils import _pytree as pytree

        inputs = [leaf.clone() if isinstance(leaf, torch.Tensor) else leaf for leaf in leaves]
        args, kwargs = pytree.tree_unflatten(inputs, spec)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            output = self._forward(*args, **kwargs)
        self.captured += 1
        log.debug("captured CUDA graph %d of %s", self.captured, type(self._module).__name__)
        return inputs, graph, output

    def clear(self) -> None:
        """Drop every graph, and with them their memory (the next call of each kind warms up and captures again)."""
        import torch

        self._graphs.clear()
        self._pool = torch.cuda.graph_pool_handle()

    def remove(self) -> None:
        """Give the module its own forward back."""
        self._graphs.clear()
        self._module.forward = self._forward
