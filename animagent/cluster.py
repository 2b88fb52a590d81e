"""Where the stages' independent work runs with `cluster.kind: ray`: Ray actors, one per GPU, each holding its
own `Models` (models.build on the worker, from the config alone), so a model loads once per GPU per film.

A task is a plain module-level function `fn(models, *args)` that needs nothing but models: a clip candidate's
render, a cast item's sketches, a candidate's scores. `Models.submit(fn, calls)` hands such tasks to
`RayPool.submit` with kind ray: each goes to a worker at once (the one with the fewest unfinished tasks), and
its result is taken later with `Pending.result()`, in whatever order the stage needs (film order), so the stage
writes the same files in the same order: the driver stays the run folder's only writer (workers return frames,
images and scores; no shared file system), and the film's bytes do not depend on how many workers there are.
The workers start before the recipe's first stage (`RayPool.start`): each checks its node's weights (exit 4
naming the node and the model) and reports its GPU's memory, held to `gpu.min_memory_gb` (exit 5 naming the node
and the profile that fits).
A worker that dies mid-task (killed, its node lost) is dropped and its tasks go to another worker, each at most
`cluster.max_retries` times. Task timings, worker pids and retries are appended to logs/events.jsonl.
This module owns the connection, the workers and the dispatch; Ray is imported only here, and only for kind ray.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from animagent.config import Config, load_config, profile_names
from animagent.errors import MissingError, ResourceError

if TYPE_CHECKING:
    from animagent.models import Pending, Role

log = logging.getLogger(__name__)
R = TypeVar("R")
INSTALL = "pip install 'animagent[ray]'"
EVENTS = "events.jsonl"  # in the run's logs/ folder, beside the stages' progress events


def check(config: Config) -> None:
    """Before any work: Ray is installed and, for a HOST:PORT address, something listens there."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise MissingError(f"cluster.kind ray needs Ray, which is not installed: {INSTALL}") from None
    address = config.cluster.address
    if address == "auto":
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise MissingError(
            f"no Ray cluster answers at cluster.address {address} ({exc.strerror or exc}); start its head with "
            f"`ray start --head --port {port}` on {host}, or use --set cluster.address=auto for this machine's GPUs"
        ) from None


def gpu_memory() -> int | None:
    """This process's GPU's total memory in bytes (the one Ray gave it), or None where torch sees no CUDA GPU."""
    import torch

    return torch.cuda.get_device_properties(0).total_memory if torch.cuda.is_available() else None


def check_memory(config: Config, node: str, total: int | None) -> None:
    """ResourceError (exit 5) when a worker's GPU has less memory than `gpu.min_memory_gb`, naming the node and
    the profile whose need fits it."""
    need = config.gpu.min_memory_gb
    if total is None or need is None or total >= need * 1e9:
        return
    fits = sorted((p.gpu.min_memory_gb, name) for name in profile_names()
                  if (p := load_config(name)).gpu.min_memory_gb is not None and p.gpu.min_memory_gb * 1e9 <= total)
    fix = (f"use --profile {fits[-1][1]} (it needs {fits[-1][0]:g} GB)" if fits
           else "no profile fits it")
    raise ResourceError(f"Ray node {node}: its GPU has {total / 1e9:.1f} GB, less than the {need:g} GB the "
                        f"{config.profile} profile needs (gpu.min_memory_gb); {fix}, or leave the node out of the "
                        "cluster")


def check_node(config: Config, place: dict[str, Any]) -> None:
    """What stops a worker's node (`Worker.where`) from doing the config's work, raised: a model missing from its
    disk (MissingError, exit 4) or a GPU below `gpu.min_memory_gb` (ResourceError, exit 5), each naming the node."""
    if place["missing"] is not None:
        raise MissingError(f"Ray node {place['node']}: {place['missing']}")
    check_memory(config, place["node"], place["gpu_memory"])


class Worker:
    """One Ray actor on one GPU: the backends it was asked for stay loaded until released."""

    def __init__(self, config_json: str, logs: str):
        from animagent.models import Models

        self.models = Models(Config.model_validate_json(config_json), Path(logs))  # its `submit` is never called

    def where(self) -> dict[str, Any]:
        """Where this worker runs, its GPU's memory, and what its node lacks of the models the config names
        (`missing`: the message naming them and the fix, or None)."""
        import ray

        from animagent.weights import ensure_present

        try:
            ensure_present(self.models.config)
            missing = None
        except MissingError as exc:
            missing = str(exc)
        return {"pid": os.getpid(), "node": ray.util.get_node_ip_address(), "gpus": ray.get_gpu_ids(),
                "gpu_memory": gpu_memory(), "missing": missing}

    def run(self, fn: Callable[..., Any], args: tuple) -> tuple[Any, float, float]:
        started = time.time()
        value = fn(self.models, *args)
        return value, started, time.time()

    def release(self, roles: tuple[str, ...]) -> None:
        self.models.release(*roles)  # type: ignore[arg-type]


