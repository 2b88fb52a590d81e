"""SVDAnimator on the tiny SVD-XT, on CPU, and the motion table."""

from __future__ import annotations

from typing import get_args

import numpy as np
import pytest
from PIL import Image

from animagent.artifacts import Motion
from animagent.config import Config


@pytest.fixture(scope="module")
def animator(tiny_model):
    from animagent.backends.animator_svd import SVDAnimator

    tiny_model("svd_xt")
    config = Config(
        device="cpu", dtype="float32", weights={"flavor": "tiny", "root": str(tiny_model.root)},
        animator={"width": 96, "height": 64, "frames": 4, "steps": 2, "decode_chunk_size": 2},
    )
    animator = SVDAnimator(config, tiny_model.root)
    yield animator
    animator.close()


def _keyframe(width: int, height: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8))


def _stack(frames: list[Image.Image]) -> np.ndarray:
    return np.stack([np.asarray(f, dtype=np.float32) for f in frames])


def test_motion_table_covers_every_motion_in_order_of_strength() -> None:
    from animagent.backends.motion import SVD as MOTION_TABLE

    assert list(MOTION_TABLE) == list(get_args(Motion))
    rows = list(MOTION_TABLE.values())
    buckets = [r.motion_bucket_id for r in rows]
    assert buckets == sorted(set(buckets)) and 0 <= buckets[0] and buckets[-1] <= 255
    noise = [r.noise_aug_strength for r in rows]
    assert noise == sorted(noise) and noise[0] >= 0
    assert all(r.fps >= 2 for r in rows)  # the pipeline conditions on fps - 1


@pytest.mark.parametrize("size", [(200, 64), (40, 100), (96, 64)])
def test_animate_returns_the_configured_frames_at_the_configured_size(animator, size) -> None:

    frames = animator.animate(_keyframe(*size), "", "moderate", 1.0, seed=1)
    assert len(frames) == 4
    assert all(f.size == (96, 64) and f.mode == "RGB" for f in frames)


def test_motion_params_change_the_clip(animator) -> None:

    keyframe = _keyframe(96, 64)
    still = _stack(animator.animate(keyframe, "", "still", 1.0, seed=2))
    assert np.array_equal(_stack(animator.animate(keyframe, "", "still", 1.0, seed=2)), still)
    assert not np.array_equal(_stack(animator.animate(keyframe, "", "intense", 1.0, seed=2)), still)
    assert not np.array_equal(_stack(animator.animate(keyframe, "", "still", 1.0, seed=3)), still)


def test_compile_transformer_blocks_compiles_every_transformer_block_and_nothing_else(tiny_model) -> None:
    from diffusers import UNetSpatioTemporalConditionModel
    from diffusers.models.attention import BasicTransformerBlock, TemporalBasicTransformerBlock

    from animagent.backends.animator_svd import compile_transformer_blocks

    unet = UNetSpatioTemporalConditionModel.from_pretrained(tiny_model("svd_xt") / "unet", variant="fp16")
    blocks = [m for m in unet.modules() if isinstance(m, (BasicTransformerBlock, TemporalBasicTransformerBlock))]
    compile_transformer_blocks(unet)  # wraps only: compilation happens on the first call
    compiled = [m for m in unet.modules() if m._compiled_call_impl is not None]
    assert {type(m) for m in blocks} == {BasicTransformerBlock, TemporalBasicTransformerBlock}
    assert compiled == blocks


def test_compiling_the_animator_without_triton_fails_before_any_work(tiny_all, tmp_path) -> None:
    from animagent.errors import MissingError
    from animagent.runfolder import RunFolder
    from animagent.runs import make_film

    with pytest.raises(MissingError, match="gpu.compile_animator=false"):
        make_film(None, profile="tiny", out=tmp_path, script="tests/data/two_shots.json",
                  overrides=[f"weights.root={tiny_all}", "gpu.compile_animator=true"])
    assert list(RunFolder(tmp_path).manifest.steps) == []  # refused before any work: nothing is written
