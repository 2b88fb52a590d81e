"""Where the stages' independent work runs with `cluster.kind: ray`: Ray actors, one per GPU, each holding its
own `Models` (models.build on the worker, from the config alone), so a model loads once per GPU per film.

A task is a plain module-level function `fn(models, *args)` that needs nothing but models: a clip candidate's
render, a cast item's sketches, a candidate's scores. `Models.map(fn, calls)` runs such tasks here, one after the
other, with kind local, or hands them to `RayPool.map` with kind ray. Either way the results come back in the
order of `calls`, so the stage that consumes them writes the same files in the same order: the driver stays the
run folder's only writer (workers return frames, images and scores; no shared file system), and the film's
bytes do not depend on how many workers there are.
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
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from animagent.config import Config
from animagent.errors import MissingError

if TYPE_CHECKING:
    from animagent.models import Role

log = logging.getLogger(__name__)
R = TypeVar("R")
INSTALL = "pip install 'animagent[ray]'"
EVENTS = "events.jsonl"  # in the run's logs/ folder, beside the stages' progress events
IN_FLIGHT = 2  # tasks queued per worker: the next one is there while the driver writes the last one's result


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


class Worker:
    """One Ray actor on one GPU: the backends it was asked for stay loaded until released."""

    def __init__(self, config_json: str, logs: str):
        from animagent.models import Models

        self.models = Models(Config.model_validate_json(config_json), Path(logs))  # its `map` is never called

    def where(self) -> dict[str, Any]:
        """Where this worker runs, once its node is known to hold every model the config names."""
        import ray

        from animagent.weights import ensure_present

        node = ray.util.get_node_ip_address()
        try:
            ensure_present(self.models.config)
        except MissingError as exc:
            raise MissingError(f"Ray node {node}: {exc}") from None
        return {"pid": os.getpid(), "node": node, "gpus": ray.get_gpu_ids()}

    def run(self, fn: Callable[..., Any], args: tuple) -> tuple[Any, float, float]:
        started = time.time()
        value = fn(self.models, *args)
        return value, started, time.time()

    def release(self, roles: tuple[str, ...]) -> None:
        self.models.release(*roles)  # type: ignore[arg-type]


class RayPool:
    """The workers of one run: connected and started on the first `map`, one per GPU of the cluster."""

    def __init__(self, config: Config, logs: Path):
        self.config, self.logs = config, logs
        self._workers: dict[int, Any] = {}  # worker number -> actor handle (dead ones are dropped)
        self._connected = False  # this pool called ray.init (a caller's own Ray session is left as it was)

    def map(self, fn: Callable[..., R], calls: Sequence[tuple]) -> Iterator[R]:
        """`fn(models, *call)` for each call, on the workers; the results in the order of `calls`."""
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        if not calls:
            return
        if not self._workers:
            self._start()
        name = f"{fn.__module__}.{fn.__qualname__}"
        queue, attempts = deque(range(len(calls))), [0] * len(calls)
        pending: dict[Any, tuple[int, int]] = {}  # object ref -> (call index, worker number)
        done: dict[int, R] = {}
        load = dict.fromkeys(self._workers, 0)
        following = 0
        while following < len(calls):
            while queue and (idle := [w for w in self._workers if load[w] < IN_FLIGHT]):
                n = min(idle, key=lambda w: (load[w], w))
                i = queue.popleft()
                pending[self._workers[n].run.remote(fn, calls[i])] = (i, n)
                load[n] += 1
            if following not in done:
                if not pending:
                    raise MissingError(f"every Ray worker died; {name} has {len(queue)} task(s) left")
                [ref], _ = ray.wait(list(pending), num_returns=1)
                i, n = pending.pop(ref)
                load[n] -= 1
                try:
                    value, started, ended = ray.get(ref)
                except RayTaskError as exc:  # the task itself failed: its own error, as raised on the worker
                    log.error("%s failed on Ray worker %d", name, n)
                    raise exc.cause from None
                except RayActorError as exc:  # the worker died: its tasks go to the others
                    attempts[i] += 1
                    if attempts[i] > self.config.cluster.max_retries:
                        raise MissingError(f"{name} lost its Ray worker {attempts[i]} times (last: worker {n}); "
                                           f"cluster.max_retries is {self.config.cluster.max_retries}") from exc
                    if self._workers.pop(n, None) is not None:
                        log.warning("Ray worker %d died (%s); its tasks go to the other workers", n,
                                    type(exc).__name__)
                    self._event("retry", fn=name, call=i, worker=n, attempt=attempts[i])
                    queue.appendleft(i)
                    continue
                self._event("task", fn=name, call=i, worker=n, started=round(started, 3), ended=round(ended, 3))
                done[i] = value
            while following in done:
                yield done.pop(following)
                following += 1

    def release(self, *roles: Role) -> None:
        """Free `roles` on every worker (the recipe's release schedule, as in the driver)."""
        import ray
        from ray.exceptions import RayActorError

        for n, worker in list(self._workers.items()):
            try:
                ray.get(worker.release.remote(roles))
            except RayActorError:  # died between two passes: nothing of it to free, and no task for it
                log.warning("Ray worker %d died; the next tasks go to the other workers", n)
                del self._workers[n]

    def close(self) -> None:
        import ray

        for worker in self._workers.values():
            ray.kill(worker)
        self._workers = {}
        if self._connected:
            ray.shutdown()  # a Ray instance started for this run stops with it; a joined cluster keeps running
            self._connected = False

    def _start(self) -> None:
        import ray

        cluster = self.config.cluster
        started = time.perf_counter()
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
        try:
            places = ray.get([w.where.remote() for w in self._workers.values()])
        except ray.exceptions.RayTaskError as exc:  # a node without the weights, named
            raise exc.cause from None
        for n, place in enumerate(places):
            self._event("worker", worker=n, **place)
        log.info("Ray: %d workers in %.1f s", gpus, time.perf_counter() - started)

    def _event(self, kind: str, **fields: Any) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / EVENTS).open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"time": round(time.time(), 3), "event": kind, **fields}) + "\n")
