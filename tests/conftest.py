"""Shared fixtures: tiny weights are built once per test session, model by model, on first use."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

# The real-vLLM layer needs vLLM (`make test-vllm` builds .venv-vllm/ for it); elsewhere it is not collected.
collect_ignore = [] if importlib.util.find_spec("vllm") else ["vllm"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def private_home(tmp_path_factory) -> Path:
    """$ANIMAGENT_HOME for the whole session, CLI subprocesses included: the cast library starts empty."""
    home = tmp_path_factory.mktemp("animagent-home")
    os.environ["ANIMAGENT_HOME"] = str(home)
    return home


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """A weights root whose tiny/ tree is filled lazily by `tiny_model`."""
    return tmp_path_factory.mktemp("weights")


@pytest.fixture(scope="session")
def tiny_model(tiny_root):
    """tiny_model(name) -> folder of that registry model's tiny weights (built once per session)."""
    from animagent import tiny
    from animagent.weights import model_dir

    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            folder = model_dir(tiny_root, name, "tiny")
            folder.mkdir(parents=True, exist_ok=True)
            tiny.BUILDERS[name](folder)
            built[name] = folder
        return built[name]

    get.root = tiny_root  # type: ignore[attr-defined]
    return get


@pytest.fixture(scope="session")
def tiny_all(tiny_model) -> Path:
    """A weights root holding every tiny model (what `animagent weights make-tiny` writes)."""
    from animagent.weights import MODELS

    for name in MODELS:
        tiny_model(name)
    return tiny_model.root


@pytest.fixture(scope="session")
def ray_address():
    """The GCS address of a Ray head of this machine with two logical GPUs (tests/raycluster.py), started once for
    every cluster test that joins it."""
    from tests import raycluster

    yield from raycluster.head()
