"""The review's decisions on synthetic images: a scripted director, an embedder that sees colour, a box segmenter.

Colours stand for identities: the fake embedder maps a crop to the mean colour of its non-white pixels, so a
pure red crop is identical to Mira's pure red sheet (cosine 1) and a pure blue one is orthogonal to it (cosine 0).
The fake painter's repair paints the masked region in the reference's colour.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from animagent import crops
from animagent.artifacts import Box, Candidates, Cast, CharacterSheet, Script, SettingSheet, Verdict
from animagent.backends.director import grounding
from animagent.config import Config
from animagent.runfolder import RunFolder
from animagent.stages import cast as cast_stage
from animagent.stages import draw, review
from tests.fakes import ScriptedDirector, context

SCRIPT = Script.model_validate_json(Path("tests/data/two_shots.json").read_text())
RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)
SIZE = 64


class ColourEmbedder:
    def images(self, images: list[Image.Image]) -> np.ndarray:
        rows = []
        for image in images:
            pixels = np.asarray(image.convert("RGB"), dtype=np.float32).reshape(-1, 3)
            rows.append(pixels[(pixels != 255).any(axis=1)].mean(axis=0) + 1e-3)  # the non-white pixels
        rows = np.stack(rows)
        return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)

    def texts(self, texts: list[str]) -> np.ndarray:
        return np.full((len(texts), 3), 1 / np.sqrt(3), dtype=np.float32)


class BoxSegmenter:
    """SAM stand-in: the box itself, a mask spilling one box-width to the right, or nothing."""

    def __init__(self, mode: str = "box"):
        self.mode = mode

    def mask(self, image: Image.Image, box: tuple[int, int, int, int]) -> np.ndarray:
        x0, y0, x1, y1 = box
        mask = np.zeros((image.height, image.width), dtype=bool)
        if self.mode == "box":
            mask[y0:y1, x0:x1] = True
        elif self.mode == "spill":
            mask[y0:y1, x0:min(image.width, x1 + (x1 - x0))] = True
        return mask


class PaintingRepairer:
    """Painter stand-in: a repair paints the mask in the reference's colour (or in `colour` when given)."""

    def __init__(self, colour: tuple[int, int, int] | None = None):
        self.colour = colour
        self.calls: list[dict] = []

    def repair(self, image, mask, prompt, references, images, strength, seed):
        (ref,) = [i for r, i in zip(references, images) if r.layers == "all"]
        self.calls.append({"mask": mask.copy(), "prompt": prompt, "ref": ref.getpixel((0, 0)),
                           "strength": strength, "style": any(r.layers == "style" for r in references)})
        pixels = np.asarray(image.convert("RGB")).copy()
        pixels[mask] = self.colour or ref.getpixel((0, 0))
        return Image.fromarray(pixels)


def _config(**review) -> Config:
    return Config(device="cpu", dtype="float32", review={"identity_threshold": 0.9, "max_rounds": 1, **review})


def _candidate(colours: dict[str, tuple[int, int, int]], shot_id: str) -> Image.Image:
    """A white frame with each named character's layout box filled with a colour."""
    image = Image.new("RGB", (SIZE, SIZE), WHITE)
    for placement in SCRIPT.shot(shot_id).characters:
        if placement.character in colours:
            image.paste(colours[placement.character], placement.box.to_pixels(SIZE, SIZE))
    return image


def _setup(tmp_path: Path, shot_id: str, candidates: list[Image.Image], config: Config):
    run = RunFolder(tmp_path / "run")
    sheets = {"mira": RED, "tobin": GREEN}
    for cid, colour in sheets.items():
        run.write_image(f"cast/characters/{cid}.png", Image.new("RGB", (SIZE, SIZE), colour))
    run.write_image("cast/settings/hill.png", Image.new("RGB", (SIZE, SIZE), (90, 90, 90)))
    cast = Cast(
        characters=tuple(CharacterSheet(character=cid, image=f"cast/characters/{cid}.png", prompt="p", seed=0)
                         for cid in sheets),
        settings=(SettingSheet(setting="hill", image="cast/settings/hill.png", prompt="p", seed=0),),
    )
    rels = [f"keyframes/{shot_id}/candidates/{i}.png" for i in range(len(candidates))]
    for rel, image in zip(rels, candidates):
        run.write_image(rel, image)
    listed = Candidates(item=shot_id, prompt="a prompt", seeds=tuple(range(len(rels))), images=tuple(rels))
    run.write_model(f"keyframes/{shot_id}/candidates.json", listed)
    cast_stage.remember(context(run, config, embedder=ColourEmbedder()), cast)
    return run, cast, listed


