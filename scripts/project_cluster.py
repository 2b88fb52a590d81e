"""Project the bench film's wall time on 1, 2, 4 and 8 GPUs under the Ray executor (issue 13, §5).

A small discrete-event simulation, stdlib only, from the per-call durations one H200 measured for the default
film (`bench_gpu.py --phases pipeline`, full-size random weights, `scripts/bench_script.json`: 5 cast items,
8 shots, 3 clip candidates each). The executor it models:
  - one Ray worker per GPU; a worker loads a model the first time one of its tasks needs it and keeps it
    (sketches need the painter; clip renders and their scoring need the animator, CLIP and DINOv2), and
    compiles SVD's blocks before its first render;
  - the fanned-out tasks (each cast item's sketches, each clip candidate's render, each candidate's scores) go to
    the least-loaded worker (the least work queued or running) when submitted; among equals, worker 0 last when it
    shares the driver's GPU, then the lowest;
  - the driver runs the rest in film order: the cast picks (each after its item's sketches), draw ⇄ review shot
    by shot, each shot's motion, each shot's clip pick (after its candidates' scores), assembly. Pipelined, a
    shot's renders are submitted as soon as its keyframe is accepted and its motion chosen; stage-major (the
    measured order), after every shot is drawn and every motion chosen;
  - the driver encodes each rendered candidate on one CPU thread, in submission order, and submits its scoring
    when it is encoded;
  - the driver's models share GPU 0 with worker 0: worker 0 is paused while the driver uses the GPU
    (`shared`, conservative), or the driver has a GPU of its own (`own`, optimistic: N workers + 1).
This script owns the projection model and its assumptions; it imports nothing of animagent and no torch.

    python scripts/project_cluster.py [--bench docs/benchmarks/2026-11-21-levers-film-fixed.json] [--json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "docs" / "benchmarks" / "2026-11-21-levers-film-fixed.json"
GPUS = (1, 2, 4, 8)
ENCODE_S = 1.5  # one noise candidate's x264 encode: docs/benchmarks.md §4, "1–2 s each for noise" (not in the JSON)
EPS = 1e-9


# --- the work, from the measured film -------------------------------------------------------------------------

@dataclass(frozen=True)
class Shot:
    review_s: float  # draw ⇄ review on the driver: the draw, its repairs, its director calls, its share of host work
    motion_s: float  # the director's motion question
    renders: tuple[float, ...]  # one SVD render per clip candidate (worker tasks)
    pick_s: float  # the director's clip pick


@dataclass(frozen=True)
class Work:
    sketches: tuple[float, ...]  # one worker task per cast item
    cast_picks: tuple[float, ...]  # the director's pick of each item, on the driver
    cast_host_s: float  # per item: the cast stage's time besides loads and calls (image writes), driver CPU
    shots: tuple[Shot, ...]
    driver_cast_load_s: float  # the driver's director (the cast stage's loads)
    driver_draw_load_s: float  # the driver's draw models (the draw stage's loads)
    worker_painter_load_s: float  # a worker's painter, once, before its first sketch
    worker_animator_load_s: float  # a worker's animator and scorers, once, before its first render or score
    compile_s: float  # a worker's SVD block compile, once, before its first render
    encode_s: float  # a candidate's encode, driver CPU thread
    score_s: float  # a candidate's decode and CLIP/DINOv2 scores (worker task)
    assemble_s: float  # the film's encode and muxing, driver CPU
    measured_s: float  # the measured film (local, one GPU, stage-major)
    assumptions: tuple[str, ...]


def split_review_calls(
    calls: list[float], shots: int, verdicts: int, repairs: int
) -> tuple[list[list[float]], tuple[int, ...]]:
    """Draw ⇄ review's director calls grouped by shot, and the shots that had the repairs.

    Each shot asks `verdicts` verdicts (one more per repaired candidate), then the base description (the first shot
    only) and its context description. Which shots were repaired is not recorded: the grouping chosen is the one
    whose description calls (the last of each group) are the shortest, since a description is ~30 tokens and a
    verdict ~50."""
    best: tuple[float, list[list[float]], tuple[int, ...]] | None = None
    for repaired in itertools.combinations_with_replacement(range(shots), repairs):
        sizes = [verdicts + repaired.count(t) + (2 if t == 0 else 1) for t in range(shots)]
        if sum(sizes) != len(calls):
            continue
        bounds = list(itertools.accumulate(sizes, initial=0))
        groups = [calls[a:b] for a, b in zip(bounds, bounds[1:])]
        descriptions = sum(g[-1] for g in groups) + groups[0][-2]
        if best is None or descriptions < best[0]:
            best = (descriptions, groups, repaired)
    if best is None:
        raise ValueError(f"{len(calls)} director calls do not fit {shots} shots of {verdicts} verdicts each")
    return best[1], best[2]


def film_work(summary: dict) -> Work:
    """The film's work items and their durations, from a bench_gpu.py summary with a `pipeline` phase."""
    stages, config = summary["pipeline"]["stages"], summary["config"]
    cast, draw, animate, assemble = (stages[s] for s in ("cast", "draw", "animate", "assemble"))
    shots, per_shot = summary["shots"], config["candidates"]["animate"]
    notes = []

    sketches, cast_picks = cast["calls"]["sketch"], cast["calls"]["director"]
    cast_host = cast["wall_s"] - cast["load_s"] - sum(sketches) - sum(cast_picks)
    notes.append(f"cast: {len(sketches)} sketch tasks and {len(cast_picks)} picks as measured, in the same order; the "
                 f"stage's other {cast_host:.1f} s (image writes) is split evenly over the items, on the driver's CPU")

    directors, draws, repairs = draw["calls"]["director"], draw["calls"]["draw"], draw["calls"].get("repair", [])
    groups, repaired = split_review_calls(directors, shots, config["candidates"]["draw"], len(repairs))
    review_host = draw["wall_s"] - draw["load_s"] - sum(draws) - sum(repairs) - sum(directors)
    repair_of = {t: [] for t in range(shots)}
    for t, seconds in zip(repaired, repairs):
        repair_of[t].append(seconds)
    reviews = [draws[t] + sum(repair_of[t]) + sum(groups[t]) + review_host / shots for t in range(shots)]
    notes.append(f"draw ⇄ review: each shot's draw and director calls as measured, {len(directors)} director calls "
                 f"grouped by shot as {[len(g) for g in groups]} (the repairs are not recorded per shot: placed in "
                 f"shots {[t + 1 for t in repaired]}, where the short description calls close the groups); the "
                 f"stage's other {review_host:.1f} s (memory, SAM, CLIP, image writes) is split evenly over the "
                 f"shots, all of it on the driver's GPU")

    renders, animate_directors = animate["calls"]["animate"], animate["calls"]["director"]
    if len(renders) != shots * per_shot or len(animate_directors) != 2 * shots:
        raise ValueError(f"expected {shots * per_shot} renders and {2 * shots} director calls in animate")
    motions, picks = animate_directors[:shots], animate_directors[shots:]
    rest = animate["wall_s"] - animate["load_s"] - sum(renders) - sum(animate_directors)
    score = rest / len(renders) - ENCODE_S
    notes.append(f"animate: renders as measured; its director calls taken as the {shots} motions then the {shots} "
                 f"clip picks (the stage's passes); the stage's other {rest:.1f} s is {rest / len(renders):.2f} s a "
                 f"candidate, not timed apart: {ENCODE_S} s of encode (driver CPU thread; docs/benchmarks.md §4) "
                 f"and {score:.2f} s of decode and scoring (a worker task)")

    svd = summary["levers"]["svd"]
    lever = "compile_transformer_blocks (shipped)"
    compile_s = svd[f"{lever}_first_call_s"] - svd["steps_ms"][lever] / 1000  # the first call less one step
    notes.append(f"loads: the driver loads the cast stage's {cast['load_s']} s (the director) and the draw stage's "
                 f"{draw['load_s']} s; each worker loads the cast stage's {cast['load_s']} s before its first sketch "
                 f"and the animate stage's {animate['load_s']} s before its first render or score (per-model load "
                 f"times are not in the JSON: the stage's figure, which includes other models, so conservative), "
                 f"and compiles SVD's blocks once ({compile_s:.1f} s, the levers phase's first call; the measured "
                 f"film had paid it earlier in its process)")
    notes.append("Ray's own cost per task (dispatch, 44 MB of frames back per candidate) is taken as 0: not measured "
                 "yet (scripts/bench_cluster.py)")
    notes.append("not in the measured film, so not projected: planning (the script is given), speech (no voice), "
                 "evaluation (eval.auto=false)")

    it = iter(renders)
    return Work(
        sketches=tuple(sketches), cast_picks=tuple(cast_picks), cast_host_s=cast_host / len(sketches),
        shots=tuple(Shot(review_s=reviews[t], motion_s=motions[t], renders=tuple(itertools.islice(it, per_shot)),
                         pick_s=picks[t]) for t in range(shots)),
        driver_cast_load_s=cast["load_s"], driver_draw_load_s=draw["load_s"],
        worker_painter_load_s=cast["load_s"], worker_animator_load_s=animate["load_s"], compile_s=compile_s,
        encode_s=ENCODE_S, score_s=score, assemble_s=assemble["wall_s"],
        measured_s=summary["pipeline"]["wall_s"], assumptions=tuple(notes),
    )


