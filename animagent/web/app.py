"""The review page's web app (Starlette): the page, the run folder's files, live events and the actions.

Safe by default, every request passes `Guard` first:
  - the Host header must be this server's own (127.0.0.1:PORT or localhost:PORT), so a page on another site
    whose name resolves to 127.0.0.1 (DNS rebinding) is refused;
  - the token `animagent studio` printed is required on every route: given once as ?token=, it is kept in an
    HttpOnly, SameSite=Strict cookie named after the port;
  - a state change is a POST whose form carries the CSRF token of the page (and whose Origin, when sent, is ours);
  - files are served only from inside the run folder (RunFolder.path resolves symlinks), never hidden ones
    (the lock, temp files), and only media, subtitles and JSON.
The page is rendered from the run folder's JSON artifacts (view.py); live updates are server-sent events read
from `logs/events.jsonl`, the run's progress file, one JSON object per line. There are no uploads.
This module owns routing, the guard and the event stream; reading is view.py's, writing actions.py's, jobs jobs.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import threading
from pathlib import Path
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from animagent.errors import InputError, RunLockedError
from animagent.runfolder import RunFolder
from animagent.stages import EVENTS
from animagent.stages.assemble import SUBTITLES
from animagent.web import actions, view
from animagent.web.jobs import Jobs

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
SERVED = {".png": "image/png", ".jpg": "image/jpeg", ".mp4": "video/mp4", ".wav": "audio/wav",
          ".srt": "text/plain; charset=utf-8", ".json": "application/json"}
MAX_BODY = 64 * 1024  # the largest form is one shot's edit: a few kilobytes
POLL_S = 0.25  # how often the event stream looks at events.jsonl and the job
HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self'; media-src 'self'; style-src 'self'; "
                               "script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",  # "no-referrer" makes Chromium send Origin: null with our own forms
    "cache-control": "no-store",
}


def new_token() -> str:
    return secrets.token_urlsafe(24)


def csrf_token(token: str) -> str:
    """The forms' CSRF token: derived from the access token, so it needs no storage."""
    return hmac.new(token.encode(), b"csrf", hashlib.sha256).hexdigest()


def make_app(root: Path, token: str, port: int) -> Guard:
    """The review page of the run folder `root`, for a server listening on 127.0.0.1:`port`."""
    page = ReviewPage(root.resolve(), token)
    routes = [
        Route("/", page.index),
        Route("/events", page.events),
        Route("/film.vtt", page.subtitles),
        Route("/run/{rel:path}", page.file),
        Route("/pick", page.pick, methods=["POST"]),
        Route("/edit", page.edit, methods=["POST"]),
        Route("/take", page.take, methods=["POST"]),
        Route("/approve", page.approve, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        page.jobs.stop()  # a render started from the page stops with it, resumable (exit 130)

    app = Starlette(routes=routes, lifespan=lifespan, max_body_size=MAX_BODY)
    app.state.page = page
    return Guard(app, token, port)


class Guard:
    """ASGI wrapper that checks Host, token and (for POST) Origin before any route runs; adds security headers."""

    def __init__(self, app: Starlette, token: str, port: int):
        self.app = app
        self.token = token
        self.hosts = {f"127.0.0.1:{port}", f"localhost:{port}"}
        self.cookie = f"animagent_studio_{port}"

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # the page has no websocket: refused before any route
            await send({"type": "websocket.close", "code": 1008})
            return
        request = Request(scope)
        refusal = self.refusal(request)
        if refusal is not None:
            await PlainTextResponse(refusal, status_code=403, headers=HEADERS)(scope, receive, send)
            return
        given = request.query_params.get("token")
        if given is not None and request.method == "GET":  # first visit: keep the token in a cookie, drop it from the URL
            query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "token"])
            response = RedirectResponse(request.url.path + (f"?{query}" if query else ""), status_code=303,
                                        headers=HEADERS)
            response.set_cookie(self.cookie, self.token, httponly=True, samesite="strict", path="/")
            await response(scope, receive, send)
            return

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *((k.encode(), v.encode()) for k, v in HEADERS.items() if k.encode() not in present)]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def refusal(self, request: Request) -> str | None:
        host = request.headers.get("host", "")
        if host not in self.hosts:
            return f"refused: Host {host!r} is not this server ({' or '.join(sorted(self.hosts))})"
        given = request.cookies.get(self.cookie) or request.query_params.get("token") or ""
        if not secrets.compare_digest(given.encode(), self.token.encode()):
            return "refused: open the URL `animagent studio` printed; it carries the access token"
        origin = request.headers.get("origin")
        if request.method != "GET" and origin is not None and origin not in {f"http://{h}" for h in self.hosts}:
            return f"refused: a change requested from another origin ({origin})"
        return None


