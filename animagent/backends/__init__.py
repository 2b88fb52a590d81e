"""The backend protocols: what the stages may call on each model, whatever its kind.

Stages import these protocols (and artifacts), never a concrete backend module, never branch on a kind, and
never know a model's conventions: an animator owns its motion table (motion.py), a director its image sizing and
box convention (`Director.sent_image`, `Director.grounding`), the painter how references reach its adapters.
Which concrete backend serves a role, and when it is on the GPU, is decided by animagent/models.py alone.
This module imports nothing heavy: it is the seam tests put their fakes at.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from pydantic import BaseModel

from animagent.artifacts import Box, Motion, Reference

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Grounding:
    """Where a director's grounding boxes live for one image it was shown: `frame` is the largest x and y a box
    may hold (the schema bounds them), `words` says so in the verdict prompt."""

    frame: tuple[int, int] | tuple[float, float]  # integers, or 1.0 for fractions
    words: str

    def box(self, bbox: Sequence[float]) -> Box | None:
        """A box (x1, y1, x2, y2 in `frame`, corners in any order) as fractions of the image; None when it encloses
        no area. Box.to_pixels then gives it in the pixels of our own image."""
        max_x, max_y = self.frame
        x_a, x_b = sorted((min(bbox[0], max_x) / max_x, min(bbox[2], max_x) / max_x))
        y_a, y_b = sorted((min(bbox[1], max_y) / max_y, min(bbox[3], max_y) / max_y))
        if x_b <= x_a or y_b <= y_a:
            return None
        return Box(x0=x_a, y0=y_a, x1=x_b, y1=y_b)


class Director(Protocol):
    def ask(self, task: str, variables: Mapping[str, str], output: type[M], images: Sequence[Image] = (),
            seed: int = 0) -> M:
        """Task prompt + images → a reply constrained to `output`'s schema, validated (bounded retries)."""

    def sent_image(self, image: Image) -> Image:
        """The image as this director is shown it (its pixel budget and cell size)."""

    def grounding(self, sent_size: tuple[int, int]) -> Grounding:
        """How this director's boxes map onto an image shown at `sent_size`."""

    def sleep(self) -> None: ...

    def wake(self) -> None: ...

    def close(self) -> None: ...


class Painter(Protocol):
    def sketch(self, prompt: str, width: int, height: int, seeds: Sequence[int]) -> list[Image]:
        """Text only, one image per seed."""

    def draw(self, prompt: str, references: Sequence[Reference], images: Sequence[Image], width: int, height: int,
             seeds: Sequence[int], prompt_2: str | None = None) -> list[Image]:
        """Text plus references (`images[i]` is `references[i]`'s picture), one image per seed."""

    def repair(self, image: Image, mask: np.ndarray, prompt: str, references: Sequence[Reference],
               images: Sequence[Image], strength: float, seed: int) -> Image:
        """`image` with its `mask` region inpainted following the references."""

    def take_ladder(self) -> list[str]:
        """The out-of-memory rungs taken since the last call (manifest notes)."""

    def sleep(self) -> None: ...

    def wake(self) -> None: ...

    def close(self) -> None: ...


class Animator(Protocol):
    def animate(self, image: Image, prompt: str, motion: Motion, duration_s: float, seed: int) -> list[Image]:
        """One clip's frames from a keyframe; the fps is the motion table's (motion.py). An animator that reads no
        text ignores `prompt`; one with a fixed frame count ignores `duration_s` (assembly retimes the clip)."""

    def take_ladder(self) -> list[str]: ...

    def close(self) -> None: ...


class Segmenter(Protocol):
    def mask(self, image: Image, box: tuple[int, int, int, int]) -> np.ndarray:
        """A bool mask of the image's size for the object inside the pixel box."""

    def close(self) -> None: ...


class ImageEncoder(Protocol):
    def images(self, images: list[Image]) -> np.ndarray:
        """L2-normalised float32 (N, D) features."""

    def close(self) -> None: ...


class Embedder(ImageEncoder, Protocol):
    def texts(self, texts: list[str]) -> np.ndarray:
        """L2-normalised float32 (N, D) features in the images' space."""


class Voice(Protocol):
    sample_rate: int
    voices: tuple[str, ...]  # the voice ids `speak` takes

    def speak(self, text: str, voice: str, speed: float = 1.0, seed: int = 0) -> np.ndarray:
        """`text` spoken in `voice`: float32 mono samples at `sample_rate`; empty when nothing in it can be said."""

    def close(self) -> None: ...
