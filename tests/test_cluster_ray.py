"""cluster.kind ray on a real Ray cluster of this machine (CPU, two logical GPUs, 127.0.0.1): the tiny film is
byte-identical to the local one, two workers render at the same time, the first shot renders while the second is
drawn, a worker killed during a render is replaced and a killed driver resumes, both to the same bytes. Skipped where Ray is not installed (pip install
'animagent[ray]')."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from animagent.runfolder import RunFolder
from animagent.runs import make_film
from tests.raycluster import ENV

# Found, not imported: the drivers and workers are subprocesses, and this one stays free of Ray's state.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                reason="Ray is not installed: pip install 'animagent[ray]' to run the cluster tests")

SCRIPT = "tests/data/two_shots.json"


@pytest.fixture(scope="module")
def golden(tiny_all, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local")
    make_film(None, profile="tiny", out=out, overrides=[f"weights.root={tiny_all}"], script=SCRIPT)
    return out


def _argv(out: Path, root: Path, address: str) -> list[str]:
    return [sys.executable, "-m", "animagent.cli", "run", "--script", SCRIPT, "--profile", "tiny", "--cluster", "ray",
            "--set", f"cluster.address={address}", "--set", f"weights.root={root}", "--out", str(out)]


def _outputs(run_dir: Path) -> dict[str, str]:
    steps = RunFolder(run_dir).manifest.steps
    return {rel: sha for record in steps.values() for rel, sha in record.outputs.items()}


def _events(run_dir: Path, kind: str) -> list[dict]:
    path = run_dir / "logs" / "events.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    return [e for e in map(json.loads, lines) if e["event"] == kind]


def _wait_for_renders(proc: subprocess.Popen, out: Path) -> None:
    """Until the first shot's renders are handed out (they follow its motion step at once)."""
    while not any(e["step"].startswith("motion/") for e in _events(out, "step")):
        assert proc.poll() is None, proc.stderr.read()[-800:]
        time.sleep(0.02)


@pytest.fixture(scope="module")
def killed_worker(tiny_all, ray_address, tmp_path_factory) -> Path:
    """The tiny film on two workers, one of them killed -9 once the first shot's renders are handed out (one run
    serves four tests: Ray's start on two cores is slow)."""
    out = tmp_path_factory.mktemp("ray") / "run"
    started = time.perf_counter()
    proc = subprocess.Popen(_argv(out, tiny_all, ray_address), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ENV)
    _wait_for_renders(proc, out)
    os.kill(_events(out, "worker")[0]["pid"], signal.SIGKILL)  # its renders are in flight or queued on it
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-800:]
    print(f"tiny film on Ray (2 logical GPUs, a worker killed): {time.perf_counter() - started:.1f} s")
    return out


def test_the_ray_film_is_byte_identical_to_the_local_one(golden, killed_worker):
    assert _outputs(killed_worker) == _outputs(golden) and "film.mp4" in _outputs(golden)
    assert RunFolder(killed_worker).stray_temp_files() == [] and not (killed_worker / ".lock").exists()


def test_two_logical_gpus_work_at_the_same_time(killed_worker):
    workers = _events(killed_worker, "worker")
    assert sorted(g for w in workers for g in w["gpus"]) == [0, 1] and len({w["pid"] for w in workers}) == 2
    tasks = _events(killed_worker, "task")
    overlaps = [(a, b) for a in tasks for b in tasks
                if a["worker"] < b["worker"] and a["started"] < b["ended"] and b["started"] < a["ended"]]
    assert overlaps, tasks  # both workers were working at the same moment (the cast's sketches at least)
    assert {e["fn"].rsplit(".", 1)[1] for e in tasks} == {
        "sketch", "render_clip", "score_candidate", "keyframe_features", "measure_shot", "character_identity"}


def test_the_first_shot_renders_while_the_second_is_drawn(killed_worker):
    drawn = max(e["time"] for e in _events(killed_worker, "progress") if e["stage"] == "draw")  # the last shot's
    renders = [e for e in _events(killed_worker, "task") if e["fn"].endswith("render_clip")]
    assert min(e["started"] for e in renders) < drawn, (renders, drawn)


def test_a_killed_worker_s_renders_go_to_the_other_and_nothing_is_recorded_twice(killed_worker):
    retries = _events(killed_worker, "retry")
    assert retries and {r["worker"] for r in retries} == {0} and {r["attempt"] for r in retries} == {1}
    renders = [e for e in _events(killed_worker, "task") if e["fn"].endswith("render_clip")]
    assert len({e["task"] for e in renders}) == len(renders) == 4  # 2 shots × 2 candidates, each rendered once
    assert {e["worker"] for e in renders if e["task"] in {r["task"] for r in retries}} == {1}
    steps = [e["step"] for e in _events(killed_worker, "step")]
    assert len(steps) == len(set(steps)) and {"animate/s01_k1", "animate/s01_k2"} <= set(steps)


def test_the_driver_killed_during_a_render_resumes_to_the_same_film(golden, tiny_all, tmp_path):
    """With address auto: the driver starts a Ray of its own (2 logical GPUs), which dies with it; the resumed run
    (config.yaml says auto) starts another."""
    out = tmp_path / "ray"
    argv = [*_argv(out, tiny_all, "auto"), "--set", "cluster.gpus=2"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    _wait_for_renders(proc, out)
    proc.kill()
    proc.communicate(timeout=60)
    assert "assemble" not in RunFolder(out).manifest.steps
    first = {w["pid"] for w in _events(out, "worker")}
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in first):  # the driver's Ray, its workers included, went with it
        assert time.monotonic() < deadline, f"workers {first} outlived their driver"
        time.sleep(0.2)

    resumed = subprocess.run([sys.executable, "-m", "animagent.cli", "resume", str(out)], capture_output=True,
                             text=True, env=ENV, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-800:]
    assert _outputs(out) == _outputs(golden)
    assert RunFolder(out).stray_temp_files() == [] and not (out / ".lock").exists()
    assert len({w["pid"] for w in _events(out, "worker")} - first) == 2  # the resumed run's own workers


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_doctor_checks_every_node_of_the_cluster(tiny_all, ray_address, tmp_path):
    def doctor(root: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "animagent.cli", "doctor", "--profile", "tiny", "--set",
                               "cluster.kind=ray", "--set", f"cluster.address={ray_address}", "--set",
                               f"weights.root={root}"], capture_output=True, text=True, env=ENV, timeout=300)

    done = doctor(tiny_all)
    lines = " ".join(done.stdout.split())
    assert done.returncode == 0, done.stdout[-800:] + done.stderr[-800:]
    assert "worker 0 on 127.0.0.1: weights present" in lines and "worker 1 on 127.0.0.1: weights present" in lines
    empty = tmp_path / "no-weights"
    empty.mkdir()
    done = doctor(empty)
    lines = " ".join(done.stdout.split())
    assert done.returncode == 4 and "worker 1 on 127.0.0.1:" in lines and "weights make-tiny" in lines, lines[-800:]
