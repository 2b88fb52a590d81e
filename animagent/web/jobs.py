"""The review page's jobs: one `animagent resume` or `animagent rerender` subprocess at a time per run folder.

A job is the CLI itself, so the page and the command line share every line of machinery: the run's lock, the
step keys, the exit codes. The subprocess takes the run's lock; a job is refused while one is running or while
another process holds the lock. Its output is appended to `logs/studio-jobs.log`; a failed job is shown with the
CLI's one-line error (the last line it wrote).
This module owns starting, watching and stopping those subprocesses; it knows nothing about HTTP.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from animagent.errors import RunLockedError
from animagent.runfolder import RunFolder

JOB_LOG = "logs/studio-jobs.log"


@dataclass
class Job:
    name: str
    process: subprocess.Popen
    started: float
    log_start: int  # where this job's output begins in JOB_LOG

    def state(self, log: Path) -> dict:
        code = self.process.poll()
        state = {"name": self.name, "pid": self.process.pid, "started": self.started, "running": code is None,
                 "exit_code": code, "message": ""}
        if code not in (None, 0):
            with log.open("rb") as fh:
                fh.seek(self.log_start)
                lines = [ln for ln in fh.read().decode("utf-8", "replace").splitlines() if ln.strip()]
            state["message"] = lines[-1].strip() if lines else ""
        return state


class Jobs:
    def __init__(self, root: Path):
        self.root = root
        self.log = root / JOB_LOG
        self.current: Job | None = None
        self._mutex = threading.Lock()

    def start(self, name: str, args: list[str]) -> Job:
        """Start `animagent ARGS...` for this run folder, unless a job runs or another process holds the lock."""
        with self._mutex:
            if self.running():
                raise RunLockedError(f"a job is running ({self.current.name}); wait for it to finish")
            holder = RunFolder(self.root).lock_holder()
            if holder is not None:
                raise RunLockedError(f"the run folder is locked by pid {holder['pid']} on {holder['host']}; "
                                     "wait for that process to finish")
            self.log.parent.mkdir(parents=True, exist_ok=True)
            with self.log.open("ab") as fh:
                fh.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} animagent {' '.join(args)}\n".encode())
                start = fh.tell()
                process = subprocess.Popen([sys.executable, "-m", "animagent.cli", *args], stdout=fh,
                                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            self.current = Job(name, process, time.time(), start)
            return self.current

    def running(self) -> bool:
        return self.current is not None and self.current.process.poll() is None

    def state(self) -> dict | None:
        return self.current.state(self.log) if self.current is not None else None

    def stop(self) -> None:
        """Interrupt a running job as Ctrl-C would (the CLI exits 130 and the run stays resumable), and wait."""
        if self.running():
            self.current.process.send_signal(signal.SIGINT)
            try:
                self.current.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.current.process.kill()
                self.current.process.wait()
