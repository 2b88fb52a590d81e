"""`gpu.compile_director`: the static-cache decode with the overlapped grammar mask gives the eager path's replies.

On the CPU transformers does not compile (it compiles the decode step on CUDA only), so these tests run the
lever's own code (one StaticCache kept across calls, GrammarMask + GrammarAccept) against the eager path
(DynamicCache, xgrammar.contrib.hf) on the tiny random Qwen2.5-VL, token for token, same seeds; and check that
the lever is refused before any work where torch cannot compile for a GPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest
from PIL import Image
from pydantic import BaseModel, Field

import animagent.backends.director as director_module
from animagent.config import Config, DirectorConfig, GpuConfig, WeightsConfig
from animagent.errors import MissingError


class Character(BaseModel):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,11}$")
    name: str = Field(max_length=12)
    role: Literal["hero", "friend", "villain"]


class Plan(BaseModel):
    title: str
    characters: list[Character] = Field(min_length=1, max_length=3)
    night: bool


class Verdict(BaseModel):
    choice: int = Field(ge=0, le=3)
    on_model: bool
    problems: list[Literal["face", "hands", "extra_limb", "text"]] = Field(max_length=2)
    box: tuple[int, int, int, int] | None = None
    reason: str


@pytest.fixture(autouse=True)
def fixed_prompts(monkeypatch):
    monkeypatch.setattr(director_module, "render_prompt", lambda task, variables: f"Task: {task}. Reply in JSON.")


def _config(root: Path, compiled: bool, temperature: float) -> Config:
    return Config(
        device="cpu", dtype="float32", weights=WeightsConfig(flavor="tiny", root=str(root)),
        gpu=GpuConfig(compile_director=compiled),
        director=DirectorConfig(max_field_chars=24, max_new_tokens=256, temperature=temperature, max_attempts=1),
    )


def _replies(director, tokens: list[list[int]]) -> list[str]:
    """Plan and verdict replies (with and without images), recording every generated token sequence."""
    generate = director.model.generate

    def spy(**inputs):
        output = generate(**inputs)
        tokens.append(output[0, inputs["input_ids"].shape[1]:].tolist())
        return output

    director.model.generate = spy
    images = [Image.new("RGB", (96, 64), (200, 30, 30)), Image.new("RGB", (140, 80), (0, 90, 200))]
    replies = [director.ask("plan", {}, Plan, seed=seed).model_dump_json() for seed in range(3)]
    replies += [director.ask("review", {}, Verdict, images=images[:n], seed=10 + n).model_dump_json()
                for n in range(3)]
    return replies


@pytest.mark.parametrize("temperature", [0.7, 0.0])
def test_compiled_path_gives_the_eager_replies_token_for_token(tiny_model, tmp_path, temperature):
    from animagent.backends.director_transformers import TransformersDirector

    tiny_model("qwen2_5_vl_7b")
    results = {}
    for compiled in (False, True):
        director = TransformersDirector(_config(tiny_model.root, compiled, temperature), tmp_path / f"{compiled}.jsonl")
        tokens: list[list[int]] = []
        results[compiled] = (_replies(director, tokens), tokens)
        if compiled:
            assert director._cache is not None  # the lever's path ran, and kept one cache across the calls
        director.close()
    (eager, eager_tokens), (lever, lever_tokens) = results[False], results[True]
    assert lever_tokens == eager_tokens and lever == eager
    assert len(eager_tokens) == 6 and min(len(t) for t in eager_tokens) > 5


def test_the_cache_is_kept_across_calls_and_grows_for_a_longer_one(tiny_model, tmp_path):
    from animagent.backends.director_transformers import CACHE_STEP, TransformersDirector

    tiny_model("qwen2_5_vl_7b")
    director = TransformersDirector(_config(tiny_model.root, True, 0.7), tmp_path / "d.jsonl")
    director.ask("plan", {}, Plan, seed=0)
    first = director._cache
    director.ask("review", {}, Verdict, images=[Image.new("RGB", (96, 64))], seed=1)
    length = director._cache_len
    # sized for the longest question the config allows: 8 images at max_pixels, the text, max_new_tokens
    assert director._cache is first and length % CACHE_STEP == 0 and length >= 8 * 1024 + 256
    assert director._static_cache(length + 1) is not first and director._cache_len == length + CACHE_STEP
    director.close()


def test_compile_director_is_refused_without_a_gpu_compiler(tiny_model):
    from torch.utils._triton import has_triton

    from animagent import gpu

    if has_triton():
        pytest.skip("this machine can compile for a GPU")
    with pytest.raises(MissingError, match="gpu.compile_director=false"):
        gpu.check_compile(_config(tiny_model.root, True, 0.7))
    gpu.check_compile(_config(tiny_model.root, False, 0.7))  # off: nothing to check


def test_doctor_names_the_compiler_compile_director_needs(tiny_all):
    from torch.utils._triton import has_triton
    from typer.testing import CliRunner

    from animagent.cli import app

    if has_triton():
        pytest.skip("this machine can compile for a GPU")
    args = ["doctor", "--profile", "tiny", "--dir", str(tiny_all)]
    assert CliRunner().invoke(app, args).exit_code == 0  # tiny: every file present, nothing to compile
    result = CliRunner().invoke(app, [*args, "--set", "gpu.compile_director=true"])
    assert result.exit_code == 4 and "--set gpu.compile_director=false" in result.output.replace("\n", " ")