def serial_sum(work: Work) -> float:
    """Every part one after the other, as the measured local run did them: the bookkeeping must give its wall."""
    return (work.driver_cast_load_s + sum(work.sketches) + sum(work.cast_picks) + work.cast_host_s * len(work.sketches)
            + work.driver_draw_load_s + sum(s.review_s + s.motion_s + s.pick_s for s in work.shots)
            + work.worker_animator_load_s
            + sum(sum(s.renders) + len(s.renders) * (work.encode_s + work.score_s) for s in work.shots)
            + work.assemble_s)


# --- the simulation -------------------------------------------------------------------------------------------

@dataclass(eq=False)
class Task:
    """A worker task. `kind` is sketch, render or score."""

    kind: str
    seconds: float
    end: float | None = None


@dataclass(eq=False)
class Worker:
    queue: list[Task] = field(default_factory=list)
    task: Task | None = None
    remaining: float = 0.0
    loaded: set[str] = field(default_factory=set)
    busy_s: float = 0.0

    def load(self) -> float:
        return self.remaining + sum(t.seconds for t in self.queue)


@dataclass(frozen=True)
class Projection:
    gpus: int
    pipelined: bool
    driver_gpu: str  # "shared" (GPU 0 with worker 0) or "own"
    wall_s: float
    driver_busy_s: float  # the driver's own serial chain: loads, picks, draw ⇄ review, motions, assembly
    driver_waiting_s: float  # the driver idle, waiting for worker results
    waiting_s: dict[str, float]  # of which for the cast's sketches, and for the clips' renders and scores
    worker_busy_s: tuple[float, ...]  # each worker's tasks, loads and compile included

    @property
    def bound(self) -> str:
        """The driver's own chain when it hardly waits for the workers (≤ 5 % of the wall), else the workers."""
        return "driver chain" if self.driver_waiting_s <= 0.05 * self.wall_s else "worker renders"


