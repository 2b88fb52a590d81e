"""The transformers director on the tiny random Qwen2.5-VL: real loading, real chat template, real xgrammar.

A random model writes noise, so these tests check the machinery: every reply the grammar lets through is a
validated instance of the output model, seeds reproduce, a cut-off reply is retried then raised, and every raw
reply lands in the log. The prompt templates are replaced by a fixed text (they are data owned elsewhere).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest
from PIL import Image
from pydantic import BaseModel, Field

import animagent.backends.director as director_module
from animagent.config import Config, DirectorConfig, WeightsConfig
from animagent.errors import DirectorOutputError


class Character(BaseModel):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,11}$")
    name: str = Field(max_length=12)
    role: Literal["hero", "friend", "villain"]


class Shot(BaseModel):
    camera: Literal["wide", "medium", "close-up"]
    seconds: int = Field(ge=2, le=5)
    characters: list[str] = Field(min_length=1, max_length=2)
    box: tuple[int, int, int, int] | None = None


class Plan(BaseModel):
    title: str
    characters: list[Character] = Field(min_length=1, max_length=3)
    shots: list[Shot] = Field(min_length=1, max_length=3)
    night: bool


class Verdict(BaseModel):
    choice: int = Field(ge=0, le=3)
    on_model: bool
    problems: list[Literal["face", "hands", "extra_limb", "text"]] = Field(max_length=2)
    reason: str


class Essay(BaseModel):
    paragraphs: list[str] = Field(min_length=12, max_length=12)  # at least 24 tokens however short


@pytest.fixture(autouse=True)
def fixed_prompts(monkeypatch):
    monkeypatch.setattr(director_module, "render_prompt", lambda task, variables: f"Task: {task}. Reply in JSON.")


def _config(root: Path, **director) -> Config:
    return Config(
        device="cpu", dtype="float32", weights=WeightsConfig(flavor="tiny", root=str(root)),
        director=DirectorConfig(**{"max_field_chars": 16, "max_new_tokens": 512, "temperature": 0.7,
                                   "max_attempts": 1, **director}),  # a retry would hide a grammar fault
    )


@pytest.fixture(scope="module")
def director(tiny_model, tmp_path_factory):
    from animagent.backends.director_transformers import TransformersDirector

    tiny_model("qwen2_5_vl_7b")
    d = TransformersDirector(_config(tiny_model.root), tmp_path_factory.mktemp("run") / "logs" / "director.jsonl")
    yield d
    d.close()


def _records(director) -> list[dict]:
    return [json.loads(line) for line in director.log_path.read_text(encoding="utf-8").splitlines()]


def test_plan_replies_are_validated_instances(director):
    for seed in range(2):
        plan = director.ask("plan", {}, Plan, seed=seed)
        assert isinstance(plan, Plan)
        assert all(len(c.name) <= 12 for c in plan.characters)
        assert all(len(s) <= 16 for s in [plan.title, *(c for shot in plan.shots for c in shot.characters)])


def test_images_become_image_parts(director):
    images = [Image.new("RGB", (64, 48), (200, 30, 30)), Image.new("RGBA", (300, 170), (0, 90, 200, 255))]
    verdict = director.ask("review", {}, Verdict, images=images, seed=1)
    assert isinstance(verdict, Verdict)


def test_images_are_cut_to_max_pixels_and_get_one_pad_per_merged_patch(director, monkeypatch):
    seen = {}
    generate = director.model.generate

    def spy(**inputs):
        seen.update(inputs)
        return generate(**inputs)

    monkeypatch.setattr(director.model, "generate", spy)
    verdict = director.ask("review", {}, Verdict, images=[Image.new("RGB", (2000, 1500), (9, 9, 9))], seed=2)
    assert isinstance(verdict, Verdict)
    (t, h, w), = seen["image_grid_thw"].tolist()
    assert h * w * 14 * 14 <= director.config.max_pixels
    assert abs(w / h - 2000 / 1500) < 0.1
    pad = director.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((seen["input_ids"] == pad).sum()) == t * h * w // 4


def test_two_asks_in_a_row_share_the_grammar_not_the_processor(director):
    calls = director.calls
    director.ask("review", {}, Verdict, seed=3)
    director.ask("review", {}, Verdict, seed=4)
    assert director.calls == calls + 2
    schemas = {json.dumps(director_module.constrained_schema(m, 16), sort_keys=True) for m in (Plan, Verdict)}
    assert schemas <= set(director.grammars)


def test_same_seed_same_reply(director):
    first = director.ask("plan", {}, Plan, seed=11)
    assert director.ask("plan", {}, Plan, seed=11) == first
    replies = {director.ask("review", {}, Verdict, seed=s).model_dump_json() for s in range(20, 24)}
    assert len(replies) > 1


def test_properties_come_in_the_models_order(director):
    director.ask("plan", {}, Plan, seed=5)
    reply = _records(director)[-1]["reply"]
    assert list(json.loads(reply)) == [k for k in Plan.model_fields if k in json.loads(reply)]


def test_raw_replies_land_in_the_log(director):
    verdict = director.ask("review", {}, Verdict, seed=6)
    record = _records(director)[-1]
    assert record["task"] == "review" and record["kind"] == "transformers" and record["ok"] is True
    assert record["finish_reason"] == "stop"
    assert Verdict.model_validate_json(record["reply"]) == verdict


def test_greedy_is_deterministic(tiny_model, tmp_path):
    from animagent.backends.director_transformers import TransformersDirector

    d = TransformersDirector(_config(tiny_model.root, temperature=0.0), tmp_path / "director.jsonl")
    assert d.ask("plan", {}, Plan, seed=0) == d.ask("plan", {}, Plan, seed=9)
    d.close()


def test_cut_off_replies_are_retried_then_raised(tiny_model, tmp_path):
    from animagent.backends.director_transformers import TransformersDirector

    d = TransformersDirector(_config(tiny_model.root, max_new_tokens=16, max_attempts=2), tmp_path / "d.jsonl")
    with pytest.raises(DirectorOutputError) as caught:
        d.ask("essay", {}, Essay, seed=0)
    assert "max_new_tokens=16" in caught.value.last_error
    records = _records(d)
    assert d.calls == 2 and len(records) == 2
    assert all(r["finish_reason"] == "length" and not r["ok"] and r["reply"] for r in records)
    d.close()


def test_importing_animagent_does_not_import_torch():
    code = "import sys, animagent, animagent.backends.director; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
