"""scripts/project_cluster.py on the measured default film (docs/benchmarks): the projection gains from a second
GPU, never gets faster with fewer GPUs, never beats the driver's own serial chain, and its 1-GPU stage-major
figure stays near the measured film. Pure Python, no torch."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "project_cluster.py"


@pytest.fixture(scope="module")
def pc():
    spec = importlib.util.spec_from_file_location("project_cluster", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["project_cluster"] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def work(pc):
    return pc.film_work(json.loads(pc.BENCH.read_text(encoding="utf-8")))


def test_the_work_is_the_measured_film(pc, work):
    assert len(work.shots) == 8 and all(len(s.renders) == 3 for s in work.shots)
    assert len(work.sketches) == len(work.cast_picks) == 5
    assert pc.serial_sum(work) == pytest.approx(work.measured_s, abs=0.1)  # the parts add up to the film


@pytest.mark.parametrize("driver_gpu", ["shared", "own"])
def test_more_gpus_are_faster_down_to_the_drivers_chain(pc, work, driver_gpu):
    runs = [pc.simulate(work, n, driver_gpu=driver_gpu) for n in pc.GPUS]
    walls = [r.wall_s for r in runs]
    assert walls[1] < walls[0]  # a second GPU helps
    assert all(b <= a + 1e-6 for a, b in zip(walls, walls[1:]))  # monotone
    for r in runs:
        assert r.wall_s >= r.driver_busy_s - 1e-6  # nothing beats the driver's serial chain
    assert runs[-1].bound == "driver chain"


def test_one_gpu_stage_major_is_near_the_measured_film(pc, work):
    result = pc.project(work)
    assert abs(result["check_error"]) < 0.05
    assert [r["gpus"] for r in result["rows"]] == list(pc.GPUS)


def test_pipelining_never_loses(pc, work):
    for n in pc.GPUS:
        assert pc.simulate(work, n).wall_s <= pc.simulate(work, n, pipelined=False).wall_s + 1e-6


def test_review_calls_group_by_shot(pc):
    short, long_ = 0.5, 2.5
    calls = [long_] * 4 + [short, short] + [long_] * 5 + [short] + [long_] * 4 + [short]  # shot 2 had a repair
    groups, repaired = pc.split_review_calls(calls, shots=3, verdicts=4, repairs=1)
    assert repaired == (1,) and [len(g) for g in groups] == [6, 6, 5]