class ReviewPage:
    def __init__(self, root: Path, token: str):
        self.root = root
        self.run = RunFolder(root)
        self.csrf = csrf_token(token)
        self.jobs = Jobs(root)
        self.closing = threading.Event()  # set when the server shuts down: event streams end
        self.templates = Jinja2Templates(directory=HERE / "templates")
        self.templates.env.globals["url"] = self.url

    # --- reading -------------------------------------------------------------------------------------------

    def url(self, rel: str) -> str:
        """The URL of a run-folder file, versioned by its mtime so a re-rendered file is fetched anew."""
        path = self.root / rel
        version = path.stat().st_mtime_ns if path.is_file() else 0
        return f"/run/{rel}?v={version}"

    def status(self) -> dict:
        job = self.jobs.state()
        holder = self.run.lock_holder()
        if holder is not None and job is not None and job["running"] and holder.get("pid") == job["pid"]:
            holder = None  # our own job holds it
        return {"job": job, "locked_by": holder}

    async def index(self, request: Request, error: str | None = None, status_code: int = 200) -> Response:
        run_view = view.load(self.root)
        return self.templates.TemplateResponse(request, "page.html", {
            "v": run_view, "csrf": self.csrf, "status": self.status(), "error": error,
        }, status_code=status_code)

    async def file(self, request: Request) -> Response:
        rel = request.path_params["rel"]
        parts = rel.split("/")
        suffix = Path(rel).suffix.lower()
        # hidden names are the lock and temp files: never served, whatever their suffix
        if any(p in ("", ".", "..") or p.startswith(".") for p in parts) or suffix not in SERVED:
            raise HTTPException(404, f"not served: {rel}")
        try:
            path = self.run.path(rel)
        except InputError:
            raise HTTPException(404, f"not served: {rel} leads outside the run folder") from None
        if not path.is_file():
            raise HTTPException(404, f"no such file in the run folder: {rel}")
        return FileResponse(path, media_type=SERVED[suffix])

    async def subtitles(self, request: Request) -> Response:
        """film.srt as WebVTT, which is what a <video>'s <track> reads."""
        if not self.run.exists(SUBTITLES):
            raise HTTPException(404, "no film.srt yet")
        srt = self.run.path(SUBTITLES).read_text(encoding="utf-8")
        cues = [line.replace(",", ".") if "-->" in line else line for line in srt.splitlines()]
        return Response("WEBVTT\n\n" + "\n".join(cues) + "\n", media_type="text/vtt; charset=utf-8")

    async def events(self, request: Request) -> Response:
        """Server-sent events: `progress` and `step` lines of logs/events.jsonl as they are appended (after the
        latest progress of each stage so far, on a fresh connection), and `status` (job, lock) when it changes.
        The event id is the byte offset in events.jsonl, so a reconnecting browser continues where it was."""
        last = request.headers.get("last-event-id", "")

        async def stream():
            path = self.root / EVENTS
            offset = int(last) if last.isdigit() else None
            if offset is None:
                records, offset = read_events(path, 0)
                latest = {r.get("stage"): r for r, _ in records if r.get("event") == "progress"}
                for record in latest.values():
                    yield sse("progress", record, offset)
            status = None
            while not self.closing.is_set():
                records, offset = read_events(path, offset)
                for record, at in records:
                    yield sse(str(record.get("event", "message")), record, at)
                now = self.status()
                if now != status:
                    status = now
                    yield sse("status", now)
                await asyncio.sleep(POLL_S)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"x-accel-buffering": "no"})

    # --- actions -------------------------------------------------------------------------------------------

    async def form(self, request: Request) -> dict[str, str]:
        form = await request.form()
        if not secrets.compare_digest(str(form.get("csrf", "")).encode(), self.csrf.encode()):
            raise HTTPException(403, "refused: the form's CSRF token is missing or wrong; reload the page")
        return {k: str(v) for k, v in form.items()}

    async def act(self, request: Request, change, job: tuple[str, list[str]], anchor: str = "") -> Response:
        """Run `change` (a run-folder write, or None), then start `job`; refuse while busy or on bad input."""
        try:
            if self.jobs.running():
                raise RunLockedError(f"a job is running ({self.jobs.current.name}); wait for it to finish")
            if change is not None:
                await asyncio.to_thread(change)
            self.jobs.start(*job)
        except InputError as exc:
            return await self.index(request, error=str(exc), status_code=400)
        except RunLockedError as exc:
            return await self.index(request, error=str(exc), status_code=409)
        return RedirectResponse(f"/#{anchor}" if anchor else "/", status_code=303)

    async def pick(self, request: Request) -> Response:
        form = await self.form(request)
        kind, shot = form.get("kind", ""), form.get("shot", "")
        if kind not in ("keyframe", "clip") or not form.get("candidate", "").isdigit():
            return await self.index(request, error=f"bad pick: kind {kind!r}, candidate {form.get('candidate')!r}",
                                    status_code=400)
        candidate = int(form["candidate"])
        return await self.act(request, lambda: actions.pick(self.root, kind, shot, candidate),
                              (f"pick {kind} {candidate} of {shot}", ["resume", str(self.root)]), f"shot-{shot}")

    async def edit(self, request: Request) -> Response:
        form = await self.form(request)
        shot = form.get("shot", "")
        characters = [c.strip() for c in form.get("characters", "").split(",") if c.strip()]
        try:
            duration = int(form.get("duration_s", ""))
        except ValueError:
            return await self.index(request, error=f"edit of shot {shot} refused: duration_s must be a whole number "
                                    f"of seconds, got {form.get('duration_s')!r}", status_code=400)
        return await self.act(
            request,
            lambda: actions.edit_shot(self.root, shot, form.get("narration", ""), form.get("description", ""),
                                      characters, duration),
            (f"edit {shot}", ["resume", str(self.root)]), f"shot-{shot}",
        )

    async def take(self, request: Request) -> Response:
        form = await self.form(request)
        shot, start = form.get("shot", ""), form.get("start", "draw")
        return await self.act(request, None, (f"new take of {shot} from {start}",
                                              ["rerender", str(self.root), "--shot", shot, "--from", start]),
                              f"shot-{shot}")

    async def approve(self, request: Request) -> Response:
        await self.form(request)
        return await self.act(request, None, ("approve: resume, assemble, evaluate", ["resume", str(self.root)]))


def read_events(path: Path, offset: int) -> tuple[list[tuple[dict, int]], int]:
    """The complete JSON lines of `path` from byte `offset`, each with the offset just after it, and the offset
    after the last complete line.

    A line still being written (no newline yet) waits for the next read; a line that is not a JSON object is
    skipped; a file shorter than `offset` was started anew and is read from its beginning."""
    if not path.is_file():
        return [], 0
    size = path.stat().st_size
    if size < offset:
        offset = 0
    with path.open("rb") as fh:
        fh.seek(offset)
        data = fh.read(size - offset)
    records = []
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        offset += len(line)
        try:
            record = json.loads(line)
        except ValueError:
            log.warning("skipping a line of %s that is not JSON: %r", path, line[:80])
            continue
        if isinstance(record, dict):
            records.append((record, offset))
    return records, offset


def sse(event: str, data: dict, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
