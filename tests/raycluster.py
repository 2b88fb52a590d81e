"""A Ray head of the tests' own on this machine (CPU, two logical GPUs, 127.0.0.1), shared by the cluster test
modules through conftest's `ray_address` fixture: a driver that keeps the cluster up until its stdin closes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

HEAD = """
import sys, ray
ray.init(address="local", num_gpus=2, num_cpus=2, include_dashboard=False, logging_level="ERROR")
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()
ray.shutdown()
"""
# Every process of the test cluster: loopback addresses only (Ray's single-machine mode), no token to share.
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled",
       "RAY_USAGE_STATS_ENABLED": "0"}


def head() -> Iterator[str]:
    """Start the head, yield its GCS address, stop it."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", HEAD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=ENV)
    gcs = proc.stdout.readline().strip()
    assert gcs.startswith("127.0.0.1:"), gcs
    print(f"Ray head up in {time.perf_counter() - started:.1f} s at {gcs}")
    yield gcs
    proc.stdin.close()
    proc.wait(timeout=60)
