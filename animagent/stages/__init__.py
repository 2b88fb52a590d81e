"""The stages of the recipe, one module each: plan, cast, draw, animate, assemble.

Each stage takes typed artifacts in and returns typed artifacts out. Per item it checks the run folder for a
finished step with the same key and does the work only when there is none; backends are handed in as
zero-argument callables so a fully finished stage never loads its model.
"""

from __future__ import annotations

from typing import Callable

# progress(stage, items done, items in the stage)
Progress = Callable[[str, int, int], None]


def no_progress(stage: str, done: int, total: int) -> None:
    """The Progress of callers that show none (the Python API, tests)."""