def driver_ops(work: Work, pipelined: bool) -> list[tuple]:
    """The driver's program: ("gpu" | "cpu", seconds), ("submit", [(render, score), ...] | [sketch, ...]) and
    ("wait", [task, ...], what for)."""
    sketches = [Task("sketch", s) for s in work.sketches]
    ops: list[tuple] = [("submit", sketches), ("gpu", work.driver_cast_load_s)]
    for task, pick in zip(sketches, work.cast_picks):
        ops += [("wait", [task], "cast"), ("cpu", work.cast_host_s), ("gpu", pick)]
    candidates = [[(Task("render", r), Task("score", work.score_s)) for r in shot.renders] for shot in work.shots]
    ops.append(("gpu", work.driver_draw_load_s))
    for shot, shot_candidates in zip(work.shots, candidates):
        ops.append(("gpu", shot.review_s))
        if pipelined:
            ops += [("gpu", shot.motion_s), ("submit", shot_candidates)]
    if not pipelined:
        ops += [("gpu", shot.motion_s) for shot in work.shots]
        ops += [("submit", shot_candidates) for shot_candidates in candidates]
    for shot, shot_candidates in zip(work.shots, candidates):
        ops += [("wait", [score for _, score in shot_candidates], "clips"), ("gpu", shot.pick_s)]
    ops.append(("cpu", work.assemble_s))
    return ops


