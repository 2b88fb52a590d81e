"""End to end on the tiny profile: story → film.mp4 through every model's real loading code, on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from animagent import video
from animagent.artifacts import Script, ShotSpeech
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
    # each shot lasts its planned seconds, or its speech plus the pause (the speak stage's fitted length)
    speech = [ShotSpeech.model_validate_json((run / f"speech/{s.id}.json").read_text()) for s in shots]
    assert all(sp.frames >= round(s.duration_s * fps) for sp, s in zip(speech, shots))
    info = video.probe(run / "film.mp4")
    assert info.codec == "h264" and info.pix_fmt == "yuv420p"
    assert info.frames == sum(sp.frames for sp in speech) == film.frames
    assert info.subtitle_streams == 1
    assert info.audio_codec == "aac" and abs(info.audio_duration_s - info.duration_s) <= 1 / fps
    for cues in (video.read_subtitles(run / "film.mp4"), video.read_subtitles(run / "film.srt")):
        assert [c.text for c in cues] == [" ".join(s.narration.split()) for s in shots]
    start = 0.0
    for cue, sp in zip(video.read_subtitles(run / "film.srt"), speech):
        assert cue.start_s == pytest.approx(start, abs=0.002)
        assert cue.end_s == pytest.approx(start + (sp.speech_s or sp.duration_s), abs=0.002)
        start += sp.duration_s
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
        "refine", "style", "script", "pick", "verdict", "base", "context", "voice", "motion", "clip_pick",
        "keyframe_style",
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
            "review/s01_k2", "speak/s01_k1", "speak/s01_k2", "motion/s01_k1", "motion/s01_k2", "animate/s01_k1", "animate/s01_k2", "choose/s01_k1",
            "choose/s01_k2", "assemble", "eval"} == steps
    for name, record in run.manifest.steps.items():
        assert run.done(name, record.key)





def test_the_film_speaks_each_shot_in_its_cast_voice(script_film):
    """script.json holds the voices the director cast; each shot's speech lies under its frames, starting and
    ending within 40 ms of its subtitle cue (measured in the film's decoded audio)."""
    run = Path(script_film.run_dir)
    script = Script.model_validate_json((run / "script.json").read_text())
    assert script.narrator_voice and all(c.voice for c in script.characters)
    samples, rate = video.read_audio(run / "film.mp4")
    window = rate // 100  # 10 ms
    energy = np.sqrt(np.mean(samples[: len(samples) // window * window].reshape(-1, window) ** 2, axis=1))
    start = 0.0
    for shot, cue in zip(script.shots(), video.read_subtitles(run / "film.mp4")):
        speech = ShotSpeech.model_validate_json((run / f"speech/{shot.id}.json").read_text())
        assert speech.voice == (script.character(shot.speaker).voice if shot.speaker else script.narrator_voice)
        assert speech.speech_s > 0.5  # the tiny Kokoro says noise, as long as speech
        active = [i / 100 for i in range(round(start * 100), round((start + speech.duration_s) * 100))
                  if energy[i] > 1e-3]
        assert abs(active[0] - cue.start_s) <= 0.04 and abs(active[-1] + 0.01 - cue.end_s) <= 0.04
        start += speech.duration_s