class RayPool:
    """The workers of one run, one per GPU of the cluster (`start`), and the tasks handed to them: numbered in the
    order they were submitted, each on one worker until its result is taken."""

    def __init__(self, config: Config, logs: Path):
        self.config, self.logs = config, logs
        self._workers: dict[int, Any] = {}  # worker number -> actor handle (dead ones are dropped)
        self._connected = False  # this pool called ray.init (a caller's own Ray session is left as it was)
        self._tasks: dict[int, tuple[Callable[..., Any], tuple]] = {}  # task number -> (fn, args), until done
        self._running: dict[Any, tuple[int, int]] = {}  # object ref -> (task number, worker number)
        self._done: dict[int, Any] = {}  # results not yet taken
        self._attempts: Counter[int] = Counter()
        self._count = 0

    def submit(self, fn: Callable[..., R], calls: Sequence[tuple]) -> list[Pending[R]]:
        """`fn(models, *call)` for each call, each handed to a worker now; the results are taken later."""
        from animagent.models import Pending

        numbers = []
        for call in calls:
            self._tasks[self._count] = (fn, call)
            self._dispatch(self._count)
            numbers.append(self._count)
            self._count += 1
        return [Pending(lambda n=n: self._result(n)) for n in numbers]

    def _dispatch(self, task: int) -> None:
        """Hand `task` to the worker with the fewest unfinished tasks (their results not yet back)."""
        import ray

        fn, args = self._tasks[task]
        if not self._workers:
            raise MissingError(f"every Ray worker died; {_name(fn)} has tasks left")
        refs = list(self._running)
        ready = set(ray.wait(refs, num_returns=len(refs), timeout=0)[0]) if refs else set()
        busy = Counter(self._running[ref][1] for ref in refs if ref not in ready)
        n = min(self._workers, key=lambda w: (busy[w], w))
        self._running[self._workers[n].run.remote(fn, args)] = (task, n)

    def _result(self, task: int) -> Any:
        """Task `task`'s result, waiting for tasks to come back (and sending those of a dead worker elsewhere)."""
        import ray

        while task not in self._done:
            [ref], _ = ray.wait(list(self._running), num_returns=1)
            self._collect(ref)
        return self._done.pop(task)

    def _collect(self, ref: Any) -> None:
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        task, n = self._running.pop(ref)
        name = _name(self._tasks[task][0])
        try:
            value, started, ended = ray.get(ref)
        except RayTaskError as exc:  # the task itself failed: its own error, as raised on the worker
            log.error("%s failed on Ray worker %d", name, n)
            raise exc.cause from None
        except RayActorError as exc:  # the worker died: its tasks go to the others
            self._attempts[task] += 1
            if self._attempts[task] > self.config.cluster.max_retries:
                raise MissingError(f"{name} lost its Ray worker {self._attempts[task]} times (last: worker {n}); "
                                   f"cluster.max_retries is {self.config.cluster.max_retries}") from exc
            if self._workers.pop(n, None) is not None:
                log.warning("Ray worker %d died (%s); its tasks go to the other workers", n, type(exc).__name__)
            self._event("retry", fn=name, task=task, worker=n, attempt=self._attempts[task])
            self._dispatch(task)
            return
        self._event("task", fn=name, task=task, worker=n, started=round(started, 3), ended=round(ended, 3))
        del self._tasks[task]  # its inputs (a keyframe, frames) are no longer needed for a retry
        self._done[task] = value

    def release(self, *roles: Role) -> None:
        """Free `roles` on every worker (the recipe's release schedule, as in the driver). Queued behind the tasks
        already handed to the worker, which may need them, and not waited for: a worker that died is found at its
        next task."""
        for worker in self._workers.values():
            worker.release.remote(roles)

    def close(self) -> None:
        import ray

        for worker in self._workers.values():
            ray.kill(worker)
        self._workers = {}
        if self._connected:
            ray.shutdown()  # a Ray instance started for this run stops with it; a joined cluster keeps running
            self._connected = False

    def start(self) -> None:
        """Connect, start one worker per GPU of the cluster and check each one's node: its weights (exit 4) and its
        GPU's memory (exit 5)."""
        started = time.perf_counter()
        places = self.survey()
        for place in places:
            check_node(self.config, place)
        for n, place in enumerate(places):
            self._event("worker", worker=n, **{k: v for k, v in place.items() if k != "missing"})
        log.info("Ray: %d workers in %.1f s", len(places), time.perf_counter() - started)

    def survey(self) -> list[dict[str, Any]]:
        """Connect and start one worker per GPU of the cluster; each tells where it runs and what its node lacks
        (Worker.where). `animagent doctor` shows them; `start` holds the run to them."""
        import ray

        cluster = self.config.cluster
        if not ray.is_initialized():
            if cluster.address == "auto":
                ray.init(address="local", num_gpus=cluster.gpus, include_dashboard=False, logging_level="WARNING",
                         log_to_driver=False)
            else:
                ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False)
            self._connected = True
        gpus = int(ray.cluster_resources().get("GPU", 0))
        if gpus == 0:
            raise MissingError(f"the Ray cluster (cluster.address {cluster.address}) offers no GPU; start its nodes "
                               "with `ray start --num-gpus N` (logical GPUs work for the tiny profile)")
        actor = ray.remote(num_gpus=1, num_cpus=0, max_restarts=0)(Worker)
        # The weights root as this machine resolves it ($ANIMAGENT_WEIGHTS, ./weights): a worker's own environment
        # and working folder are not the driver's. Every node holds the weights at that path.
        config = self.config.model_copy(update={"weights": self.config.weights.model_copy(
            update={"root": str(self.config.weights_root())})})
        self._workers = {n: actor.remote(config.model_dump_json(), str(self.logs)) for n in range(gpus)}
        return ray.get([w.where.remote() for w in self._workers.values()])

    def _event(self, kind: str, **fields: Any) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / EVENTS).open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"time": round(time.time(), 3), "event": kind, **fields}) + "\n")


def _name(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"
