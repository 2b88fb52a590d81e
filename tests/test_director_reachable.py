"""A director server that is down, or refuses the key, is exit 4 in seconds, before any work; the key is never
written anywhere (logs/director.jsonl included)."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from animagent.backends.director_openai import OpenAIDirector, check_reachable
from animagent.cli import app
from animagent.config import Config, DirectorConfig
from animagent.errors import DirectorUnavailableError
from tests.test_director_openai import VALID, Look

SECRET = "sk-never-on-disk-42"


def _closed_port_url() -> str:
    with socket.socket() as s:  # bound, then closed: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@pytest.fixture
def server():
    """GET /v1/models answers `state["status"]`; POST answers one valid chat completion."""
    state = {"status": 200, "seen": []}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            state["seen"].append(self.headers.get("Authorization"))
            self._send(state["status"], {"data": []})

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state["seen"].append(self.headers.get("Authorization"))
            message = {"role": "assistant", "content": VALID}
            self._send(200, {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    yield state
    httpd.shutdown()
    httpd.server_close()


def test_a_server_that_is_down_fails_the_check_at_once_naming_the_url():
    url = _closed_port_url()
    started = time.monotonic()
    with pytest.raises(DirectorUnavailableError, match="cannot be reached") as caught:
        check_reachable(DirectorConfig(kind="openai", base_url=url))
    assert url in str(caught.value) and time.monotonic() - started < 5


def test_an_unknown_host_fails_the_check():
    with pytest.raises(DirectorUnavailableError, match="no-such-host.invalid"):
        check_reachable(DirectorConfig(kind="openai", base_url="http://no-such-host.invalid:8000/v1"))


def test_a_refused_key_fails_the_check_and_a_good_server_passes(server):
    check_reachable(DirectorConfig(kind="openai", base_url=server["url"], api_key=SECRET))
    assert server["seen"] == [f"Bearer {SECRET}"]
    server["status"] = 401
    with pytest.raises(DirectorUnavailableError, match="refused the API key"):
        check_reachable(DirectorConfig(kind="openai", base_url=server["url"]))


def test_a_server_that_goes_away_mid_run_is_waited_for_at_most_a_minute_by_default():
    assert DirectorConfig().deadline_s <= 60


def test_the_key_is_sent_but_never_logged(server, tmp_path):
    config = Config(director=DirectorConfig(kind="openai", base_url=server["url"], api_key=SECRET))
    assert SECRET not in repr(config) and SECRET not in str(config.model_dump(mode="json"))
    director = OpenAIDirector(config, tmp_path / "logs" / "director.jsonl")
    director.ask("style", {"story": "A fox keeps a lantern."}, Look, seed=7)
    director.close()
    assert server["seen"] == [f"Bearer {SECRET}"]
    assert SECRET not in (tmp_path / "logs" / "director.jsonl").read_text()


def test_run_with_the_director_server_down_is_exit_4_in_seconds_and_writes_nothing(tmp_path, tiny_all):
    url = _closed_port_url()
    started = time.monotonic()
    result = CliRunner().invoke(app, ["run", "examples/stories/lantern.txt", "--profile", "tiny",
                                      "--set", f"weights.root={tiny_all}", "--set", "director.kind=openai",
                                      "--set", f"director.base_url={url}", "--out", str(tmp_path / "r")])
    assert result.exit_code == 4 and url in result.output.replace("\n", "")
    assert len(result.output.strip().splitlines()) == 1 and time.monotonic() - started < 30
    assert not (tmp_path / "r").exists()
