"""End to end on the tiny profile: story → film.mp4 through every model's real loading code, on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from animagent import video
from animagent.artifacts import Script
from animagent.runs import make_film

STORY = "examples/stories/lantern.txt"
TWO_SHOTS = "tests/data/two_shots.json"


@pytest.fixture(scope="module")
def story_film(tiny_all, tmp_path_factory):
    out = tmp_path_factory.mktemp("story-run")
    return make_film(STORY, profile="tiny", out=out, overrides=[f"weights.root={tiny_all}"])


@pytest.fixture(scope="module")
def script_film(tiny_all, tmp_path_factory):
    out = tmp_path_factory.mktemp("script-run")
    return make_film(None, profile="tiny", out=out, overrides=[f"weights.root={tiny_all}"], script=TWO_SHOTS)


def _check_film(film, fps=8):
    run = Path(film.run_dir)
    script = Script.model_validate_json((run / "script.json").read_text())
    shots = script.shots()
    info = video.probe(run / "film.mp4")
    assert info.codec == "h264" and info.pix_fmt == "yuv420p"
    assert info.frames == sum(round(s.duration_s * fps) for s in shots) == film.frames
    assert info.subtitle_streams == 1
    for cues in (video.read_subtitles(run / "film.mp4"), video.read_subtitles(run / "film.srt")):
        assert [c.text for c in cues] == [" ".join(s.narration.split()) for s in shots]
    start = 0.0
    for cue, shot in zip(video.read_subtitles(run / "film.srt"), shots):
        assert cue.start_s == pytest.approx(start, abs=0.002)
        start += shot.duration_s
    board = Image.open(f"{run}/storyboard.png").convert("RGB")
    columns = min(4, len(shots))
    assert board.width == columns * 128
    for i, shot in enumerate(shots):  # every shot's keyframe is pasted in its own tile
        keyframe = Image.open(f"{run}/keyframes/{shot.id}.png").convert("RGB").resize((128, 128))
        x, y = (i % columns) * 128, 0 if i < columns else None
        if y is not None:
            tile = board.crop((x, y, x + 128, y + 128))
            assert np.abs(np.asarray(tile, int) - np.asarray(keyframe, int)).mean() < 1.0
    return script


def test_story_to_film(story_film):
    script = _check_film(story_film)
    assert len(script.shots()) >= 1
    log = [json.loads(line) for line in Path(story_film.run_dir, "logs", "director.jsonl").read_text().splitlines()]
    # every decision of the tiny profile (candidates > 1 everywhere) goes to the director
    assert {r["task"] for r in log} == {
        "refine", "style", "script", "pick", "verdict", "base", "context", "motion", "clip_pick", "keyframe_style",
    }
    assert (Path(story_film.run_dir) / "report.html").is_file()  # eval runs at the end of `run`


def test_given_script_to_film(script_film):
    script = _check_film(script_film)
    assert [s.id for s in script.shots()] == ["s01_k1", "s01_k2"]
    log = [json.loads(line) for line in Path(script_film.run_dir, "logs", "director.jsonl").read_text().splitlines()]
    assert not {r["task"] for r in log} & {"refine", "style", "script"}  # no planning happened


def test_run_folder_is_complete_and_clean(script_film):
    from animagent.runfolder import RunFolder

    run = RunFolder(Path(script_film.run_dir))
    assert run.stray_temp_files() == []
    assert not (run.root / ".lock").exists()
    steps = set(run.manifest.steps)
    assert {"plan", "cast/characters/mira", "cast/characters/tobin", "cast/settings/hill", "pick/characters/mira",
            "pick/characters/tobin", "pick/settings/hill", "memory", "draw/s01_k1", "review/s01_k1", "draw/s01_k2",
            "review/s01_k2", "motion/s01_k1", "motion/s01_k2", "animate/s01_k1", "animate/s01_k2", "choose/s01_k1",
            "choose/s01_k2", "assemble", "eval"} == steps
    for name, record in run.manifest.steps.items():
        assert run.done(name, record.key)



