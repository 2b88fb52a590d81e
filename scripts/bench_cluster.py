"""What the Ray path adds per clip candidate, on one GPU: Ray's start, a worker's start, and each task's dispatch and
the trip of its frames back to the driver (a render), or out to the worker (its scoring), against the same work
done in-process.

The task stands in for an SVD render's output: 25 frames of 1024x576 made on the GPU and returned as PIL images
(44 MB a clip), which is what `animate.render_clip` returns. The model's own time is not in it (16.7 s a clip on
an H200, docs/benchmarks.md). Prints one JSON object.

    python scripts/bench_cluster.py --tasks 24
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def clip(seed: int, frames: int = 25, height: int = 576, width: int = 1024) -> list:
    import torch
    from PIL import Image

    device = "cuda" if torch.cuda.is_available() else "cpu"
    g = torch.Generator(device).manual_seed(seed)
    pixels = torch.randint(0, 256, (frames, height, width, 3), generator=g, device=device, dtype=torch.uint8)
    return [Image.fromarray(f) for f in pixels.cpu().numpy()]


class Worker:
    def run(self, seed: int) -> list:
        return clip(seed)

    def score(self, frames: list) -> int:
        return len(frames)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=24)
    parser.add_argument("--gpus", type=int, default=None, help="logical GPUs for Ray (a CPU check); default: the real ones")
    args = parser.parse_args()

    clip(0)  # CUDA initialised in-process, as the driver's animator would have it
    local = []
    for seed in range(args.tasks):
        t = time.perf_counter()
        frames = clip(seed)
        local.append(time.perf_counter() - t)
    assert len(frames) == 25

    import ray

    t = time.perf_counter()
    ray.init(address="local", num_gpus=args.gpus, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    ray_start = time.perf_counter() - t
    t = time.perf_counter()
    worker = ray.remote(num_gpus=1, num_cpus=0)(Worker).remote()
    ray.get(worker.run.remote(0))  # the worker's process, its CUDA context and a first task
    worker_start = time.perf_counter() - t
    remote = []
    for seed in range(args.tasks):
        t = time.perf_counter()
        frames = ray.get(worker.run.remote(seed))
        remote.append(time.perf_counter() - t)
    assert len(frames) == 25
    out = []  # a candidate's decoded frames sent to a worker for its scores
    for _ in range(args.tasks):
        t = time.perf_counter()
        assert ray.get(worker.score.remote(frames)) == 25
        out.append(time.perf_counter() - t)
    ray.shutdown()
    print(json.dumps({
        "tasks": args.tasks, "ray_start_s": round(ray_start, 2), "worker_start_s": round(worker_start, 2),
        "local_median_s": round(statistics.median(local), 4), "ray_median_s": round(statistics.median(remote), 4),
        "overhead_per_clip_s": round(statistics.median(remote) - statistics.median(local), 4),
        "overhead_share_of_a_16_7_s_clip": round((statistics.median(remote) - statistics.median(local)) / 16.7, 4),
        "frames_to_worker_median_s": round(statistics.median(out), 4),
    }))


if __name__ == "__main__":
    main()
