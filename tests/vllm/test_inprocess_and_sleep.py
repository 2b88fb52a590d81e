"""The in-process `director.kind=vllm` (`vllm.LLM` + structured outputs) planning the same story as the served
kind, and the sleep/wake path against the real endpoints where vLLM's build has them."""

from __future__ import annotations

import pytest

from animagent.config import load_config

from .conftest import STORY, animagent, director_records, director_serve


def test_plan_with_the_in_process_vllm_director(tiny_weights, tmp_path):
    done = animagent("plan", str(STORY), "--profile", "tiny", "--out", str(tmp_path / "run"),
                     "--set", f"weights.root={tiny_weights}", "--set", "director.kind=vllm")
    assert done.returncode == 0, done.stderr[-3000:]
    records = director_records(tmp_path / "run")
    assert {"refine", "style", "script"} <= {r["task"] for r in records}
    assert all(r["kind"] == "vllm" for r in records)


def test_sleep_and_wake_against_the_real_endpoints(tiny_weights, tmp_path, monkeypatch):
    from vllm.platforms import current_platform

    if not current_platform.is_sleep_mode_available():
        pytest.skip(f"vLLM's {current_platform.device_type} build has no sleep mode (it refuses "
                    "--enable-sleep-mode, and /sleep and /wake_up need it): CUDA, ROCm and XPU builds only")
    from animagent.backends.director_openai import OpenAIDirector

    sets = ("device=cuda", "dtype=bfloat16", "director.sleep_mode=true")
    with director_serve(tiny_weights, tmp_path, *sets) as server:
        monkeypatch.setenv("ANIMAGENT_DIRECTOR_API_KEY", server.api_key)
        config = load_config("tiny", overrides=[f"weights.root={tiny_weights}", "director.kind=openai",
                                                f"director.base_url={server.url}", *sets])
        director = OpenAIDirector(config, tmp_path / "director.jsonl")
        root = server.url.removesuffix("/v1")
        director.sleep()
        assert director.client.get(f"{root}/is_sleeping").json() == {"is_sleeping": True}
        director.wake()
        assert director.client.get(f"{root}/is_sleeping").json() == {"is_sleeping": False}
        director.close()
        done = animagent("plan", str(STORY), "--profile", "tiny", "--out", str(tmp_path / "run"),
                         "--set", f"weights.root={tiny_weights}", "--set", "director.kind=openai",
                         "--set", f"director.base_url={server.url}", *(a for s in sets for a in ("--set", s)),
                         env=server.env())
        assert done.returncode == 0, done.stderr[-3000:]
