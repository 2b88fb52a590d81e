"""What is on the GPU when: the one owner of the backends' lifetimes.

A backend serves a role (director, painter, segmenter, embedder, dino, animator, voice). `Models.get(role)` loads
it on first use, from the config alone (`build`, which a worker process can call too); `release(*roles)` frees
it. The stages ask for a role right before each use, so a resumed run whose steps are finished loads nothing. With
`gpu.one_heavy_model` (lowvram) only one of the painter and the director is on the GPU at a time: getting one
parks the other in CPU memory first — parking, not releasing: draw and review alternate the two shot by shot (and
repair round by round), and a move across PCIe costs less than a load from disk. When a role is released for good
is the recipe's schedule (studio.RELEASE_AFTER), written as data beside it. `ids(*roles)` names the models a role
loads, with their revisions, for the step keys. `submit(fn, calls)` starts the stages' independent tasks (a clip
candidate, a cast item's sketches, their scores) and `map(fn, calls)` gives their results in order: with
cluster.kind local each task runs here when its result is taken, with kind ray on GPU workers that each hold models
of their own (cluster.py), started at once. This module owns kinds → backend classes; nothing else branches on a
kind.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

from animagent import gpu
from animagent.backends.motion import TABLES
from animagent.config import ANIMATOR_MODELS, Config
from animagent.weights import ensure_present, spec

if TYPE_CHECKING:
    from animagent.artifacts import Motion
    from animagent.backends import Animator, Director, Embedder, ImageEncoder, Painter, Segmenter, Voice
    from animagent.cluster import RayPool

Role = Literal["director", "painter", "segmenter", "embedder", "dino", "animator", "voice"]
ROLES: tuple[Role, ...] = ("director", "painter", "segmenter", "embedder", "dino", "animator", "voice")
R = TypeVar("R")


def build(role: Role, config: Config, logs: Path) -> Any:
    """The backend that serves `role` under `config` (heavy imports happen here); `logs` is where the director
    writes its raw replies."""
    root = config.weights_root()
    if not (role == "director" and config.director.kind == "openai"):
        ensure_present(config)  # fail naming the model and the fix, not deep inside a loader
    if role == "director":
        log_path = logs / "director.jsonl"
        if config.director.kind == "transformers":
            from animagent.backends.director_transformers import TransformersDirector

            return TransformersDirector(config, log_path)
        if config.director.kind == "openai":
            from animagent.backends.director_openai import OpenAIDirector

            return OpenAIDirector(config, log_path)
        from animagent.backends.director_vllm import VLLMDirector

        return VLLMDirector(config, log_path)
    if role == "painter":
        from animagent.backends.painter_sdxl import SDXLPainter

        return SDXLPainter(config, root)
    if role == "segmenter":
        if config.segmenter.kind == "sam":
            from animagent.backends.segmenter_sam import SamSegmenter

            return SamSegmenter(config, root, config.segmenter.model)
        from animagent.backends.segmenter_segment_anything import SegmentAnythingSegmenter

        return SegmentAnythingSegmenter(config, Path(config.segmenter.checkpoint))
    if role == "embedder":
        from animagent.backends.embedder import ClipEmbedder

        return ClipEmbedder(config, root, config.embedder.clip)
    if role == "dino":
        from animagent.backends.embedder_dino import DinoEmbedder

        return DinoEmbedder(config, root, config.embedder.dino)
    if role == "voice":
        from animagent.backends.voice_kokoro import KokoroVoice

        return KokoroVoice(config, root, config.voice.weights)
    if config.animator.kind == "svd":
        from animagent.backends.animator_svd import SVDAnimator

        return SVDAnimator(config, root)
    if config.animator.kind == "wan":
        from animagent.backends.animator_wan import WanAnimator

        return WanAnimator(config, root)
    from animagent.backends.animator_animatediff import AnimateDiffAnimator

    return AnimateDiffAnimator(config, root)


def model_ids(config: Config, *names: str) -> list[list[str]]:
    """What identifies models in a step key: registry name, repo, revision, flavor, dtype and device."""
    return [[n, spec(n).repo_id, spec(n).revision, config.weights.flavor, config.dtype, config.device] for n in names]


def role_models(config: Config, role: Role) -> list[str]:
    """The registry models `role` loads under `config`. segment_anything's checkpoint is not a registry model: its
    path (config.segmenter) is in the review key instead."""
    painter = [config.painter.model, config.painter.vae, config.painter.ip_adapter]
    return {
        "director": [config.director.weights],
        "painter": painter,
        "segmenter": [config.segmenter.model] if config.segmenter.kind == "sam" else [],
        "embedder": [config.embedder.clip],
        "dino": [config.embedder.dino],
        "animator": [ANIMATOR_MODELS[config.animator.kind], *(painter if _animator_paints(config) else [])],
        "voice": [config.voice.weights],
    }[role]


def director_identity(config: Config) -> tuple[str, str]:
    """(repo id, revision) of the director's model; a served one is named as served, its revision unknown here."""
    director = config.director
    if director.kind == "openai":
        return director.model or spec(director.weights).repo_id, "as served"
    return spec(director.weights).repo_id, spec(director.weights).revision


