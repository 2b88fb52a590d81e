"""Fakes at our own seams (never in the product path): a director whose replies a test scripts."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from animagent.artifacts import Takes
from animagent.backends.director import Director, Message, Reply
from animagent.config import DirectorConfig
from animagent.models import Models
from animagent.stages import Context


class ScriptedDirector(Director):
    """Answers each task with the next scripted reply: a JSON-able object, a raw string, or a callable
    (messages, schema) -> reply. Records every request."""

    kind = "scripted"

    def __init__(self, replies: dict[str, list[Any]], log_path, config: DirectorConfig | None = None):
        super().__init__(config or DirectorConfig(), log_path)
        self.replies = {task: list(items) for task, items in replies.items()}
        self.requests: list[tuple[str, list[Message], dict]] = []

    def _complete(self, messages: list[Message], schema: dict, seed: int) -> Reply:
        task = self._task_of(messages)
        self.requests.append((task, messages, schema))
        reply = self.replies[task].pop(0) if len(self.replies[task]) > 1 else self.replies[task][0]
        if callable(reply):
            reply = reply(messages, schema)
        if isinstance(reply, Reply):
            return reply
        return Reply(reply if isinstance(reply, str) else json.dumps(reply), "stop")

    @staticmethod
    def _task_of(messages: list[Message]) -> str:
        text = messages[1].text
        for start, task in _TASKS:
            if text.startswith(start):
                return task
        raise KeyError(text[:40])


# The first words of each task's prompt template (animagent/prompts/<task>.md).
_TASKS = (
    ("Retell the story", "refine"),
    ("Choose the visual style", "style"),
    ("Write the shot list", "script"),
    ("Choose the best of the", "pick"),
    ("Choose the best of", "clip_pick"),
    ("Review this keyframe", "verdict"),
    ("This is the first keyframe", "base"),
    ("This is the keyframe of the previous shot", "context"),
    ("Choose how much motion", "motion"),
    ("Classify the visual style", "keyframe_style"),
    ("Cast the voices", "voice"),
)


REFINED = {
    "title": "The Lantern Keeper",
    "story": "Mira the fox guards the lantern; Tobin the tortoise shelters it from the storm.",
    "characters": [
        {"name": "Mira", "appearance": "small red fox, patched green scarf"},
        {"name": "Tobin", "appearance": "old tortoise with a lantern painted on his shell"},
    ],
    "settings": [{"name": "Lighthouse tree", "description": "a crooked hill with a tree holding a lantern"}],
}
STYLE = {"style_class": "illustration", "description": "warm watercolour, soft light"}


def script_reply(durations=(2, 3)) -> dict:
    return {
        "scenes": [
            {
                "setting": "lighthouse-tree",
                "shots": [
                    {
                        "narration": "Mira climbs the hill.",
                        "description": "a fox climbing a hill at dusk",
                        "characters": {"mira": [100, 200, 400, 900], "tobin": None},
                        "camera": "wide shot",
                        "motion": "gentle",
                        "duration_s": durations[0],
                    },
                    {
                        "narration": "Tobin shelters the flame.",
                        "description": "a tortoise over a lantern, a fox beside it",
                        "characters": {"mira": [600, 300, 900, 900], "tobin": [500, 100, 50, 600]},
                        "camera": "close-up",
                        "motion": "still",
                        "duration_s": durations[1],
                    },
                ],
            }
        ]
    }


def lantern_director(log_path, **kw: Callable) -> ScriptedDirector:
    return ScriptedDirector({"refine": [REFINED], "style": [STYLE], "script": [script_reply()]}, log_path)


def context(run, config, takes=None, **backends) -> Context:
    """A stage context whose models start as `backends` (role=backend); any other role loads for real."""
    return Context(run, config, Models(config, run.path("logs"), loaded=backends), takes or Takes())
