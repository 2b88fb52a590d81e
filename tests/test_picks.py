"""picks.json (the review page's "use this keyframe/clip"): the user's pick overrides the review's ranking or the
director's clip pick, enters the step key, and resume redoes only what depends on that shot's choice."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from animagent import runs
from animagent.artifacts import ClipReview, Picks, Verdict
from animagent.errors import InputError
from animagent.runfolder import RunFolder
from animagent.runs import make_film

SCRIPT = "tests/data/two_shots.json"


@pytest.fixture(scope="module")
def golden(tiny_all, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("golden-picks")
    make_film(None, profile="tiny", out=out, overrides=[f"weights.root={tiny_all}", "eval.auto=false"], script=SCRIPT)
    return out


def _copy(golden: Path, tmp_path: Path, picks: Picks) -> tuple[Path, dict[str, str]]:
    run_dir = tmp_path / "run"
    shutil.copytree(golden, run_dir)
    RunFolder(run_dir).write_model("picks.json", picks)
    return run_dir, {name: record.key for name, record in RunFolder(run_dir).manifest.steps.items()}


def _redone(run_dir: Path, keys: dict[str, str]) -> set[str]:
    return {name for name, record in RunFolder(run_dir).manifest.steps.items() if keys.get(name) != record.key}


def test_a_picked_clip_is_used_and_only_assembly_follows(golden, tmp_path):
    review = RunFolder(golden).read_model("clips/s01_k1/review.json", ClipReview)
    other = 1 - review.chosen
    run_dir, keys = _copy(golden, tmp_path, Picks(clips={"s01_k1": other}))
    runs.resume(run_dir)
    run = RunFolder(run_dir)
    assert _redone(run_dir, keys) == {"choose/s01_k1", "assemble"}
    assert run.sha("clips/s01_k1.mp4") == run.sha(f"clips/s01_k1/candidates/{other}.mp4")
    assert run.read_model("clips/s01_k1/review.json", ClipReview).chosen == other
    assert run.sha("film.mp4") != RunFolder(golden).sha("film.mp4")
    assert run.sha("clips/s01_k2.mp4") == RunFolder(golden).sha("clips/s01_k2.mp4")

    runs.resume(run_dir)  # the pick is part of the key: nothing more to do
    assert _redone(run_dir, keys) == {"choose/s01_k1", "assemble"}
    assert {n: r.key for n, r in RunFolder(run_dir).manifest.steps.items()} == {
        n: r.key for n, r in run.manifest.steps.items()}


def test_a_picked_keyframe_is_used_and_its_shot_is_redone(golden, tmp_path):
    verdict = RunFolder(golden).read_model("keyframes/s01_k2/verdict.json", Verdict)
    other = 1 - verdict.chosen
    run_dir, keys = _copy(golden, tmp_path, Picks(keyframes={"s01_k2": other}))
    runs.resume(run_dir)
    run = RunFolder(run_dir)
    picked = run.read_model("keyframes/s01_k2/verdict.json", Verdict)
    assert picked.chosen == other and picked.ranking == verdict.ranking  # the ranking is kept, the pick wins
    assert run.sha("keyframes/s01_k2.png") == run.sha(picked.candidates[other].rounds[-1].image)
    redone = _redone(run_dir, keys)
    assert {"review/s01_k2", "assemble"} <= redone
    assert all("s01_k2" in name or name == "assemble" for name in redone)  # the first shot is untouched


def test_a_pick_of_a_candidate_that_does_not_exist_is_refused(golden, tmp_path):
    run_dir, keys = _copy(golden, tmp_path, Picks(clips={"s01_k1": 7}))
    with pytest.raises(InputError, match=r"picks.json picks clip candidate 7 of shot s01_k1, which has 2"):
        runs.resume(run_dir)
    assert _redone(run_dir, keys) == set()
