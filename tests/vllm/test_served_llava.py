"""The tiny LLaVA-OneVision served by the real `vllm serve` (`animagent director serve --set
director.weights=llava_onevision_7b`): a plan through it, and a director question with images."""

from __future__ import annotations

import pytest
from PIL import Image
from pydantic import BaseModel, Field

from animagent.config import load_config

from .conftest import STORY, animagent, director_records, director_serve

LLAVA = ("director.weights=llava_onevision_7b", "director.box_convention=llava")


@pytest.fixture(scope="module")
def llava(tiny_weights, tmp_path_factory):
    with director_serve(tiny_weights, tmp_path_factory.mktemp("llava"), *LLAVA) as server:
        yield server


def test_plan_through_vllm_serving_llava(llava, tiny_weights, tmp_path):
    done = animagent("plan", str(STORY), "--profile", "tiny", "--out", str(tmp_path / "run"),
                     "--set", f"weights.root={tiny_weights}", "--set", "director.kind=openai",
                     "--set", f"director.base_url={llava.url}", *(a for s in LLAVA for a in ("--set", s)),
                     env=llava.env())
    assert done.returncode == 0, done.stderr[-3000:]
    assert {"refine", "style", "script"} <= {r["task"] for r in director_records(tmp_path / "run")}


class Pick(BaseModel):
    choice: int = Field(ge=0, le=2)
    reason: str = Field(max_length=40)


def test_llava_answers_a_question_with_images(llava, tiny_weights, tmp_path, monkeypatch):
    from animagent.backends.director_openai import OpenAIDirector

    monkeypatch.setenv("ANIMAGENT_DIRECTOR_API_KEY", llava.api_key)
    config = load_config("tiny", overrides=[f"weights.root={tiny_weights}", "director.kind=openai",
                                            f"director.base_url={llava.url}", *LLAVA])
    director = OpenAIDirector(config, tmp_path / "director.jsonl")
    images = [Image.new("RGB", (64, 64), (200, 40, 40)), Image.new("RGB", (128, 96), (40, 40, 200)),
              Image.new("RGB", (96, 128), (40, 200, 40))]
    assert isinstance(director.ask("pick", {"count": "3", "last": "2", "purpose": "the red one"},
                                   Pick, images=images), Pick)
    director.close()