def _verdict(boxes: dict[str, list[int] | None], alignment: int = 3, on_model: bool = True, distortions=()) -> dict:
    return {
        "alignment": alignment,
        "characters": {cid: None if box is None else {"bbox_2d": box, "on_model": on_model}
                       for cid, box in boxes.items()},
        "distortions": list(distortions),
    }


def _review(tmp_path, shot_id, candidates, verdicts, config, segmenter=None, painter=None, previous=()):
    run, cast, listed = _setup(tmp_path, shot_id, candidates, config)
    director = ScriptedDirector({"verdict": verdicts, "base": [{"description": "base"}],
                                 "context": [{"description": "context"}]}, tmp_path / "director.jsonl")
    painter = painter or PaintingRepairer()
    ctx = context(run, config, director=director, embedder=ColourEmbedder(), segmenter=segmenter or BoxSegmenter(),
                  painter=painter)
    keyframe = review.review(ctx, SCRIPT, cast, SCRIPT.shot(shot_id), listed, list(previous))
    verdict = run.read_model(keyframe.verdict, Verdict)
    return run, keyframe, verdict, director, painter


# --- the identity gate ---------------------------------------------------------------------------------------


def test_identical_crop_is_accepted_without_repair(tmp_path):
    run, keyframe, verdict, _, painter = _review(
        tmp_path, "s01_k1", [_candidate({"mira": RED}, "s01_k1")], [_verdict({"mira": None})], _config())
    (candidate,) = verdict.candidates
    (only,) = candidate.rounds
    (check,) = only.characters
    assert check.identity == pytest.approx(1.0, abs=1e-3) and check.passed and check.nearest == "mira"
    assert only.repaired == () and painter.calls == [] and candidate.identity_passed
    assert run.path(keyframe.image).read_bytes() == run.path("keyframes/s01_k1/candidates/0.png").read_bytes()


def test_orthogonal_crop_is_repaired_once_and_then_accepted(tmp_path):
    run, keyframe, verdict, _, painter = _review(
        tmp_path, "s01_k1", [_candidate({"mira": BLUE}, "s01_k1")], [_verdict({"mira": None})], _config())
    (candidate,) = verdict.candidates
    first, second = candidate.rounds
    assert first.characters[0].identity == pytest.approx(0.0, abs=1e-2) and not first.characters[0].passed
    assert first.repaired == ("mira",) and second.repaired == ()
    (call,) = painter.calls
    assert call["ref"] == RED and call["style"] and call["strength"] == 0.9 and "Mira" in call["prompt"]
    assert second.image == "keyframes/s01_k1/review/c0_r1.png" and run.exists(second.image)
    assert second.characters[0].passed and candidate.identity_passed
    assert run.path(keyframe.image).read_bytes() == run.path(second.image).read_bytes()  # the repaired image


def test_rounds_are_bounded_by_max_rounds(tmp_path):
    stubborn = PaintingRepairer(colour=BLUE)  # a repair that never helps
    *_, verdict, director, _ = _review(
        tmp_path, "s01_k1", [_candidate({"mira": BLUE}, "s01_k1")], [_verdict({"mira": None})],
        _config(max_rounds=2), painter=stubborn)
    (candidate,) = verdict.candidates
    assert [r.repaired for r in candidate.rounds] == [("mira",), ("mira",), ()]
    assert len(stubborn.calls) == 2 and not candidate.identity_passed
    assert sum(r[0] == "verdict" for r in director.requests) == 3


def test_no_rounds_means_no_repair(tmp_path):
    *_, verdict, _, painter = _review(
        tmp_path, "s01_k1", [_candidate({"mira": BLUE}, "s01_k1")], [_verdict({"mira": None})], _config(max_rounds=0))
    assert len(verdict.candidates[0].rounds) == 1 and painter.calls == []
    assert not verdict.candidates[0].identity_passed


@pytest.mark.parametrize("threshold, repaired", [(0.59, ()), (0.61, ("mira",))])
def test_threshold_edges(tmp_path, threshold, repaired):
    # (153, 204, 0) has cosine 153 / 255 = 0.6 to pure red
    *_, verdict, _, _ = _review(tmp_path, "s01_k1", [_candidate({"mira": (153, 204, 0)}, "s01_k1")],
                                [_verdict({"mira": None})], _config(identity_threshold=threshold))
    first = verdict.candidates[0].rounds[0]
    assert first.characters[0].identity == pytest.approx(0.6, abs=2e-3)
    assert first.repaired == repaired


