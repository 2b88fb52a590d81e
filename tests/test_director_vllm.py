"""The in-process `vllm` director kind: what can be checked without vLLM (the install hint, the engine and
sampling arguments). Its calls into vLLM run in tests/vllm/ (`make test-vllm`, vLLM's CPU build)."""

from __future__ import annotations

import sys

import pytest

from animagent.backends.director_vllm import MAX_IMAGES_PER_PROMPT, VLLMDirector, engine_args, sampling_args
from animagent.config import Config, DirectorConfig
from animagent.errors import MissingError
from animagent.models import build


def test_missing_vllm_raises_the_install_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` fail even where it is installed
    config = Config(director=DirectorConfig(kind="vllm"))
    with pytest.raises(MissingError, match=r"pip install 'animagent\[vllm\]'"):
        VLLMDirector(config, tmp_path / "director.jsonl")
    with pytest.raises(MissingError):
        build("director", config, tmp_path)


def test_engine_args_are_local_bounded_and_without_remote_code(tmp_path):
    config = Config(director=DirectorConfig(kind="vllm", max_model_len=8192, gpu_memory_utilization=0.3))
    args = engine_args(config, tmp_path / "model")
    assert args == {
        "model": str(tmp_path / "model"),
        "max_model_len": 8192,
        "limit_mm_per_prompt": {"image": MAX_IMAGES_PER_PROMPT},
        "gpu_memory_utilization": 0.3,
        "enable_sleep_mode": True,
        "trust_remote_code": False,
        "generation_config": "vllm",
        "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True},
    }


def test_engine_args_on_cpu_suit_vllms_cpu_build(tmp_path):
    args = engine_args(Config(device="cpu", dtype="float32"), tmp_path / "model")
    assert args["enable_sleep_mode"] is False and args["enforce_eager"] is True and args["dtype"] == "float32"


def test_sampling_args_bound_the_reply():
    director = DirectorConfig(max_new_tokens=512, temperature=0.3)
    assert sampling_args(director, seed=11) == {"max_tokens": 512, "temperature": 0.3, "seed": 11}
