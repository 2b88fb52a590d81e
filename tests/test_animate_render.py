"""The render step: each candidate encodes on a worker thread while the next renders, the step is recorded only
once every clip is written, a failed encode surfaces from the stage, and a kill during a worker's write resumes
to the same bytes."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from animagent import video
from animagent.artifacts import ClipCandidates, Keyframe, MotionChoice, Script
from animagent.backends.motion import SVD
from animagent.config import Config
from animagent.runfolder import RunFolder
from animagent.stages import animate
from tests.fakes import context

SCRIPT = Script.model_validate_json(Path("tests/data/two_shots.json").read_text())
SHOT = "s01_k1"
STEP = f"animate/{SHOT}"
CANDIDATES = 3
CONFIG = Config(animator={"kind": "svd", "candidates": CANDIDATES, "top_k": 1}, assemble={"preset": "ultrafast"})
FPS = SVD["gentle"].fps


class FakeAnimator:
    """Frames from the seed alone; logs when each render starts and ends."""

    def __init__(self, events: list[tuple[str, int]]):
        self.events = events
        self.count = 0

    def animate(self, image, prompt, motion, duration_s, seed: int) -> list[Image.Image]:
        i = self.count
        self.count += 1
        self.events.append(("render start", i))
        rng = np.random.default_rng(seed)
        frames = [Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)) for _ in range(5)]
        self.events.append(("render end", i))
        return frames

    def take_ladder(self) -> list[str]:
        return []


def _render(run: RunFolder, animator: FakeAnimator) -> None:
    run.write_image(f"keyframes/{SHOT}.png", Image.new("RGB", (128, 96), (90, 120, 200)))
    keyframe = Keyframe(shot=SHOT, image=f"keyframes/{SHOT}.png", prompt="a fox on a hill", seed=1)
    motion = MotionChoice(shot=SHOT, planned="gentle", motion="gentle", reason="calm",
                          parameters=dataclasses.asdict(SVD["gentle"]))
    ctx = context(run, CONFIG, animator=animator)
    animate.render(ctx, [animate.submit(ctx, SCRIPT, keyframe, motion)])


def _log_encodes(monkeypatch, events: list[tuple[str, int]], fail_at: int | None = None, before=None) -> None:
    """Patch video.write_video to log each encode; the `fail_at`-th raises; `before(i)` runs first."""
    real = video.write_video
    calls = []

    def write_video(frames, path, **kw):
        i = len(calls)
        calls.append(i)
        events.append(("encode start", i))
        if before is not None:
            before(i)
        if i == fail_at:
            raise RuntimeError(f"encoder failed on candidate {i}")
        real(frames, path, **kw)
        events.append(("encode end", i))

    monkeypatch.setattr(video, "write_video", write_video)


def test_clips_are_the_serial_encodes_and_recorded_once_all_are_written(tmp_path, monkeypatch):
    events: list[tuple[str, int]] = []
    _log_encodes(monkeypatch, events)
    run = RunFolder(tmp_path / "run")
    _render(run, FakeAnimator(events))
    monkeypatch.undo()

    rels = [f"clips/{SHOT}/candidates/{i}.mp4" for i in range(CANDIDATES)]
    assert set(run.manifest.steps[STEP].outputs) == {*rels, f"clips/{SHOT}/candidates.json"}
    candidates = run.read_model(f"clips/{SHOT}/candidates.json", ClipCandidates)
    replay = FakeAnimator([])
    for i, clip in enumerate(candidates.clips):  # byte for byte what encoding each clip in turn gives
        serial = tmp_path / f"serial-{i}.mp4"
        frames = replay.animate(None, None, None, None, clip.seed)
        video.write_video([np.asarray(f.convert("RGB")) for f in frames], serial, fps=FPS,
                          crf=CONFIG.assemble.crf, preset=CONFIG.assemble.preset)
        assert run.path(clip.video).read_bytes() == serial.read_bytes()
    # At most one encode in flight: candidate i's encode ends before candidate i + 2 starts rendering.
    for i in range(CANDIDATES - 2):
        assert events.index(("encode end", i)) < events.index(("render start", i + 2))
    assert run.stray_temp_files() == []


def test_a_clip_encodes_while_the_next_renders(tmp_path, monkeypatch):
    """Encode i waits until render i + 1 has started: done one after the other, it would wait forever."""
    events: list[tuple[str, int]] = []

    def until_next_render(i: int) -> None:
        if i + 1 < CANDIDATES:
            assert next_render[i + 1].wait(timeout=30), f"candidate {i + 1} did not render while {i} encoded"

    class SignallingAnimator(FakeAnimator):
        def animate(self, image, prompt, motion, duration_s, seed):
            next_render[self.count].set()
            return super().animate(image, prompt, motion, duration_s, seed)

    next_render = [threading.Event() for _ in range(CANDIDATES)]
    _log_encodes(monkeypatch, events, before=until_next_render)
    run = RunFolder(tmp_path)
    _render(run, SignallingAnimator(events))
    assert STEP in run.manifest.steps


@pytest.mark.parametrize("fail_at", range(CANDIDATES))
def test_a_failed_encode_surfaces_and_the_step_is_not_recorded(tmp_path, monkeypatch, fail_at):
    events: list[tuple[str, int]] = []
    _log_encodes(monkeypatch, events, fail_at=fail_at)
    run = RunFolder(tmp_path)
    with pytest.raises(RuntimeError, match=f"encoder failed on candidate {fail_at}"):
        _render(run, FakeAnimator(events))

    assert STEP not in run.manifest.steps and STEP not in RunFolder(tmp_path).manifest.steps
    assert not run.exists(f"clips/{SHOT}/candidates/{fail_at}.mp4")
    assert not run.exists(f"clips/{SHOT}/candidates.json")
    assert run.stray_temp_files() == []
    # The failure stops the shot at the next candidate: no later clip is rendered or encoded.
    assert ("render start", fail_at + 2) not in events and ("encode start", fail_at + 1) not in events


@pytest.mark.parametrize("write", [2, 3, 4])  # the writes of candidates 0, 1 and 2 (write 1 is the keyframe)
def test_killed_while_the_worker_writes_then_resumed_gives_the_same_clips(tmp_path, write):
    whole = RunFolder(tmp_path / "whole")
    _render(whole, FakeAnimator([]))

    run_dir = tmp_path / "run"
    child = ("from pathlib import Path; from animagent.runfolder import RunFolder; "
             "from tests.test_animate_render import FakeAnimator, _render; "
             f"run = RunFolder(Path({str(run_dir)!r}))\n"
             "with run.lock(): _render(run, FakeAnimator([]))")
    killed = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "ANIMAGENT_FAULT": f"kill@write:{write}"})
    assert killed.returncode == -9, killed.stderr[-500:]
    assert STEP not in RunFolder(run_dir).manifest.steps

    run = RunFolder(run_dir)
    with run.lock():
        _render(run, FakeAnimator([]))
    assert run.manifest.steps[STEP].outputs == whole.manifest.steps[STEP].outputs
    assert run.stray_temp_files() == []
