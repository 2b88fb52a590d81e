"""The stages of the recipe, one module each: plan, cast, draw, review, animate, assemble, evaluate.

Each stage takes a `Context` and typed artifacts in and returns typed artifacts out. Per item it opens a `Step`:
when the run folder already holds a finished step with the same key, the stage reads its outputs back instead of
working, so a fully finished stage never loads its model (models come from `ctx.models` only when used).
This module owns the context, the step helper, the progress events (`logs/events.jsonl`), the user's picks
(`picks.json`, written by the review page) and `ask_pick`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from animagent.artifacts import Pick, Picks, Takes
from animagent.config import Config
from animagent.errors import InputError
from animagent.runfolder import RunFolder, derive_seed, step_key
from animagent.tasks import pick_output

if TYPE_CHECKING:
    from PIL import Image

    from animagent.models import Models

# progress(stage, items done, items in the stage)
Progress = Callable[[str, int, int], None]
EVENTS = "logs/events.jsonl"
PICKS = "picks.json"  # the review page's picks: a candidate per shot that overrides the ranking or the director


def no_progress(stage: str, done: int, total: int) -> None:
    """The Progress of callers that show none (the Python API, tests)."""


@dataclass(frozen=True)
class Context:
    """What every stage works with: the run folder, the config, the models, this run's takes and the progress
    callback. Progress and finished steps are also appended to `logs/events.jsonl`, one JSON object per line,
    for anyone watching the run from another process (the review page)."""

    run: RunFolder
    config: Config
    models: Models
    takes: Takes
    on_progress: Progress = no_progress

    def progress(self, stage: str, done: int, total: int) -> None:
        self.event("progress", stage=stage, done=done, total=total)
        self.on_progress(stage, done, total)

    def seed(self, *parts: str, take: int = 0) -> int:
        """A seed of its own for one decision, from (run seed, parts, take): adding a shot changes no other seed."""
        return derive_seed(self.config.seed, *parts, take=take)

    def step(self, name: str, **parts: Any) -> Step:
        """The step `name` keyed by `parts` (see runfolder.step_key)."""
        return Step(self, name, step_key(step=name, **parts))

    def pick(self, kind: Literal["keyframe", "clip"], shot_id: str, count: int) -> dict[str, int]:
        """The candidate a person picked for this shot on the review page (`picks.json`), as step-key parts:
        {"picked": index}, or {} when there is no pick, so a run without picks keeps its keys."""
        picks = self.run.read_model(PICKS, Picks) if self.run.exists(PICKS) else Picks()
        picked = (picks.keyframes if kind == "keyframe" else picks.clips).get(shot_id)
        if picked is None:
            return {}
        if picked >= count:
            raise InputError(f"{PICKS} picks {kind} candidate {picked} of shot {shot_id}, which has {count}; "
                             f"pick another on the review page or remove it from {self.run.path(PICKS)}")
        return {"picked": picked}

    def event(self, kind: str, **fields: Any) -> None:
        path = self.run.path(EVENTS)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"time": round(time.time(), 3), "event": kind, **fields}) + "\n")


class Step:
    """One keyed unit of work: `todo` when the run folder holds no finished step with this key; `record` stores its
    outputs (with their hashes and the seconds since the step was opened) in the manifest."""

    def __init__(self, ctx: Context, name: str, key: str):
        self.ctx, self.name, self.key = ctx, name, key
        self.todo = not ctx.run.done(name, key)
        self.started = time.perf_counter()

    def record(self, outputs: list[str], notes: Sequence[str] = ()) -> None:
        self.ctx.run.record(self.name, self.key, outputs, time.perf_counter() - self.started, notes=list(notes))
        self.ctx.event("step", step=self.name, outputs=outputs)


def ask_pick(
    ctx: Context, task: str, count: int, fields: dict[str, str], images: Sequence[Image.Image], seed: int
) -> Pick:
    """One of `count` candidates: the only one, or the director's choice through `task` (a pick prompt that takes
    `count`, `last` and `fields`), shown `images`. The director is only loaded when there is a choice."""
    if count == 1:
        return Pick(chosen=0, candidates=1, by="only candidate")
    variables = {"count": str(count), "last": str(count - 1), **fields}
    reply = ctx.models.get("director").ask(task, variables, pick_output(count), images=list(images), seed=seed)
    return Pick(chosen=reply.choice, candidates=count, by="director", reason=reply.reason.strip())
