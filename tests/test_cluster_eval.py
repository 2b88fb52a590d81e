"""Eval's measurements as Models.map tasks: with kind local (fakes, no Ray) the encoders see the same batches in
the same order as when eval measured in place, and every task goes through the seam; on a real Ray cluster of
this machine (CPU, two logical GPUs, 127.0.0.1) `animagent eval` of a finished tiny run runs them on the workers
and writes the same scorecard.json and report.html bytes as the local eval. The Ray test is skipped where Ray is
not installed (pip install 'animagent[ray]')."""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from animagent.artifacts import Takes
from animagent.models import Models
from animagent.stages import Context
from animagent.stages.evaluate import REPORT, SCORECARD, evaluate
from tests.raycluster import ENV
from tests.test_evaluate import StyleDirector, synthetic_run

REPO = Path(__file__).resolve().parents[1]


class RecordingEncoder:
    """Features from pixels (images) and from text lengths (texts); every batch it is given is logged."""

    def __init__(self, name: str, log: list):
        self.name, self.log = name, log

    def images(self, images):
        self.log.append((self.name, "images", [hashlib.sha256(i.convert("RGB").tobytes()).hexdigest() for i in images]))
        return np.stack([np.asarray(i.convert("RGB").resize((8, 8)), dtype=np.float32).ravel() + 1.0 for i in images])

    def texts(self, texts):
        self.log.append((self.name, "texts", list(texts)))
        return np.stack([np.full(192, len(t) + k, dtype=np.float32) for k, t in enumerate(texts)])


class BoxSegmenter:
    def mask(self, image, box):
        x0, y0, x1, y1 = box
        mask = np.zeros((image.height, image.width), dtype=bool)
        mask[y0:y1, x0:x1] = True
        return mask


class MappingModels(Models):
    """Models whose `map` logs each task's function before running it in place (kind local)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tasks: list[str] = []

    def map(self, fn, calls):
        self.tasks += [fn.__name__] * len(calls)
        return super().map(fn, calls)


def _sha(images) -> list[str]:
    return [hashlib.sha256(i.convert("RGB").tobytes()).hexdigest() for i in images]


def test_local_eval_measures_the_same_batches_in_the_same_order_through_the_seam(tmp_path):
    from PIL import Image

    from animagent import video
    from animagent.crops import box_pixels, masked_crop

    run, script, cast, keyframes, clips, config = synthetic_run(tmp_path / "run", tmp_path / "weights")
    log: list = []
    models = MappingModels(config, run.path("logs"), loaded={
        "embedder": RecordingEncoder("clip", log), "dino": RecordingEncoder("dino", log), "segmenter": BoxSegmenter(),
        "director": StyleDirector(itertools.cycle(["anime"]))})
    card = evaluate(Context(run, config, models, Takes()), script, cast, keyframes, clips)

    # what eval measured before its tasks went through Models.map, batch for batch
    images = [run.read_image(k.image) for k in keyframes]
    frames = [[Image.fromarray(f) for f in video.read_frames(run.path(c.video))] for c in clips]
    crops: dict[str, list[Image.Image]] = {}
    for image, shot in zip(images, script.shots()):
        for p in shot.characters:  # BoxSegmenter's mask is the box itself: the plain box crop
            mask = np.zeros((image.height, image.width), dtype=bool)
            x0, y0, x1, y1 = pixels = box_pixels(p.box, image.width, image.height)
            mask[y0:y1, x0:x1] = True
            crops.setdefault(p.character, []).append(masked_crop(image, mask, pixels))
    sheets = {s.character: run.read_image(s.image) for s in cast.characters}
    expected = [("clip", "images", _sha(images)), ("clip", "texts", [s.description for s in script.shots()])]
    for f in frames:
        expected += [("dino", "images", _sha(f)), ("clip", "images", _sha(f))]
    for character in ("mira", "tobin"):  # the owl is never placed: nothing is measured for it
        expected += [("clip", "images", _sha(crops[character])), ("clip", "images", _sha([sheets[character]]))]
    assert log == expected
    assert models.tasks == ["keyframe_features"] + ["measure_shot"] * 3 + ["character_identity"] * 2

    # the scorecard holds what those batches give
    from animagent import scoring

    enc = RecordingEncoder("check", [])
    m = scoring.clip_measures([np.asarray(i) for i in frames[0]], enc.images(frames[0]), enc.images(frames[0]))
    assert card.shots[0].subject_consistency == m.subject_consistency and card.shots[0].motion == m.motion
    mira = enc.images(crops["mira"])
    assert card.characters[0].identity == scoring.mean_pairwise_cosine(mira)
    assert card.characters[0].reference == float(np.mean(scoring.cosine_matrix(mira, enc.images([sheets["mira"]]))))
    assert card.characters[2].identity is None and card.characters[2].reference is None
    assert card.masked_crops and [s.style_class for s in card.shots] == ["anime"] * 3


# --- on a real Ray cluster ---------------------------------------------------------------------------------------

ray_installed = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                   reason="Ray is not installed: pip install 'animagent[ray]' to run the cluster tests")
SCRIPT = "tests/data/two_shots.json"
TASKS = {"keyframe_features", "measure_shot", "character_identity"}


def _eval(run_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "animagent.cli", "eval", str(run_dir)], capture_output=True,
                          text=True, env=ENV, cwd=REPO, timeout=300)


def _events(run_dir: Path, kind: str) -> list[dict]:
    lines = (run_dir / "logs" / "events.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == kind]


@ray_installed
def test_eval_on_ray_workers_writes_the_local_scorecard_and_report(tiny_all, ray_address, tmp_path):
    from animagent.runs import make_film

    finished = tmp_path / "finished"  # a tiny film without its eval: both evals start from the same folder
    make_film(None, profile="tiny", out=finished, overrides=[f"weights.root={tiny_all}", "eval.auto=false"],
              script=SCRIPT)
    local, ray = shutil.copytree(finished, tmp_path / "local"), shutil.copytree(finished, tmp_path / "ray")
    config = yaml.safe_load((ray / "config.yaml").read_text())
    config["cluster"].update(kind="ray", address=ray_address)
    (ray / "config.yaml").write_text(yaml.safe_dump(config))

    done = _eval(local)
    assert done.returncode == 0, done.stderr[-800:]
    started = time.perf_counter()
    done = _eval(ray)
    assert done.returncode == 0, done.stderr[-800:]
    print(f"tiny eval on Ray (2 logical GPUs, joined): {time.perf_counter() - started:.1f} s")

    for name in (SCORECARD, REPORT):
        assert (ray / name).read_bytes() == (local / name).read_bytes(), name
    workers = {w["worker"]: w["pid"] for w in _events(ray, "worker")}
    tasks = _events(ray, "task")
    assert {t["fn"].rsplit(".", 1)[1] for t in tasks} == TASKS and len(workers) == 2
    shots = [t for t in tasks if t["fn"].endswith("measure_shot")]
    assert len({t["task"] for t in shots}) == len(shots) == 2 and {t["worker"] for t in shots} == {0, 1}
    assert not _events(local, "task")  # kind local: the same tasks ran in the driver, nothing went to Ray
