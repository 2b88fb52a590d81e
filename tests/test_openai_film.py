"""A whole film through the `openai` director kind: `animagent run ... --set director.kind=openai` against a
local server that speaks chat completions and honours `response_format` (issue 3's must-hold).

The server is real HTTP on 127.0.0.1; behind it, the tiny Qwen2.5-VL answers with the request's JSON schema
(the same constrained decoding vLLM does with xgrammar). Images arrive as base64 data URLs and are decoded.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from animagent import video
from animagent.backends.director import Message
from animagent.config import load_config
from animagent.runs import make_film


@pytest.fixture
def served_tiny_director(tiny_all, tmp_path):
    from animagent.backends.director_transformers import TransformersDirector

    model = TransformersDirector(load_config("tiny", overrides=[f"weights.root={tiny_all}"]), tmp_path / "srv.jsonl")
    requests: list[dict] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
            messages = []
            for m in body["messages"]:
                if isinstance(m["content"], str):
                    messages.append(Message(m["role"], m["content"]))
                    continue
                images = tuple(
                    Image.open(io.BytesIO(base64.b64decode(p["image_url"]["url"].split(",", 1)[1]))).convert("RGB")
                    for p in m["content"] if p["type"] == "image_url"
                )
                text = "".join(p["text"] for p in m["content"] if p["type"] == "text")
                messages.append(Message(m["role"], text, images))
            with lock:  # one generation at a time, as a single-GPU server would
                reply = model._complete(messages, body["response_format"]["json_schema"]["schema"], body["seed"])
            answer = {"id": "x", "object": "chat.completion", "model": body["model"],
                      "choices": [{"index": 0, "finish_reason": reply.finish_reason,
                                   "message": {"role": "assistant", "content": reply.text}}]}
            data = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/v1", requests
    server.shutdown()
    model.close()


def test_film_through_an_openai_compatible_server(served_tiny_director, tiny_all, tmp_path, monkeypatch):
    url, requests = served_tiny_director
    monkeypatch.setenv("ANIMAGENT_DIRECTOR_API_KEY", "test-key")
    film = make_film("examples/stories/lantern.txt", profile="tiny", out=tmp_path / "run",
                     overrides=[f"weights.root={tiny_all}", "director.kind=openai", f"director.base_url={url}"])
    info = video.probe(tmp_path / "run" / film.video)
    assert info.frames == film.frames and info.subtitle_streams == 1
    tasks = {json.loads(line)["task"] for line in (tmp_path / "run/logs/director.jsonl").read_text().splitlines()}
    assert {"refine", "style", "script", "pick", "motion"} <= tasks
    assert requests and all(r["path"] == "/v1/chat/completions" for r in requests)
    assert all(r["auth"] == "Bearer test-key" and r["response_format"]["json_schema"]["strict"] for r in requests)
    urls = [p["image_url"]["url"] for r in requests for m in r["messages"] if isinstance(m["content"], list)
            for p in m["content"] if p["type"] == "image_url"]
    assert urls and all(u.startswith("data:image/png;base64,") for u in urls)
