"""The review page, `animagent studio RUN`: watch a film being made, pick another candidate, edit a shot, redo it.

`serve()` checks the run folder, binds 127.0.0.1 (a port in use is refused, naming a free one), and runs the
Starlette app (app.py) under uvicorn until Ctrl-C. Starlette and uvicorn are the optional extra
`animagent[studio]`, imported only here and in the modules below, never by `import animagent`.
This module owns starting the server; the page is app.py's.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from pathlib import Path

from animagent.errors import InputError, MissingError

INSTALL = "pip install 'animagent[studio]'"


def serve(run_dir: Path, port: int, on_ready: Callable[[str], None]) -> None:
    """Serve the review page of `run_dir` on 127.0.0.1:`port`; `on_ready` gets the URL with its token."""
    from animagent.runs import open_run

    try:
        import uvicorn  # noqa: F401

        from animagent.web.app import new_token
    except ImportError as exc:
        raise MissingError(f"the review page needs Starlette and uvicorn ({exc.name} is missing): {INSTALL}") from None
    open_run(run_dir)  # InputError (exit 2) when it is not a run folder
    sock = bind(port)
    token = new_token()
    server = make_server(run_dir, token, sock)
    on_ready(f"http://127.0.0.1:{port}/?token={token}")
    server.run(sockets=[sock])


def make_server(run_dir: Path, token: str, sock: socket.socket):
    """A uvicorn server of the review page for the bound socket `sock`; run it with `.run(sockets=[sock])`."""
    import uvicorn

    from animagent.web.app import make_app

    app = make_app(run_dir, token, sock.getsockname()[1])
    page = app.app.state.page

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            page.closing.set()  # open event streams end, so a page left open does not hold the shutdown
            await super().shutdown(sockets=sockets)

    return Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5))


def bind(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:`port`, or InputError naming a free port when it is taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # on Linux this still refuses a port someone listens on
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        if exc.errno != errno.EADDRINUSE:
            raise InputError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from None
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            free = probe.getsockname()[1]
        raise InputError(f"port {port} is in use; try --port {free}") from None
    sock.listen(64)
    return sock
