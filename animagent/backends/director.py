"""The director protocol: (task, typed variables, images) -> schema-constrained reply -> validated pydantic model.

This module owns what every director kind shares: prompt templates (data files in `animagent/prompts/`),
the JSON schema handed to the constrained decoder, the bounded retry loop with the validation error fed
back, the raw-reply log (`logs/director.jsonl`), the size images are shown at (`director_size`) and where grounding
boxes live for the model's convention (`director.box_convention`). A kind only implements `_complete`: send
messages with a schema, return the text and finish reason. Kinds: `transformers` (in-process, xgrammar),
`openai` (any OpenAI-compatible server), `vllm` (in-process vLLM). Model output is parsed as strict JSON
and validated by pydantic; it is never evaluated or scraped.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any, Mapping, Sequence, TypeVar

from pydantic import BaseModel, ValidationError

from animagent.backends import Grounding
from animagent.config import DirectorConfig
from animagent.errors import DirectorOutputError, InputError

if TYPE_CHECKING:
    from PIL.Image import Image

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

# Free text may not hold control characters, quotes or backslashes, and its length bound lives inside the pattern:
# xgrammar (0.2.8, vLLM's, and 0.2.9) lets raw control characters such as \x03 into a string bounded only by
# minLength/maxLength, which strict JSON parsing then rejects; a pattern it matches exactly.
_TEXT_PATTERN = '^[^\\x00-\\x1f"\\\\]{%d,%d}$'
_OPEN_TEXT_PATTERN = '^[^\\x00-\\x1f"\\\\]+$'
# xgrammar (also vLLM's structured-output backend) cannot compile a repeat count above 128: a longer field
# keeps an open-ended pattern, and its length is enforced by validation and max_new_tokens instead.
_MAX_REPEAT = 128
# Qwen2.5-VL sees 28x28-pixel cells (14 px patches merged 2x2). An image whose sides are multiples of 28 and
# whose area is within the processor's bounds is not resized again, so its absolute boxes are in our pixels.
CELL = 28


@dataclass(frozen=True)
class Message:
    role: str  # "system" | "user" | "assistant"
    text: str
    images: tuple[Image, ...] = field(default=())


@dataclass(frozen=True)
class Reply:
    text: str
    finish_reason: str | None  # "stop", "length", ... as the backend reports it


def director_size(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """The size an image is sent at: at most `max_pixels`, both sides multiples of 28 (aspect kept to
    within one cell). Qwen2.5-VL boxes are pixels of this size; map them back with original / this."""
    scale = min(1.0, math.sqrt(max_pixels / (width * height)))
    return (
        max(CELL, math.floor(width * scale / CELL) * CELL),
        max(CELL, math.floor(height * scale / CELL) * CELL),
    )


def grounding(convention: str, sent_size: tuple[int, int]) -> Grounding:
    """Qwen2.5-VL answers in absolute pixels of the image as the model saw it (`sent_size`: images are sent already
    at `director_size`, so no resize happens), Qwen3-VL on a 0-1000 grid of the image (ecosystem.md §2.7),
    LLaVA-OneVision in fractions of the image (0 to 1, as floats)."""
    if convention == "qwen3":
        return Grounding((1000, 1000), "on a 0 to 1000 grid of the keyframe, x from the left, y from the top")
    if convention == "llava":
        return Grounding((1.0, 1.0), "as fractions of the keyframe from 0 to 1, x from the left, y from the top")
    return Grounding(sent_size, f"in pixels of the keyframe, which is {sent_size[0]} wide and {sent_size[1]} high")


def render_prompt(task: str, variables: Mapping[str, str]) -> str:
    """Fill `prompts/<task>.md`. Values are data: angle brackets are neutralised so they cannot close a
    delimiter such as `</story>` in the template."""
    try:
        template = resources.files("animagent.prompts").joinpath(f"{task}.md").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"no prompt template for director task '{task}'") from None
    safe = {k: str(v).replace("<", "‹").replace(">", "›") for k, v in variables.items()}
    return Template(template).substitute(safe)


def constrained_schema(model: type[BaseModel], max_field_chars: int) -> dict[str, Any]:
    """The model's JSON schema with every free-text field bounded by a pattern of at most `max_field_chars`
    (up to the decoder's repeat limit; beyond it validation bounds the length)."""
    schema = copy.deepcopy(model.model_json_schema())

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "string" and "enum" not in node and "const" not in node and "pattern" not in node:
                upper = min(node.pop("maxLength", max_field_chars), max_field_chars)
                lower = max(1, min(node.pop("minLength", 1), upper))
                node["pattern"] = _TEXT_PATTERN % (lower, upper) if upper <= _MAX_REPEAT else _OPEN_TEXT_PATTERN
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(schema)
    return schema


class Director:
    """Base class of the director kinds. Subclasses implement `_complete` (and may override sleep/wake)."""

    kind = "base"

    def __init__(self, config: DirectorConfig, log_path: Path):
        self.config = config
        self.log_path = log_path
        self.calls = 0  # completions requested, for tests and the event log

    def ask(
        self,
        task: str,
        variables: Mapping[str, str],
        output: type[M],
        images: Sequence[Image] = (),
        seed: int = 0,
    ) -> M:
        schema = constrained_schema(output, self.config.max_field_chars)
        system = render_prompt("system", {})
        messages = [Message("system", system), Message("user", render_prompt(task, variables), tuple(images))]
        problem = ""
        for attempt in range(1, self.config.max_attempts + 1):
            started = time.perf_counter()
            self.calls += 1
            reply = self._complete(messages, schema, seed=seed + attempt - 1)
            problem = ""
            result = None
            if reply.finish_reason == "length":
                problem = f"the reply was cut off at max_new_tokens={self.config.max_new_tokens}"
            elif reply.finish_reason == "refusal":
                problem = "the reply was a refusal"
            elif not reply.text.strip():
                problem = "the reply was empty"
            else:
                try:
                    # pydantic's own JSON parser: strict JSON, bounded nesting, no RecursionError on "[[[[..."
                    result = output.model_validate_json(reply.text)
                except ValidationError as exc:
                    errors = exc.errors()
                    if errors[0]["type"] == "json_invalid":
                        problem = f"the reply is not valid JSON: {errors[0]['msg']}"
                    else:
                        problem = "the reply does not fit the schema: " + "; ".join(
                            f"{'.'.join(str(p) for p in e['loc']) or 'reply'}: {e['msg']}" for e in errors[:5]
                        )
            self._log(task, attempt, reply, problem, time.perf_counter() - started)
            if result is not None:
                return result
            log.info("director task %s attempt %d rejected: %s", task, attempt, problem)
            messages = [
                *messages,
                Message("assistant", reply.text[:2000]),
                Message("user", f"Your reply was rejected: {problem}. Reply again with JSON that fits the schema."),
            ]
        raise DirectorOutputError(task, self.config.max_attempts, problem, str(self.log_path))

    def _complete(self, messages: list[Message], schema: dict[str, Any], seed: int) -> Reply:
        raise NotImplementedError

    def sent_image(self, image: Image) -> Image:
        size = director_size(image.width, image.height, self.config.max_pixels)
        if size == image.size:
            return image
        from PIL.Image import Resampling

        return image.resize(size, Resampling.LANCZOS)

    def grounding(self, sent_size: tuple[int, int]) -> Grounding:
        return grounding(self.config.box_convention, sent_size)

    def sleep(self) -> None:
        """Give the GPU back so the painter can have it (`gpu.one_heavy_model`): the weights wait in CPU memory
        (in-process kinds) or the server sleeps (openai kind with `sleep_mode`). A no-op unless the kind can."""

    def wake(self) -> None:
        """Undo `sleep`: the model back on its device before the next question."""

    def close(self) -> None:
        """Free the model or connection."""

    def _log(self, task: str, attempt: int, reply: Reply, problem: str, seconds: float) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "task": task,
            "attempt": attempt,
            "kind": self.kind,
            "finish_reason": reply.finish_reason,
            "ok": not problem,
            "problem": problem,
            "seconds": round(seconds, 3),
            "reply": reply.text,
        }
        with self.log_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