def simulate(work: Work, gpus: int, pipelined: bool = True, driver_gpu: str = "shared") -> Projection:
    """The film's wall time on `gpus` workers: an event loop over the driver, the workers and the encoder thread."""
    ops = driver_ops(work, pipelined)
    workers = [Worker() for _ in range(gpus)]
    encodes: list[tuple[Task, Task]] = []  # rendered candidates to encode, in submission order
    encoding: tuple[Task, Task] | None = None
    encode_left = 0.0
    now, op_index, driver_left, driver_on_gpu, driver_busy = 0.0, 0, 0.0, False, 0.0
    driver_running = False
    waiting: dict[str, float] = {"cast": 0.0, "clips": 0.0}
    waited_since: float | None = None

    def submit(task: Task) -> None:
        """To the least-loaded worker; among equals worker 0 last when it shares the driver's GPU, then the lowest."""
        n = min(range(gpus), key=lambda n: (workers[n].load(), n == 0 and driver_gpu == "shared", n))
        workers[n].queue.append(task)

    def paused(n: int) -> bool:
        return driver_gpu == "shared" and n == 0 and driver_running and driver_on_gpu

    while True:
        # start whatever can start now
        while not driver_running and op_index < len(ops):
            kind, arg = ops[op_index][:2]
            if kind == "submit":
                for item in arg:
                    if isinstance(item, tuple):
                        submit(item[0])
                        encodes.append(item)
                    else:
                        submit(item)
            elif kind == "wait":
                if any(task.end is None for task in arg):
                    waited_since = now if waited_since is None else waited_since
                    break
                if waited_since is not None:
                    waiting[ops[op_index][2]] += now - waited_since
                    waited_since = None
            else:
                driver_running, driver_on_gpu, driver_left = True, kind == "gpu", arg
                driver_busy += arg
            op_index += 1
        for worker in workers:
            if worker.task is None and worker.queue:
                task = worker.task = worker.queue.pop(0)
                need = "painter" if task.kind == "sketch" else "animator"
                extra = 0.0
                if need not in worker.loaded:
                    worker.loaded.add(need)
                    extra += work.worker_painter_load_s if need == "painter" else work.worker_animator_load_s
                if task.kind == "render" and "compiled" not in worker.loaded:
                    worker.loaded.add("compiled")
                    extra += work.compile_s
                worker.remaining = task.seconds + extra
                worker.busy_s += worker.remaining
        if encoding is None and encodes and encodes[0][0].end is not None:
            encoding, encode_left = encodes.pop(0), work.encode_s

        # advance to the next event
        steps = [driver_left] if driver_running else []
        steps += [w.remaining for n, w in enumerate(workers) if w.task is not None and not paused(n)]
        steps += [encode_left] if encoding is not None else []
        if not steps:
            if op_index < len(ops) or any(w.task or w.queue for w in workers) or encodes:
                raise RuntimeError(f"the simulation is stuck at {now:.1f} s, op {op_index} {ops[op_index][0]}")
            break
        dt = max(min(steps), 0.0)
        now += dt
        for n, worker in enumerate(workers):
            if worker.task is not None and not paused(n):
                worker.remaining -= dt
                if worker.remaining <= EPS:
                    worker.task.end, worker.task = now, None
        if encoding is not None:
            encode_left -= dt
            if encode_left <= EPS:
                submit(encoding[1])
                encoding = None
        if driver_running:
            driver_left -= dt
            if driver_left <= EPS:
                driver_running = False

    return Projection(gpus=gpus, pipelined=pipelined, driver_gpu=driver_gpu, wall_s=now, driver_busy_s=driver_busy,
                      driver_waiting_s=now - driver_busy, waiting_s=waiting,
                      worker_busy_s=tuple(w.busy_s for w in workers))