def test_at_the_threshold_a_character_passes():
    assert review.passes(0.8, 0.8) and not review.passes(np.nextafter(0.8, 0), 0.8)


# --- locating and masking --------------------------------------------------------------------------------------


def test_a_director_box_is_used_in_our_pixels_else_the_layout_box(tmp_path):
    # the 64 px candidate is sent at 56 px (director_size): [0, 0, 28, 56] is the left half of our image
    *_, verdict, _, _ = _review(
        tmp_path, "s01_k2", [_candidate({"mira": RED, "tobin": GREEN}, "s01_k2")],
        [_verdict({"mira": None, "tobin": [28, 56, 0, 0]})], _config())
    mira, tobin = verdict.candidates[0].rounds[0].characters
    assert mira.box_source == "layout" and mira.box == SCRIPT.shot("s01_k2").characters[0].box and not mira.seen
    assert mira.on_model is None
    assert tobin.box_source == "director" and tobin.seen and tobin.on_model is True
    assert tobin.box == Box(x0=0.0, y0=0.0, x1=0.5, y1=1.0) == tobin.director_box


def test_a_shot_with_two_characters_checks_two_masks_and_shows_both_sheets(tmp_path):
    run, _, verdict, director, _ = _review(
        tmp_path, "s01_k2", [_candidate({"mira": RED, "tobin": GREEN}, "s01_k2")],
        [_verdict({"mira": None, "tobin": None})], _config())
    checks = verdict.candidates[0].rounds[0].characters
    assert [c.character for c in checks] == ["mira", "tobin"] and all(c.passed for c in checks)
    for check, placement in zip(checks, SCRIPT.shot("s01_k2").characters):
        mask = np.asarray(Image.open(run.path(check.mask))) > 0
        x0, y0, x1, y1 = placement.box.to_pixels(SIZE, SIZE)
        assert mask[y0:y1, x0:x1].all() and mask.sum() == (x1 - x0) * (y1 - y0)
    (_, messages, schema), = [r for r in director.requests if r[0] == "verdict"]
    assert len(messages[1].images) == 3 and messages[1].images[0].size == (56, 56)
    assert set(schema["$defs"]["PresentCharacters"]["required"]) == {"mira", "tobin"}


@pytest.mark.parametrize("mode, source", [("none", "box"), ("spill", "sam")])
def test_a_mask_never_leaves_its_box(mode, source):
    image = _candidate({"mira": RED}, "s01_k1")
    box = SCRIPT.shot("s01_k1").characters[0].box
    mask, got, pixels = crops.character_mask(image, box, BoxSegmenter(mode))
    x0, y0, x1, y1 = pixels
    assert got == source and pixels == box.to_pixels(SIZE, SIZE)
    assert mask[y0:y1, x0:x1].all() and mask.sum() == (x1 - x0) * (y1 - y0)


def test_masked_crop_is_square_and_white_outside_the_mask():
    image = Image.new("RGB", (40, 20), BLUE)
    mask = np.zeros((20, 40), dtype=bool)
    mask[:, :10] = True
    crop = crops.masked_crop(image, mask, (0, 0, 20, 20))
    pixels = np.asarray(crop)
    assert crop.size == (20, 20) and (pixels[:, :10] == BLUE).all() and (pixels[:, 10:] == 255).all()
    tall = crops.masked_crop(Image.new("RGB", (40, 40), RED), np.ones((40, 40), dtype=bool), (0, 0, 10, 40))
    assert tall.size == (40, 40) and tall.getpixel((20, 20)) == RED and tall.getpixel((0, 0)) == WHITE


@pytest.mark.parametrize("bbox, convention, sent, expected", [
    ([0, 0, 28, 56], "qwen2.5", (56, 56), (0.0, 0.0, 0.5, 1.0)),
    ([500, 250, 0, 1000], "qwen3", (56, 56), (0.0, 0.25, 0.5, 1.0)),  # corners in any order
    ([10, 10, 900, 20], "qwen2.5", (56, 28), (10 / 56, 10 / 28, 1.0, 20 / 28)),  # clamped to the frame
    ([5, 5, 5, 40], "qwen2.5", (56, 56), None),  # no area
])
def test_grounding_boxes_become_fractions_of_our_image(bbox, convention, sent, expected):
    box = grounding(convention, sent).box(bbox)
    if expected is None:
        assert box is None
    else:
        assert (box.x0, box.y0, box.x1, box.y1) == pytest.approx(expected)
    assert grounding(convention, sent).frame == ((1000, 1000) if convention == "qwen3" else sent)