def _animator_paints(config: Config) -> bool:
    """AnimateDiff renders on the painter's SDXL, with its guidance and negative prompt."""
    return config.animator.kind == "animatediff"


class Pending(Generic[R]):
    """A submitted task's result, taken once with `result()`: computed then (cluster.kind local) or waited for."""

    def __init__(self, take: Callable[[], R]):
        self._take = take

    def result(self) -> R:
        return self._take()


class Models:
    """The backends of one run, loaded on first use. `loaded` starts it with backends already built (tests)."""

    def __init__(self, config: Config, logs: Path, loaded: dict[Role, Any] | None = None):
        self.config = config
        self.logs = logs
        self._loaded: dict[Role, Any] = dict(loaded or {})
        self._pool: RayPool | None = None  # cluster.kind ray: the GPU workers (`start`)

    @overload
    def get(self, role: Literal["director"]) -> Director: ...
    @overload
    def get(self, role: Literal["painter"]) -> Painter: ...
    @overload
    def get(self, role: Literal["segmenter"]) -> Segmenter: ...
    @overload
    def get(self, role: Literal["embedder"]) -> Embedder: ...
    @overload
    def get(self, role: Literal["dino"]) -> ImageEncoder: ...
    @overload
    def get(self, role: Literal["animator"]) -> Animator: ...
    @overload
    def get(self, role: Literal["voice"]) -> Voice: ...

    def get(self, role: Role) -> Any:
        if role in ("director", "painter"):
            self._make_room(role)
        if role not in self._loaded:
            self._loaded[role] = build(role, self.config, self.logs)
        return self._loaded[role]

    def loaded(self, role: Role) -> bool:
        return role in self._loaded

    def start(self) -> None:
        """With cluster.kind ray: connect and start the workers now, before any work, so that a node without the
        weights (exit 4) or with a GPU too small for the config (exit 5) stops the run first. Local: nothing."""
        if self.config.cluster.kind == "ray" and self._pool is None:
            from animagent.cluster import RayPool

            self._pool = RayPool(self.config, self.logs)
            self._pool.start()

    def submit(self, fn: Callable[..., R], calls: Sequence[tuple]) -> list[Pending[R]]:
        """`fn(models, *call)` for each call, without waiting: with cluster.kind local each one runs here when its
        result is taken (so nothing loads before that), with kind ray all of them go to the GPU workers now, each
        worker with models of its own (cluster.py). `fn` is a module-level function that needs nothing but
        models."""
        if self.config.cluster.kind == "local":
            return [Pending(functools.partial(fn, self, *call)) for call in calls]
        self.start()
        return self._pool.submit(fn, calls)  # type: ignore[union-attr]

    def map(self, fn: Callable[..., R], calls: Sequence[tuple]) -> Iterator[R]:
        """The results of `submit(fn, calls)`, in the order of `calls`."""
        return (pending.result() for pending in self.submit(fn, calls))

    def release(self, *roles: Role) -> None:
        for role in roles:
            backend = self._loaded.pop(role, None)
            if backend is not None:
                backend.close()
        if self._pool is not None:
            self._pool.release(*roles)

    def close(self) -> None:
        self.release(*ROLES)
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        gpu.restore_threads()

    def ids(self, *roles: Role) -> list[list[str]]:
        """The models of `roles`, identified for a step key (model_ids)."""
        return model_ids(self.config, *(name for role in roles for name in role_models(self.config, role)))

    def settings(self, role: Literal["animator"]) -> dict[str, Any]:
        """The config the animator renders with, for its step key: its own section (less what the animate stage
        decides: top_k, frames_shown), for an animator on the painter's SDXL the painter's, and FP8 where
        `gpu.fp8_animator` runs."""
        animator = self.config.animator.model_dump(mode="json", exclude={"top_k", "frames_shown"})
        settings = {"animator": animator, "painter": self.config.painter if _animator_paints(self.config) else None}
        if (self.config.animator.kind == "svd" and self.config.gpu.fp8_animator
                and gpu.lever_off(self.config, "fp8_animator") is None):
            settings["fp8"] = True  # FP8 clips differ from fp16's; keys without it stay as they were
        return settings

    def motion(self, motion: Motion) -> dict[str, Any]:
        """The animator's parameters for a motion class, as recorded in motion.json and the step keys (no load)."""
        return dataclasses.asdict(TABLES[self.config.animator.kind][motion])

    def _make_room(self, wanted: Role) -> None:
        """With `gpu.one_heavy_model`: park the other of the director and the painter in CPU memory, then bring
        `wanted` back if it was parked."""
        director = self.config.director
        if not self.config.gpu.one_heavy_model or (director.kind == "openai" and not director.sleep_mode):
            return  # a server that cannot sleep keeps its memory: parking the painter would free nothing for it
        other = self._loaded.get("painter" if wanted == "director" else "director")
        if other is not None:
            other.sleep()  # first: `wanted` may be about to load, and needs the room
        if wanted in self._loaded:
            self._loaded[wanted].wake()