def project(work: Work, gpus: tuple[int, ...] = GPUS) -> dict:
    """Every figure the report shows, per GPU count: pipelined with GPU 0 shared by the driver and worker 0, with
    GPU 0 left to the driver (N - 1 workers), with a driver GPU besides the N; stage-major with GPU 0 shared; and
    the check against the measured film."""
    rows = []
    one = simulate(work, 1).wall_s
    for n in gpus:
        shared, own = simulate(work, n), simulate(work, n, driver_gpu="own")
        left_out = simulate(work, n - 1, driver_gpu="own").wall_s if n > 1 else None
        rows.append({
            "gpus": n, "wall_s": round(shared.wall_s, 1), "speedup": round(one / shared.wall_s, 2),
            "gpu0_to_driver_wall_s": None if left_out is None else round(left_out, 1),
            "gpu0_to_driver_speedup": None if left_out is None else round(one / left_out, 2),
            "own_driver_gpu_wall_s": round(own.wall_s, 1), "own_driver_gpu_speedup": round(one / own.wall_s, 2),
            "stage_major_wall_s": round(simulate(work, n, pipelined=False).wall_s, 1),
            "driver_chain_s": round(shared.driver_busy_s, 1), "driver_waiting_s": round(shared.driver_waiting_s, 1),
            "waiting_s": {k: round(v, 1) for k, v in shared.waiting_s.items()},
            "worker_busy_s": [round(s, 1) for s in shared.worker_busy_s], "bound": shared.bound,
        })
    check = simulate(work, 1, pipelined=False)
    return {
        "measured_s": work.measured_s, "serial_sum_s": round(serial_sum(work), 1),
        "check_1_gpu_stage_major_s": round(check.wall_s, 1),
        "check_error": round(check.wall_s / work.measured_s - 1, 3),
        "assumptions": list(work.assumptions), "rows": rows,
    }


def markdown(result: dict, bench: str) -> str:
    lines = [f"Projection from `{bench}`. Assumptions:", ""]
    lines += [f"- {a}" for a in result["assumptions"]]
    lines += [
        "",
        f"Check: measured film (local, 1 GPU, stage-major) **{result['measured_s']} s**; its parts add up to "
        f"{result['serial_sum_s']} s; the model with Ray on 1 GPU, stage-major: "
        f"**{result['check_1_gpu_stage_major_s']} s** "
        f"({result['check_error']:+.1%}: + the worker's own loads and compile, − the encodes overlapped).",
        "",
        "Pipelined unless said. Speed-up against the first row (1 GPU, pipelined, shared). The driver's chain, its "
        "waits and the bound are the shared column's.",
        "",
        "| GPUs | GPU 0 shared by driver and worker 0 | speed-up | GPU 0 left to the driver (N − 1 workers) "
        "| speed-up | a driver GPU besides the N | speed-up | stage-major, GPU 0 shared | driver chain "
        "| driver waiting | bound |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["rows"]:
        left = ("—", "—") if r["gpu0_to_driver_wall_s"] is None else (
            f"{r['gpu0_to_driver_wall_s']:.1f} s", f"{r['gpu0_to_driver_speedup']:.2f}×")
        lines.append(
            f"| {r['gpus']} | **{r['wall_s']:.1f} s** | {r['speedup']:.2f}× | {left[0]} | {left[1]} "
            f"| {r['own_driver_gpu_wall_s']:.1f} s | {r['own_driver_gpu_speedup']:.2f}× "
            f"| {r['stage_major_wall_s']:.1f} s "
            f"| {r['driver_chain_s']:.1f} s | {r['driver_waiting_s']:.1f} s | {r['bound']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bench", type=Path, default=BENCH, help="a bench_gpu.py summary with a pipeline phase")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of markdown")
    args = parser.parse_args(argv)
    result = project(film_work(json.loads(args.bench.read_text(encoding="utf-8"))))
    try:
        shown = args.bench.resolve().relative_to(Path.cwd())
    except ValueError:
        shown = args.bench
    sys.stdout.write((json.dumps(result, indent=2) if args.json else markdown(result, str(shown))) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