def test_layout_boxes_become_ip_adapter_masks_only_when_characters_share_the_frame():
    cast = Cast(
        characters=tuple(CharacterSheet(character=c, image=f"cast/characters/{c}.png", prompt="p", seed=0)
                         for c in ("mira", "tobin")),
        settings=(SettingSheet(setting="hill", image="cast/settings/hill.png", prompt="p", seed=0),),
    )
    config = Config()
    alone = draw.references(SCRIPT.shot("s01_k1"), cast, config)
    assert [(r.image, r.box, r.layers) for r in alone] == [
        ("cast/characters/mira.png", None, "all"), ("cast/settings/hill.png", None, "style")]
    pair = draw.references(SCRIPT.shot("s01_k2"), cast, config)
    assert [r.box for r in pair[:2]] == [p.box for p in SCRIPT.shot("s01_k2").characters]
    assert pair[2].layers == "style" and pair[2].scale == config.painter.setting_scale


# --- choosing -------------------------------------------------------------------------------------------------


def test_the_gate_outranks_the_verdict_and_every_decision_is_recorded(tmp_path):
    candidates = [_candidate({"mira": BLUE}, "s01_k1"), _candidate({"mira": RED}, "s01_k1")]
    verdicts = [_verdict({"mira": None}, alignment=4), _verdict({"mira": None}, alignment=4),
                _verdict({"mira": None}, alignment=0, distortions=["extra limbs", "extra limbs"])]
    run, keyframe, verdict, _, _ = _review(
        tmp_path, "s01_k1", candidates, verdicts, _config(max_rounds=1), painter=PaintingRepairer(colour=BLUE))
    stuck, clean = verdict.candidates
    assert not stuck.identity_passed and stuck.verdict_score == 4
    assert clean.identity_passed and clean.verdict_score == 0 - 1  # one distortion, listed twice, counted once
    assert verdict.ranking == (1, 0) and verdict.chosen == 1 and keyframe.seed == 1
    assert verdict.threshold == 0.9 and verdict.max_rounds == 1 and "identity gate" in verdict.rule
    assert all(run.exists(c.mask) for cand in verdict.candidates for r in cand.rounds for c in r.characters)


def test_rank_breaks_ties_by_identity_then_clip_t_then_index():
    from animagent.artifacts import CandidateReview, ReviewRound

    rounds = (ReviewRound(round=0, image="a.png", alignment=2, distortions=(), characters=(), repaired=()),)

    def made(i, identity, clip_t):
        return CandidateReview(candidate=i, seed=i, rounds=rounds, identity_passed=True, verdict_score=2,
                               identity=identity, clip_t=clip_t)

    assert review.rank([made(0, 0.9, 10), made(1, 0.95, 1), made(2, 0.9, 30), made(3, 0.9, 10)]) == [1, 2, 0, 3]


def test_descriptions_for_keyframe_iteration(tmp_path):
    _, keyframe, _, director, _ = _review(tmp_path / "a", "s01_k1", [_candidate({"mira": RED}, "s01_k1")],
                                          [_verdict({"mira": None})], _config())
    assert keyframe.base_description == "base" and keyframe.context_description == "context"
    assert [r[0] for r in director.requests] == ["verdict", "base", "context"]
    _, later, _, director, _ = _review(tmp_path / "b", "s01_k2", [_candidate({"mira": RED, "tobin": GREEN}, "s01_k2")],
                                       [_verdict({"mira": None, "tobin": None})], _config(), previous=[keyframe])
    assert later.base_description is None and later.context_description == "context"
    assert [r[0] for r in director.requests] == ["verdict", "context"]
    prompt_2 = draw.continuity_prompt(SCRIPT.shot("s01_k2"), [keyframe, later])
    assert prompt_2 == "a tortoise over a lantern, a fox beside it. Keep: base Previously: context"


def test_llava_boxes_are_fractions_of_the_image():
    g = grounding("llava", (56, 28))
    assert g.frame == (1.0, 1.0) and "fractions" in g.words
    box = g.box([0.25, 0.5, 0.75, 1.0])  # the middle half across, the lower half down
    assert (box.x0, box.y0, box.x1, box.y1) == (0.25, 0.5, 0.75, 1.0)
    assert box.to_pixels(64, 64) == (16, 32, 48, 64)
