"""Fault injection for tests: inert unless $ANIMAGENT_FAULT is set.

ANIMAGENT_FAULT holds comma-separated `action@site:n` entries; the n-th time code passes `site` in this
process, `action` happens there:
    kill@record:3      SIGKILL this process right after the 3rd manifest record
    kill@write:5       SIGKILL after the 5th temp file is written, before it is renamed into place
    enospc@write:2     the 2nd write fails with ENOSPC (disk full)
    oom@painter:1      the 1st painter generation raises a CUDA out-of-memory error (also animator, decode)
This module owns the parsing and the counting; the product calls `check(site)` at those points.
"""

from __future__ import annotations

import errno
import os
import signal
from collections import Counter

_passes: Counter[str] = Counter()


def check(site: str) -> None:
    spec = os.environ.get("ANIMAGENT_FAULT")
    if not spec:
        return
    _passes[site] += 1
    for entry in spec.split(","):
        action, _, where = entry.strip().partition("@")
        name, _, count = where.partition(":")
        if name != site or int(count or 1) != _passes[site]:
            continue
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if action == "enospc":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if action == "oom":
            import torch

            raise torch.OutOfMemoryError(f"CUDA out of memory (injected by ANIMAGENT_FAULT at {site}:{count})")
