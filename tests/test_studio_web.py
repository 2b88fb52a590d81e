"""The review page (`animagent studio`): routes, the guard (Host, token, CSRF, files), edits, picks, jobs, events.

A run folder made by prepare_run (the CLI's own code: story, config, script, the plan step) with one shot's
keyframe and clip candidates written beside it; no model is loaded. Jobs are recorded instead of started,
except in the test of the job runner itself.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the studio extra is not installed: pip install 'animagent[studio]'")

from PIL import Image  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from animagent.artifacts import Candidates, Clip, ClipCandidates, Picks, Script  # noqa: E402
from animagent.cli import app as cli_app  # noqa: E402
from animagent.config import load_config  # noqa: E402
from animagent.errors import RunLockedError  # noqa: E402
from animagent.runfolder import RunFolder  # noqa: E402
from animagent.runs import prepare_run  # noqa: E402
from animagent.stages import EVENTS  # noqa: E402
from animagent.web.app import csrf_token, make_app, read_events  # noqa: E402
from animagent.web.jobs import Jobs  # noqa: E402

TWO_SHOTS = "tests/data/two_shots.json"
TOKEN = "test-token-0123456789"
PORT = 8765
BASE = f"http://127.0.0.1:{PORT}"
CSRF = csrf_token(TOKEN)


def make_run(root: Path, weights_root: Path) -> Path:
    """A planned run folder with two keyframe and two clip candidates for s01_k1 (files are placeholders)."""
    run_dir = prepare_run(None, load_config("tiny", overrides=[f"weights.root={weights_root}"]), root,
                          Path(TWO_SHOTS))
    run = RunFolder(run_dir)
    images = []
    for i, colour in enumerate(("red", "green")):
        rel = f"keyframes/s01_k1/candidates/{i}.png"
        run.write_image(rel, Image.new("RGB", (16, 16), colour))
        images.append(rel)
    run.write_model("keyframes/s01_k1/candidates.json",
                    Candidates(item="s01_k1", prompt="p", seeds=(1, 2), images=tuple(images)))
    clips = []
    for i in range(2):
        run.write_bytes(f"clips/s01_k1/candidates/{i}.mp4", b"not really a video")
        clips.append(Clip(shot="s01_k1", video=f"clips/s01_k1/candidates/{i}.mp4", frames=8, fps=8, seed=i))
    run.write_model("clips/s01_k1/candidates.json", ClipCandidates(shot="s01_k1", motion="gentle", clips=tuple(clips)))
    return run_dir


@pytest.fixture
def run_dir(tmp_path, tiny_all) -> Path:
    return make_run(tmp_path / "run", tiny_all)


@pytest.fixture
def started(monkeypatch) -> list[list[str]]:
    """The argument lists of the jobs the page asked for (none is started)."""
    calls: list[list[str]] = []
    monkeypatch.setattr(Jobs, "start", lambda self, name, args: calls.append(args))
    return calls


@pytest.fixture
def client(run_dir) -> TestClient:
    client = TestClient(make_app(run_dir, TOKEN, PORT), base_url=BASE)
    assert client.get(f"/?token={TOKEN}", follow_redirects=False).status_code == 303  # sets the cookie
    return client


def snapshot(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


# --- the page ------------------------------------------------------------------------------------------------


def test_page_shows_the_script_every_shot_and_the_candidates(client, run_dir):
    page = client.get("/")
    assert page.status_code == 200
    script = Script.model_validate_json((run_dir / "script.json").read_text())
    assert script.title in page.text
    for shot in script.shots():
        assert f'id="shot-{shot.id}"' in page.text
        assert shot.description in page.text
    assert page.text.count('data-pick="keyframe-s01_k1-') == 2 and page.text.count('data-pick="clip-s01_k1-') == 2
    assert "not drawn yet" in page.text  # s01_k2 has no candidates: a run in progress is a normal sight
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert page.headers["x-frame-options"] == "DENY"
    assert "http://" not in re.sub(r'href="/|src="/', "", page.text.split("<body>")[0])  # no CDN, every asset ours
    assert client.get("/static/studio.js").status_code == 200 and client.get("/static/studio.css").status_code == 200


def test_a_broken_artifact_is_reported_on_the_page_not_a_crash(client, run_dir):
    (run_dir / "keyframes/s01_k1/candidates.json").write_text('{"item": "s01_k1"}')
    page = client.get("/")
    assert page.status_code == 200
    assert "is not a valid Candidates" in page.text


def test_subtitles_are_served_as_webvtt(client, run_dir):
    RunFolder(run_dir).write_text("film.srt", "1\n00:00:00,000 --> 00:00:02,000\nMira climbs.\n")
    vtt = client.get("/film.vtt")
    assert vtt.headers["content-type"].startswith("text/vtt")
    assert vtt.text.startswith("WEBVTT\n") and "00:00:00.000 --> 00:00:02.000" in vtt.text


# --- the guard -----------------------------------------------------------------------------------------------


def test_every_route_needs_the_token(run_dir):
    client = TestClient(make_app(run_dir, TOKEN, PORT), base_url=BASE)
    for path in ("/", "/static/studio.js", "/run/script.json", "/film.vtt", "/events"):
        response = client.get(path)
        assert response.status_code == 403, path
        assert "token" in response.text
    assert client.get("/?token=wrong").status_code == 403
    client.cookies.set(f"animagent_studio_{PORT}", "wrong")
    assert client.get("/").status_code == 403


def test_a_websocket_is_refused_even_with_the_token(client):
    from starlette.websockets import WebSocketDisconnect

    with pytest.raises(WebSocketDisconnect):
        with client.websocket_connect(f"/?token={TOKEN}"):
            pass


def test_the_token_becomes_a_strict_http_only_cookie(run_dir):
    client = TestClient(make_app(run_dir, TOKEN, PORT), base_url=BASE)
    first = client.get(f"/?token={TOKEN}", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/"  # the token leaves the address bar
    cookie = first.headers["set-cookie"]
    assert cookie.startswith(f"animagent_studio_{PORT}={TOKEN}") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert client.get("/").status_code == 200


def test_another_host_header_is_refused_dns_rebinding(client):
    for host in ("evil.example:8765", "127.0.0.1:9999", "localhost", ""):
        response = client.get("/", headers={"host": host})
        assert response.status_code == 403, host
        assert "Host" in response.text
    assert client.get("/", headers={"host": f"localhost:{PORT}"}).status_code == 200


def test_changes_need_a_post_with_the_csrf_token(client, run_dir, started):
    before = snapshot(run_dir)
    form = {"kind": "keyframe", "shot": "s01_k1", "candidate": "1"}
    assert client.post("/pick", data=form).status_code == 403  # no CSRF token
    assert client.post("/pick", data={**form, "csrf": "0" * 64}).status_code == 403
    assert client.get("/pick").status_code == 405  # a GET changes nothing
    for origin in ("http://evil.example", "null", f"http://127.0.0.1:{PORT + 1}"):
        other_site = client.post("/pick", data={**form, "csrf": CSRF}, headers={"origin": origin})
        assert other_site.status_code == 403 and "another origin" in other_site.text
    for path in ("/edit", "/take", "/approve"):
        assert client.post(path, data={"shot": "s01_k1"}).status_code == 403
    assert snapshot(run_dir) == before and started == []


@pytest.mark.parametrize("rel", [
    "../outside.png", "keyframes/../../outside.png", "%2e%2e/outside.png", "link.png", ".lock", "logs/.animagent-tmp-x.png",
    "config.yaml", "story.txt", "keyframes/s01_k1/candidates/9.png",
])
def test_files_are_served_only_from_inside_the_run_folder(client, run_dir, rel):
    outside = run_dir.parent / "outside.png"
    outside.write_bytes(b"secret")
    (run_dir / "link.png").symlink_to(outside)
    (run_dir / ".lock").write_text("{}")
    response = client.get(f"/run/{rel}")
    assert response.status_code == 404
    assert b"secret" not in response.content


def test_run_files_are_served(client):
    png = client.get("/run/keyframes/s01_k1/candidates/0.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert client.get("/run/script.json").json()["title"] == "The Lantern Keeper"


# --- actions -------------------------------------------------------------------------------------------------


def test_pick_writes_picks_json_and_starts_resume(client, run_dir, started):
    response = client.post("/pick", data={"csrf": CSRF, "kind": "clip", "shot": "s01_k1", "candidate": "1"},
                           follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/#shot-s01_k1"
    assert RunFolder(run_dir).read_model("picks.json", Picks) == Picks(clips={"s01_k1": 1})
    client.post("/pick", data={"csrf": CSRF, "kind": "keyframe", "shot": "s01_k1", "candidate": "0"})
    assert RunFolder(run_dir).read_model("picks.json", Picks) == Picks(keyframes={"s01_k1": 0}, clips={"s01_k1": 1})
    assert started == [["resume", str(run_dir)]] * 2
    assert "your pick" in client.get("/").text


@pytest.mark.parametrize("form, message", [
    ({"kind": "clip", "shot": "s01_k1", "candidate": "2"}, "has 2 clip candidate(s); there is no candidate 2"),
    ({"kind": "keyframe", "shot": "s01_k2", "candidate": "0"}, "has 0 keyframe candidate(s)"),
    ({"kind": "keyframe", "shot": "nope", "candidate": "0"}, "no shot 'nope'"),
    ({"kind": "sheet", "shot": "s01_k1", "candidate": "0"}, "bad pick"),
    ({"kind": "clip", "shot": "s01_k1", "candidate": "-1"}, "bad pick"),
])
def test_a_bad_pick_is_refused_and_nothing_changes(client, run_dir, started, form, message):
    before = snapshot(run_dir)
    response = client.post("/pick", data={"csrf": CSRF, **form})
    assert response.status_code == 400
    assert message in html.unescape(response.text)
    assert snapshot(run_dir) == before and started == []


def edit_form(**changes) -> dict[str, str]:
    form = {"csrf": CSRF, "shot": "s01_k2", "narration": "Tobin guards the flame.",
            "description": "a tortoise over a lantern, a fox beside it", "characters": "mira, tobin",
            "duration_s": "1"}
    return {**form, **changes}


def test_edit_writes_a_valid_script_and_starts_resume(client, run_dir, started):
    old = Script.model_validate_json((run_dir / "script.json").read_text())
    response = client.post("/edit", data=edit_form(characters="tobin, mira", duration_s="2"), follow_redirects=False)
    assert response.status_code == 303
    new = Script.model_validate_json((run_dir / "script.json").read_text())
    shot = new.shot("s01_k2")
    assert shot.narration == "Tobin guards the flame." and shot.duration_s == 2
    assert [p.character for p in shot.characters] == ["tobin", "mira"]
    old_boxes = {p.character: p.box for p in old.shot("s01_k2").characters}
    assert {p.character: p.box for p in shot.characters} == old_boxes  # the layout is kept
    assert new.shot("s01_k1") == old.shot("s01_k1")  # the other shot is untouched
    assert started == [["resume", str(run_dir)]]


def test_a_character_added_to_a_shot_stands_in_the_middle(client, run_dir, started):
    from animagent.web.actions import NEW_BOX

    form = edit_form(shot="s01_k1", narration="Mira and Tobin climb.", description="a fox and a tortoise on a hill",
                     characters="mira, tobin", duration_s="2")
    assert client.post("/edit", data=form, follow_redirects=False).status_code == 303
    shot = Script.model_validate_json((run_dir / "script.json").read_text()).shot("s01_k1")
    assert [(p.character, p.box.model_dump()) for p in shot.characters][1] == ("tobin", NEW_BOX)


@pytest.mark.parametrize("changes, message", [
    ({"characters": "mira, ghost"}, "names character 'ghost', not one of ['mira', 'tobin']"),
    ({"narration": "   "}, "narration: String should have at least 1 character"),
    ({"duration_s": "0"}, "duration_s: Input should be greater than or equal to 1"),
    ({"duration_s": "31"}, "duration_s: Input should be less than or equal to 30"),
    ({"duration_s": "25"}, "limits.min_shot_seconds and max_shot_seconds allow"),
    ({"duration_s": "two"}, "duration_s must be a whole number"),
    ({"characters": "mira, mira"}, "lists a character twice"),
    ({"shot": "s09"}, "no shot 's09'"),
])
def test_an_invalid_edit_is_refused_with_the_message_and_nothing_changes(client, run_dir, started, changes, message):
    before = snapshot(run_dir)
    response = client.post("/edit", data=edit_form(**changes))
    assert response.status_code == 400
    assert message in html.unescape(response.text)
    assert 'id="error"' in response.text
    assert snapshot(run_dir) == before and started == []


def test_take_and_approve_start_the_cli_commands(client, run_dir, started):
    client.post("/take", data={"csrf": CSRF, "shot": "s01_k2", "start": "animate"})
    client.post("/approve", data={"csrf": CSRF})
    assert started == [["rerender", str(run_dir), "--shot", "s01_k2", "--from", "animate"], ["resume", str(run_dir)]]


@contextlib.contextmanager
def lock_held_by_another_process(run_dir: Path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    (run_dir / ".lock").write_text(json.dumps({"pid": holder.pid, "host": os.uname().nodename, "started": 0}))
    try:
        yield holder
    finally:
        holder.kill()
        holder.wait()


def test_a_folder_locked_by_another_process_is_shown_and_changes_are_refused(client, run_dir, started):
    with lock_held_by_another_process(run_dir) as holder:
        page = client.get("/")
        assert f"locked by pid {holder.pid}" in page.text
        before = snapshot(run_dir)
        response = client.post("/edit", data=edit_form())
        assert response.status_code == 409 and f"in use by pid {holder.pid}" in response.text
        assert client.post("/pick", data={"csrf": CSRF, "kind": "clip", "shot": "s01_k1", "candidate": "1"}
                           ).status_code == 409
        assert snapshot(run_dir) == before and started == []


def test_jobs_run_the_cli_one_at_a_time_and_stop_resumably(run_dir):
    jobs = Jobs(run_dir)
    with lock_held_by_another_process(run_dir) as holder:
        with pytest.raises(RunLockedError, match=f"locked by pid {holder.pid}"):
            jobs.start("resume", ["resume", str(run_dir)])
    (run_dir / ".lock").unlink()
    job = jobs.start("resume", ["resume", str(run_dir)])
    assert jobs.running()
    with pytest.raises(RunLockedError, match="a job is running"):
        jobs.start("again", ["resume", str(run_dir)])
    time.sleep(2)  # past interpreter start-up, where SIGINT becomes KeyboardInterrupt
    jobs.stop()
    state = jobs.state()
    assert state["pid"] == job.process.pid and not state["running"]
    assert state["exit_code"] == 130  # interrupted: resumable
    assert state["message"]  # the CLI's one line
    job_log = (run_dir / "logs/studio-jobs.log").read_text()
    assert job_log.startswith("--- ") and job_log.count("--- ") == 1  # one header line per job


# --- live events ---------------------------------------------------------------------------------------------


def test_read_events_takes_complete_json_lines_only(tmp_path):
    path = tmp_path / "events.jsonl"
    assert read_events(path, 0) == ([], 0)
    line = json.dumps({"time": 1.0, "event": "progress", "stage": "draw", "done": 1, "total": 2}) + "\n"
    path.write_text(line + "not json\n" + '{"time": 2.0, "event": "st')
    records, offset = read_events(path, 0)
    assert [r for r, _ in records] == [json.loads(line)]
    assert offset == len(line) + len("not json\n")  # the half-written line waits
    with path.open("a") as fh:
        fh.write('ep", "step": "draw/s01_k1", "outputs": ["keyframes/s01_k1/candidates/0.png"]}\n')
    records, end = read_events(path, offset)
    assert [r["step"] for r, _ in records] == ["draw/s01_k1"] and end == path.stat().st_size
    path.write_text(line)  # a new run started the file anew
    assert [r for r, _ in read_events(path, end)[0]] == [json.loads(line)]


@contextlib.contextmanager
def serving(run_dir: Path, token: str = TOKEN):
    """The app under a real uvicorn on 127.0.0.1 in a thread; yields its base URL."""
    from animagent.web import bind, make_server

    sock = bind(0)
    port = sock.getsockname()[1]
    server = make_server(run_dir, token, sock)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_events_stream_the_progress_file_as_it_grows(run_dir):
    import httpx

    events = run_dir / EVENTS
    events.parent.mkdir(exist_ok=True)
    with events.open("a") as fh:  # before the page connects: only the latest progress per stage is replayed
        for done in (0, 1):
            fh.write(json.dumps({"time": 1.0, "event": "progress", "stage": "draw", "done": done, "total": 2}) + "\n")
    with serving(run_dir) as base, httpx.Client(base_url=base, cookies={f"animagent_studio_{base.rsplit(':', 1)[1]}": TOKEN},
                                              timeout=20) as http:
        with http.stream("GET", "/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            seen: list[tuple[str, dict]] = []
            event = None
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    event = line[len("event: "):]
                elif line.startswith("data: "):
                    seen.append((event, json.loads(line[len("data: "):])))
                    if event == "status":  # the stream is tailing now: the render appends a step
                        with events.open("a") as fh:
                            fh.write(json.dumps({"time": 2.0, "event": "step", "step": "draw/s01_k1",
                                                 "outputs": ["keyframes/s01_k1/candidates/0.png"]}) + "\n")
                    if event == "step":
                        break
    assert seen[0] == ("progress", {"time": 1.0, "event": "progress", "stage": "draw", "done": 1, "total": 2})
    assert [e for e, _ in seen] == ["progress", "status", "step"]
    assert seen[1][1] == {"job": None, "locked_by": None}
    assert seen[2][1]["outputs"] == ["keyframes/s01_k1/candidates/0.png"]


# --- the command ---------------------------------------------------------------------------------------------


def test_cli_refuses_a_folder_that_is_not_a_run(tmp_path):
    result = CliRunner().invoke(cli_app, ["studio", str(tmp_path)])
    assert result.exit_code == 2
    assert "is not a run folder" in result.output and len(result.output.strip().splitlines()) == 1


def test_the_server_listens_on_127_0_0_1_only():
    from animagent.web import bind

    sock = bind(0)
    try:
        assert sock.getsockname()[0] == "127.0.0.1"
    finally:
        sock.close()


def test_cli_refuses_a_port_in_use_naming_another(run_dir):
    from animagent.web import bind

    taken = bind(0)
    port = taken.getsockname()[1]
    try:
        result = CliRunner().invoke(cli_app, ["studio", str(run_dir), "--port", str(port)])
    finally:
        taken.close()
    assert result.exit_code == 2
    match = re.search(rf"port {port} is in use; try --port (\d+)", result.output)
    assert match and int(match.group(1)) != port


def test_cli_without_the_studio_extra_exits_4_with_the_install_line(run_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # what a missing package looks like to import
    result = CliRunner().invoke(cli_app, ["studio", str(run_dir)])
    assert result.exit_code == 4
    assert "pip install 'animagent[studio]'" in result.output
