"""Clip candidates: scores on synthetic frame sequences, the ranking rule, and the choose step with a scripted director."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from animagent.artifacts import Clip, ClipCandidates, ClipReview, Script
from animagent.config import Config
from animagent.runfolder import RunFolder
from animagent.stages import animate
from tests.fakes import ScriptedDirector, context

SCRIPT = Script.model_validate_json(Path("tests/data/two_shots.json").read_text())


class PixelEncoder:
    """Frame features = the frame's pixels, downsampled: identical frames give identical features."""

    def images(self, images: list[Image.Image]) -> np.ndarray:
        return np.stack([np.asarray(i.convert("RGB").resize((8, 8)), dtype=np.float32).ravel() + 1.0
                         for i in images])


def _frames(kind: str, count: int = 13) -> list[np.ndarray]:
    """still: one frame repeated; pan: a gradient sliding one pixel per frame; jump: the pan, cut halfway to
    its negative (one transition far above the others: a spike)."""
    gradient = np.linspace(20, 230, 64, dtype=np.float32)
    base = np.repeat(np.repeat(gradient[None, :, None], 32, axis=0), 3, axis=2).astype(np.uint8)
    if kind == "still":
        return [base[:, :32].copy() for _ in range(count)]
    frames = [base[:, i:i + 32].copy() for i in range(count)]
    if kind == "jump":
        frames[count // 2:] = [255 - f for f in frames[count // 2:]]
    return frames


def _clip(i: int) -> Clip:
    return Clip(shot="s01_k1", video=f"clips/s01_k1/candidates/{i}.mp4", frames=13, fps=7, seed=i)


@pytest.mark.parametrize("motion, moves", [("gentle", False), ("still", True)])
def test_identical_frames_are_perfectly_consistent_and_do_not_move(motion, moves):
    scored = animate.score_clip(0, _clip(0), _frames("still"), motion, PixelEncoder(), PixelEncoder())
    assert scored.subject_consistency == pytest.approx(1.0) and scored.background_consistency == pytest.approx(1.0)
    assert scored.motion == 0.0 and not scored.spike and scored.moves is moves


def test_a_jump_is_a_spike_and_a_pan_is_not():
    pan = animate.score_clip(0, _clip(0), _frames("pan"), "gentle", PixelEncoder(), PixelEncoder())
    jump = animate.score_clip(1, _clip(1), _frames("jump"), "gentle", PixelEncoder(), PixelEncoder())
    assert not pan.spike and pan.moves and pan.subject_consistency < 1.0
    assert jump.spike and jump.max_change_z > 3.0


def test_rank_puts_spikes_and_frozen_clips_last_then_orders_by_consistency():
    scored = [animate.score_clip(i, _clip(i), _frames(kind), "lively", PixelEncoder(), PixelEncoder())
              for i, kind in enumerate(["jump", "still", "pan"])]
    assert animate.rank(scored) == [2, 1, 0]
    calm = [animate.score_clip(i, _clip(i), _frames(kind), "still", PixelEncoder(), PixelEncoder())
            for i, kind in enumerate(["pan", "still"])]
    assert animate.rank(calm) == [1, 0]  # "still" was asked for: the still clip is the more consistent


@pytest.mark.parametrize("count, shown, expected", [(25, 3, [0, 12, 24]), (4, 2, [0, 3]), (4, 1, [2]), (2, 3, [0, 0, 1])])
def test_frames_shown_span_the_clip(count, shown, expected):
    assert animate.frame_indices(count, shown) == expected


@pytest.mark.parametrize("top_k", [1, 2])
def test_choose_scores_ranks_and_asks_the_director_among_the_top_k(tmp_path, top_k):
    from animagent import video

    run = RunFolder(tmp_path)
    kinds = ["jump", "pan", "still"]
    clips = []
    for i, kind in enumerate(kinds):
        clip = _clip(i)
        with run.writing(clip.video) as tmp:
            video.write_video(_frames(kind), tmp, fps=7, crf=23, preset="veryfast")
        clips.append(clip)
    run.write_model("clips/s01_k1/candidates.json", ClipCandidates(shot="s01_k1", motion="gentle", clips=tuple(clips)))
    director = ScriptedDirector({"clip_pick": [{"reason": "steady", "choice": top_k - 1}]}, tmp_path / "d.jsonl")
    config = Config(animator={"candidates": 3, "top_k": top_k, "frames_shown": 3})
    rendered = [run.read_model("clips/s01_k1/candidates.json", ClipCandidates)]
    ctx = context(run, config, embedder=PixelEncoder(), dino=PixelEncoder(), director=director)
    (chosen,) = animate.choose_clips(ctx, SCRIPT, rendered)
    review = run.read_model("clips/s01_k1/review.json", ClipReview)
    assert review.ranking == (1, 2, 0) and review.candidates[0].spike  # frozen second, the jump last
    assert review.shown == review.ranking[:top_k] and review.chosen == review.shown[top_k - 1]
    assert chosen.video == "clips/s01_k1.mp4" and chosen.review == "clips/s01_k1/review.json"
    assert run.sha(chosen.video) == run.sha(clips[review.chosen].video) and chosen.seed == review.chosen
    if top_k == 1:
        assert director.requests == [] and review.pick.by == "only candidate"
    else:
        (_, messages, _), = director.requests
        assert len(messages[1].images) == top_k * 3 and review.pick.reason == "steady"
