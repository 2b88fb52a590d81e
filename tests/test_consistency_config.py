"""Config of the consistency engine: per-profile values, bounds a director question can carry, the segmenter kinds."""

from __future__ import annotations

import pytest

from animagent.config import MAX_DIRECTOR_IMAGES, load_config
from animagent.errors import InputError


def test_the_image_bound_is_the_one_vllm_reserves_for():
    from animagent.backends.director_vllm import MAX_IMAGES_PER_PROMPT

    assert MAX_DIRECTOR_IMAGES == MAX_IMAGES_PER_PROMPT


@pytest.mark.parametrize("profile", ["tiny", "default", "lowvram"])
def test_every_profile_has_candidates_and_a_repair_round(profile):
    config = load_config(profile)
    assert config.cast.candidates > 1 and config.draw.candidates > 1 and config.animator.candidates > 1
    assert config.review.max_rounds >= 1 and 1 < config.animator.top_k <= config.animator.candidates
    assert config.animator.top_k * config.animator.frames_shown <= MAX_DIRECTOR_IMAGES


@pytest.mark.parametrize("override, message", [
    ("animator.top_k=4", "exceeds animator.candidates"),
    ("animator.frames_shown=5", "images one director question may carry"),
    ("animator.kind=animatediff", "needs animator.model=animatediff_sdxl"),
    ("segmenter.kind=segment_anything", "needs segmenter.checkpoint"),
    ("limits.max_characters=8", "leaves no room for the keyframe"),
    ("cast.candidates=9", "cast.candidates"),
    ("review.max_rounds=5", "review.max_rounds"),
])
def test_settings_a_director_question_or_a_loop_could_not_honour_are_refused(override, message):
    with pytest.raises(InputError, match=message):
        load_config("default", overrides=[override])


def test_animatediff_is_selected_by_kind_and_model():
    config = load_config("tiny", overrides=["animator.kind=animatediff", "animator.model=animatediff_sdxl"])
    assert config.animator.kind == "animatediff"


def test_segment_anything_accepts_only_an_official_checkpoint(tmp_path):
    from animagent.backends.segmenter_segment_anything import CHECKPOINTS, checkpoint_type

    forged = tmp_path / "sam_vit_h_4b8939.pth"
    forged.write_bytes(b"a pickle that only pretends to be SAM")
    with pytest.raises(InputError, match="not an official SAM checkpoint"):
        checkpoint_type(forged)
    with pytest.raises(InputError, match="does not exist"):
        checkpoint_type(tmp_path / "absent.pth")
    assert sorted(t for t, _ in CHECKPOINTS.values()) == ["vit_b", "vit_h", "vit_l"]


def test_segment_anything_segmenter_masks_a_box(tmp_path, monkeypatch):
    """Needs the `segment-anything` package and torchvision: a GPU machine's environment, not this CPU one."""
    pytest.importorskip("torchvision", reason="segment-anything needs torchvision, which is not installed here")
    pytest.importorskip("segment_anything", reason="the segment-anything package is not installed here")
    import numpy as np
    import torch
    from PIL import Image
    from segment_anything import sam_model_registry

    from animagent.backends import segmenter_segment_anything as module
    from animagent.config import Config
    from animagent.runfolder import sha256_file

    checkpoint = tmp_path / "sam_vit_b.pth"
    torch.save(sam_model_registry["vit_b"](checkpoint=None).state_dict(), checkpoint)  # random, official layout
    monkeypatch.setitem(module.CHECKPOINTS, sha256_file(checkpoint), ("vit_b", checkpoint.name))
    segmenter = module.SegmentAnythingSegmenter(Config(device="auto", dtype="float32"), checkpoint)
    mask = segmenter.mask(Image.new("RGB", (96, 64), (90, 90, 90)), (8, 12, 40, 50))
    assert mask.dtype == np.bool_ and mask.shape == (64, 96)
