"""`gpu.compile_director`: the static-cache decode with the overlapped grammar mask gives the eager path's replies.

transformers compiles the decode step on CUDA only, so these tests run the lever's own code (one StaticCache kept
across calls, the language model's attention through `decode_attention`, GrammarMask + GrammarAccept) against the
eager path (DynamicCache, SDPA, xgrammar.contrib.hf) on the tiny random Qwen2.5-VL, token for token, same seeds:
as it runs uncompiled, and compiled by inductor for the CPU (one graph, no recompiles); and check that the lever is
refused before any work where torch cannot compile for a GPU.
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


def _replies(director, tokens: list[list[int]], inductor: bool = False) -> list[str]:
    """Plan and verdict replies (with and without images), recording every generated token sequence; `inductor`:
    generate compiles the decode step on this CPU as it does on CUDA (transformers' own switch for other devices)."""
    from transformers import CompileConfig

    generate = director.model.generate

    def spy(**inputs):
        if inductor:
            inputs["compile_config"] = CompileConfig(mode="default", fullgraph=True)
            inputs["compile_config"]._compile_all_devices = True
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
    import torch

    from animagent.backends.director_transformers import DECODE_ATTENTION, TransformersDirector

    tiny_model("qwen2_5_vl_7b")
    results = {}
    for path in ("eager", "lever", "inductor"):
        director = TransformersDirector(_config(tiny_model.root, path != "eager", temperature), tmp_path / f"{path}.jsonl")
        tokens: list[list[int]] = []
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        results[path] = (_replies(director, tokens, inductor=path == "inductor"), tokens)
        if path != "eager":
            assert director._cache is not None  # the lever's path ran, and kept one cache across the calls
            config = director.model.config
            assert (config.text_config._attn_implementation, config.vision_config._attn_implementation) == (
                DECODE_ATTENTION, "sdpa")
        if path == "inductor":  # one decode graph for the six calls (plans, verdicts with 0-2 images), no recompile
            counters = torch._dynamo.utils.counters
            assert counters["stats"]["unique_graphs"] == 1 and not counters["recompiles"]
            assert not counters["graph_break"]
        director.close()
    (eager, eager_tokens) = results["eager"]
    assert results["lever"] == results["inductor"] == (eager, eager_tokens)
    assert len(eager_tokens) == 6 and min(len(t) for t in eager_tokens) > 5


def test_decode_attention_is_sdpa_over_the_valid_prefix_on_the_key_value_heads():
    """Against SDPA on the valid prefix alone with the key/value heads repeated (what eager computes), whatever the
    cache holds past it; a prompt's step (several query tokens) is SDPA's own."""
    import torch
    from transformers.integrations.sdpa_attention import repeat_kv

    from animagent.backends.director_transformers import decode_attention

    torch.manual_seed(0)
    module = torch.nn.Module()
    module.num_key_value_groups, module.is_causal = 7, True
    query = torch.randn(1, 28, 1, 64)
    key, value = torch.randn(1, 4, 300, 64) * 3, torch.randn(1, 4, 300, 64)
    valid = 173
    mask = (torch.arange(300) < valid).reshape(1, 1, 1, 300)
    output, _ = decode_attention(module, query, key, value, mask, scaling=0.125)
    expected = torch.nn.functional.scaled_dot_product_attention(
        query, repeat_kv(key[:, :, :valid], 7), repeat_kv(value[:, :, :valid], 7), scale=0.125).transpose(1, 2)
    assert output.shape == (1, 1, 28, 64) and torch.allclose(output, expected, atol=1e-5)
    key[:, :, valid:] = 1e4  # what lies past the valid prefix does not count
    assert torch.equal(decode_attention(module, query, key, value, mask, scaling=0.125)[0], output)
    prompt = torch.randn(1, 28, 5, 64)
    assert decode_attention(module, prompt, key, value, None, scaling=0.125)[0].shape == (1, 5, 28, 64)


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
