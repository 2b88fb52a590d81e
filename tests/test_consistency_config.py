"""Config of the consistency engine: per-profile values, bounds a director question can carry, the segmenter kinds."""

from __future__ import annotations

import pytest

from animagent.config import MAX_DIRECTOR_IMAGES, load_config
from animagent.errors import InputError


def test_the_image_bound_is_the_one_vllm_reserves_for():
    from animagent.backends.director_vllm import MAX_IMAGES_PER_PROMPT

    assert MAX_DIRECTOR_IMAGES == MAX_IMAGES_PER_PROMPT


@pytest.mark.parametrize("profile", ["tiny", "default", "lowvram", "fast"])
def test_every_profile_has_candidates_and_a_repair_round(profile):
    config = load_config(profile)
    assert config.cast.candidates > 1 and config.draw.candidates > 1 and config.animator.candidates > 1
    assert config.review.max_rounds >= 1 and 1 < config.animator.top_k <= config.animator.candidates
    assert config.animator.top_k * config.animator.frames_shown <= MAX_DIRECTOR_IMAGES


@pytest.mark.parametrize("override, message", [
    ("animator.top_k=4", "exceeds animator.candidates"),
    ("animator.frames_shown=5", "images one director question may carry"),
    ("segmenter.kind=segment_anything", "needs segmenter.checkpoint"),
    ("limits.max_characters=8", "leaves no room for the keyframe"),
    ("cast.candidates=9", "cast.candidates"),
    ("review.max_rounds=5", "review.max_rounds"),
])
def test_settings_a_director_question_or_a_loop_could_not_honour_are_refused(override, message):
    with pytest.raises(InputError, match=message):
        load_config("default", overrides=[override])


def test_the_animator_model_follows_its_kind():
    config = load_config("tiny", overrides=["animator.kind=animatediff"])
    assert (config.animator.kind, config.animator.model) == ("animatediff", "animatediff_sdxl")
    assert load_config("tiny").animator.model == "svd_xt"
    with pytest.raises(InputError, match="animator.model"):  # derived from the kind, not a setting
        load_config("tiny", overrides=["animator.model=svd_xt"])


def test_segment_anything_accepts_only_an_official_checkpoint(tmp_path):
    from animagent.backends.segmenter_segment_anything import CHECKPOINTS, checkpoint_type

    forged = tmp_path / "sam_vit_h_4b8939.pth"
    forged.write_bytes(b"a pickle that only pretends to be SAM")
    with pytest.raises(InputError, match="not an official SAM checkpoint"):
        checkpoint_type(forged)
    with pytest.raises(InputError, match="does not exist"):
        checkpoint_type(tmp_path / "absent.pth")
    assert sorted(t for t, _ in CHECKPOINTS.values()) == ["vit_b", "vit_h", "vit_l"]


class _Armed:
    """Unpickling this runs open(marker, "w"): the marker file shows whether a loader executed the payload."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _crafted_checkpoint(tmp_path):
    import torch

    marker, crafted = tmp_path / "payload-ran", tmp_path / "sam_vit_b_01ec64.pth"
    torch.save({"image_encoder.pos_embed": _Armed(marker)}, crafted)  # a real .pth zip with a reduce hook
    return marker, crafted


def test_segment_anything_refuses_a_crafted_pickle_checkpoint_before_unpickling_it(tmp_path):
    import pickle

    import torch

    from animagent.backends.segmenter_segment_anything import checkpoint_type

    marker, crafted = _crafted_checkpoint(tmp_path)
    with pytest.raises(InputError, match="not an official SAM checkpoint"):
        checkpoint_type(crafted)
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):  # the second guard, should a hash ever match
        torch.load(crafted, map_location="cpu", weights_only=True)
    assert not marker.exists()
    torch.load(crafted, map_location="cpu", weights_only=False)  # control: the payload is live when unguarded
    assert marker.exists()


def _needs_segment_anything():
    pytest.importorskip("torchvision", reason="segment-anything needs torchvision, which is not installed here "
                                              "(scripts/check_segment_anything.sh runs these tests in isolation)")
    pytest.importorskip("segment_anything", reason="the segment-anything package is not installed here")


def test_segment_anything_segmenter_refuses_a_crafted_checkpoint_without_unpickling_it(tmp_path, monkeypatch):
    """Needs the `segment-anything` package and torchvision (a GPU machine, or scripts/check_segment_anything.sh)."""
    _needs_segment_anything()
    import pickle

    from animagent.backends import segmenter_segment_anything as module
    from animagent.config import Config
    from animagent.runfolder import sha256_file

    marker, crafted = _crafted_checkpoint(tmp_path)
    config = Config(device="cpu", dtype="float32")
    with pytest.raises(InputError, match="not an official SAM checkpoint"):
        module.SegmentAnythingSegmenter(config, crafted)
    assert not marker.exists()
    monkeypatch.setitem(module.CHECKPOINTS, sha256_file(crafted), ("vit_b", crafted.name))  # as if a hash matched
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        module.SegmentAnythingSegmenter(config, crafted)
    assert not marker.exists()


def test_segment_anything_segmenter_masks_a_box(tmp_path, monkeypatch):
    """Needs the `segment-anything` package and torchvision (a GPU machine, or scripts/check_segment_anything.sh)."""
    _needs_segment_anything()
    import numpy as np
    import torch
    from PIL import Image
    from segment_anything import sam_model_registry

    from animagent.backends import segmenter_segment_anything as module
    from animagent.config import Config
    from animagent.runfolder import sha256_file

    checkpoint = tmp_path / "sam_vit_b.pth"
    saved = sam_model_registry["vit_b"](checkpoint=None).state_dict()
    torch.save(saved, checkpoint)  # random, official layout
    monkeypatch.setitem(module.CHECKPOINTS, sha256_file(checkpoint), ("vit_b", checkpoint.name))
    segmenter = module.SegmentAnythingSegmenter(Config(device="auto", dtype="float32"), checkpoint)
    loaded = segmenter._predictor.model.state_dict()
    assert loaded.keys() == saved.keys()
    assert all(torch.equal(loaded[name].cpu(), saved[name]) for name in saved)  # the file's weights, not a fresh init
    mask = segmenter.mask(Image.new("RGB", (96, 64), (90, 90, 90)), (8, 12, 40, 50))
    assert mask.dtype == np.bool_ and mask.shape == (64, 96)
    segmenter.close()
