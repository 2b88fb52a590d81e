"""The AnimateDiff animator on the tiny SDXL + motion adapter + IP-Adapter, on CPU: the keyframe steers the clip."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import numpy as np
import pytest
from PIL import Image

from animagent.artifacts import Motion
from animagent.config import Config


@pytest.fixture(scope="module")
def animator(tiny_model):
    from animagent.backends.animator_animatediff import AnimateDiffAnimator

    for name in ("sdxl_base", "sdxl_vae_fp16_fix", "ip_adapter_sdxl_vit_h", "animatediff_sdxl"):
        tiny_model(name)
    config = Config(
        device="cpu", dtype="float32", weights={"flavor": "tiny", "root": str(tiny_model.root)},
        painter={"width": 64, "height": 64, "steps": 2},
        animator={"kind": "animatediff", "width": 64, "height": 64, "frames": 4,
                  "steps": 2, "keyframe_scale": 1.0},
    )
    animator = AnimateDiffAnimator(config, tiny_model.root)
    yield animator
    animator.close()


def _keyframe(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (48, 80, 3), dtype=np.uint8))


def _stack(frames) -> np.ndarray:
    return np.stack([np.asarray(f, dtype=np.float32) for f in frames])


def test_motion_table_covers_every_motion():
    from animagent.backends.motion import ANIMATEDIFF as MOTION_TABLE
    from animagent.config import load_config
    from animagent.models import Models

    def motion_parameters(kind, motion):
        return Models(load_config("tiny", overrides=[f"animator.kind={kind}"]), Path(".")).motion(motion)

    assert list(MOTION_TABLE) == list(get_args(Motion))
    assert motion_parameters("animatediff", "intense") == {"phrase": "intense fast action, dynamic motion", "fps": 8}
    assert motion_parameters("svd", "still")["motion_bucket_id"] == 30


def test_clips_have_the_configured_frames_and_follow_the_keyframe_and_the_motion(animator):

    clip = animator.animate(_keyframe(0), "a fox on a hill", "gentle", 1.0, seed=1)
    assert len(clip) == 4 and all(f.size == (64, 64) and f.mode == "RGB" for f in clip)
    base = _stack(clip)
    assert np.array_equal(_stack(animator.animate(_keyframe(0), "a fox on a hill", "gentle", 1.0, seed=1)), base)
    assert not np.array_equal(_stack(animator.animate(_keyframe(1), "a fox on a hill", "gentle", 1.0, seed=1)),
                              base)  # the keyframe reaches the clip through IP-Adapter
    assert not np.array_equal(_stack(animator.animate(_keyframe(0), "a fox on a hill", "intense", 1.0, seed=1)),
                              base)
    assert animator.take_ladder() == []
