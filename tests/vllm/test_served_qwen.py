"""The tiny Qwen2.5-VL served by the real `vllm serve` that `animagent director serve` starts, and the CLI's plan
and whole tiny run through `director.kind=openai` against it: every director task answered by vLLM with
`response_format: json_schema`, images inline as data URLs. Then what a server that answers but refuses gives."""

from __future__ import annotations

import json

import httpx
import pytest
from PIL import Image

from animagent import video
from animagent.backends.director import Message
from animagent.config import load_config
from animagent.errors import DirectorUnavailableError

from .conftest import STORY, animagent, director_records, director_serve


@pytest.fixture(scope="module")
def qwen(tiny_weights, tmp_path_factory):
    with director_serve(tiny_weights, tmp_path_factory.mktemp("qwen")) as server:
        yield server


def openai_sets(server, root) -> list[str]:
    return ["--set", f"weights.root={root}", "--set", "director.kind=openai",
            "--set", f"director.base_url={server.url}"]


def test_the_server_is_the_hardened_one(qwen):
    with httpx.Client(trust_env=False) as client:
        assert client.get(f"{qwen.url}/models").status_code == 401  # the key is required
        models = client.get(f"{qwen.url}/models", headers={"Authorization": f"Bearer {qwen.api_key}"}).json()
    assert [m["id"] for m in models["data"]] == ["Qwen/Qwen2.5-VL-7B-Instruct"]  # --served-model-name
    assert qwen.url.startswith("http://127.0.0.1:")


def test_plan_through_vllm_serve(qwen, tiny_weights, tmp_path):
    done = animagent("plan", str(STORY), "--profile", "tiny", "--out", str(tmp_path / "run"),
                     *openai_sets(qwen, tiny_weights), env=qwen.env())
    assert done.returncode == 0, done.stderr[-3000:]
    records = director_records(tmp_path / "run")
    assert {"refine", "style", "script"} <= {r["task"] for r in records}
    assert all(r["kind"] == "openai" for r in records)
    assert json.loads((tmp_path / "run" / "script.json").read_text())["scenes"]


def test_a_whole_tiny_run_through_vllm_serve(qwen, tiny_weights, tmp_path):
    run = tmp_path / "run"
    done = animagent("run", str(STORY), "--profile", "tiny", "--out", str(run), *openai_sets(qwen, tiny_weights),
                     env=qwen.env())
    assert done.returncode == 0, done.stderr[-3000:]
    assert video.probe(run / "film.mp4").frames > 0
    records = director_records(run)
    tasks = {r["task"] for r in records}
    # every director task of a film, the ones with images (picks, verdicts, motions) among them
    assert {"refine", "style", "script", "pick", "verdict", "motion"} <= tasks, tasks
    assert all(r["kind"] == "openai" for r in records)
    assert all(r["ok"] or r["problem"] for r in records)


def test_a_wrong_model_name_is_exit_4_naming_director_model_and_the_run_resumes(qwen, tiny_weights, tmp_path):
    run = tmp_path / "run"
    wrong = animagent("plan", str(STORY), "--profile", "tiny", "--out", str(run), *openai_sets(qwen, tiny_weights),
                      "--set", "director.model=qwen-typo", env=qwen.env())
    assert wrong.returncode == 4
    lines = [line for line in wrong.stderr.splitlines() if "qwen-typo" in line]
    assert lines and "director.model" in lines[-1] and "Traceback" not in wrong.stderr
    # The fix the line names, in the run's own config; then the run resumes to a film.
    config = run / "config.yaml"
    assert "  model: qwen-typo\n" in config.read_text()
    config.write_text(config.read_text().replace("  model: qwen-typo\n", "  model: null\n"))
    fixed = animagent("resume", str(run), env=qwen.env())
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    assert video.probe(run / "film.mp4").frames > 0


@pytest.fixture
def director(qwen, tiny_weights, tmp_path, monkeypatch):
    from animagent.backends.director_openai import OpenAIDirector

    monkeypatch.setenv("ANIMAGENT_DIRECTOR_API_KEY", qwen.api_key)
    config = load_config("tiny", overrides=[f"weights.root={tiny_weights}", "director.kind=openai",
                                            f"director.base_url={qwen.url}"])
    director = OpenAIDirector(config, tmp_path / "director.jsonl")
    yield director
    director.close()


SCHEMA = {"title": "N", "type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 9}},
          "required": ["n"], "additionalProperties": False}


def test_a_prompt_longer_than_the_servers_context_names_max_model_len(director):
    with pytest.raises(DirectorUnavailableError, match="--max-model-len"):
        director._complete([Message("user", "lantern " * 20_000)], SCHEMA, seed=0)


def test_more_images_than_the_server_takes_names_limit_mm_per_prompt(director):
    images = tuple(Image.new("RGB", (56, 56), (i * 20, 0, 0)) for i in range(9))
    with pytest.raises(DirectorUnavailableError, match="--limit-mm-per-prompt"):
        director._complete([Message("user", "which one?", images)], SCHEMA, seed=0)
    # the most animagent sends is answered
    assert director._complete([Message("user", "which one?", images[:8])], SCHEMA, seed=0).finish_reason == "stop"
