"""The stages of the recipe, one module each: plan, cast, draw, animate, assemble.

Each stage takes typed artifacts in and returns typed artifacts out. Per item it checks the run folder for a
finished step with the same key and does the work only when there is none; backends are handed in as
zero-argument callables so a fully finished stage never loads its model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from animagent.artifacts import Pick
from animagent.tasks import pick_output

if TYPE_CHECKING:
    from PIL import Image

    from animagent.backends.director import Director

# progress(stage, items done, items in the stage)
Progress = Callable[[str, int, int], None]


def no_progress(stage: str, done: int, total: int) -> None:
    """The Progress of callers that show none (the Python API, tests)."""


def ask_pick(
    director: Callable[[], Director], task: str, count: int, fields: dict[str, str], images: Sequence[Image.Image],
    seed: int,
) -> Pick:
    """One of `count` candidates: the only one, or the director's choice through `task` (a pick prompt that takes
    `count`, `last` and `fields`), shown `images`."""
    if count == 1:
        return Pick(chosen=0, candidates=1, by="only candidate")
    reply = director().ask(task, {"count": str(count), "last": str(count - 1), **fields}, pick_output(count),
                           images=list(images), seed=seed)
    return Pick(chosen=reply.choice, candidates=count, by="director", reason=reply.reason.strip())
