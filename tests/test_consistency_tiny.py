"""The consistency engine on the tiny profile, end to end: a forced identity failure repaired once, IP-Adapter masks
for a shared frame, verdicts explainable from the run folder, scored clip candidates, and the cast library reused
by a second run."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from animagent import castlib
from animagent.artifacts import Candidates, CharacterSheet, ClipReview, Keyframe, Script, Verdict
from animagent.memory import MemoryFile
from animagent.runfolder import RunFolder
from animagent.runs import make_film

TWO_SHOTS = "tests/data/two_shots.json"
SCRIPT = Script.model_validate_json(Path(TWO_SHOTS).read_text())


@pytest.fixture(scope="module")
def forced(tiny_all, tmp_path_factory):
    """A tiny run whose identity threshold no crop can reach (1.0), with every text-to-image call recorded."""
    from diffusers import StableDiffusionXLPipeline

    calls: list[dict] = []
    original = StableDiffusionXLPipeline.__call__

    def spy(self, *args, **kwargs):
        calls.append(kwargs)
        return original(self, *args, **kwargs)

    out = tmp_path_factory.mktemp("forced")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(StableDiffusionXLPipeline, "__call__", spy)
        started = time.perf_counter()
        make_film(None, profile="tiny", out=out, script=TWO_SHOTS,
                  overrides=[f"weights.root={tiny_all}", "review.identity_threshold=1.0"])
        seconds = time.perf_counter() - started
    return RunFolder(out), calls, seconds


def test_a_forced_identity_failure_triggers_exactly_one_repair_round(forced):
    run, _, seconds = forced
    assert seconds < 60  # every branch of the tiny profile, in-process
    for shot in SCRIPT.shots():
        verdict = run.read_model(f"keyframes/{shot.id}/verdict.json", Verdict)
        ids = tuple(p.character for p in shot.characters)
        assert verdict.threshold == 1.0 and verdict.max_rounds == 1 and len(verdict.candidates) == 2
        for candidate in verdict.candidates:
            first, second = candidate.rounds  # max_rounds 1: one repair, then a last look
            assert tuple(c.character for c in first.characters) == ids and not any(c.passed for c in first.characters)
            assert first.repaired == ids and second.repaired == ()
            assert first.image == f"keyframes/{shot.id}/candidates/{candidate.candidate}.png"
            assert second.image == f"keyframes/{shot.id}/review/c{candidate.candidate}_r1.png"
            assert not candidate.identity_passed
            # the repair changed pixels only inside the characters' masks
            union = np.zeros((64, 64), dtype=bool)
            for check in first.characters:
                union |= np.asarray(Image.open(run.path(check.mask))) > 0
            before = np.asarray(run.read_image(first.image), dtype=int)
            after = np.asarray(run.read_image(second.image), dtype=int)
            assert (before[~union] == after[~union]).all() and (before[union] != after[union]).any()
        chosen = verdict.candidates[verdict.chosen]
        keyframe = run.read_model(f"keyframes/{shot.id}.json", Keyframe)
        assert run.sha(keyframe.image) == run.sha(chosen.rounds[-1].image)
        assert keyframe.seed == chosen.seed and keyframe.verdict == f"keyframes/{shot.id}/verdict.json"


def test_every_decision_is_explainable_from_the_run_folder(forced):
    run, _, _ = forced
    recorded = {rel for record in run.manifest.steps.values() for rel in record.outputs}
    for shot in SCRIPT.shots():
        verdict = run.read_model(f"keyframes/{shot.id}/verdict.json", Verdict)
        paths = {r.image for c in verdict.candidates for r in c.rounds}
        paths |= {check.mask for c in verdict.candidates for r in c.rounds for check in r.characters}
        assert paths <= recorded | {f"keyframes/{shot.id}/candidates/{i}.png" for i in range(2)}
        assert verdict.ranking[0] == verdict.chosen and sorted(verdict.ranking) == [0, 1]
        for candidate in verdict.candidates:
            assert 0 <= candidate.clip_t <= 100
            for check in (c for r in candidate.rounds for c in r.characters):
                assert check.box_source == ("layout" if check.director_box is None else "director")
                assert check.mask_source in ("sam", "box") and -1 <= check.identity <= 1
        clips = run.read_model(f"clips/{shot.id}/review.json", ClipReview)
        assert len(clips.candidates) == 2 and clips.shown == clips.ranking[:2] and clips.pick.by == "director"
        assert run.sha(f"clips/{shot.id}.mp4") == run.sha(clips.candidates[clips.chosen].video)
        for candidate in clips.candidates:
            assert 0 <= candidate.subject_consistency <= 1 and 0 <= candidate.background_consistency <= 1
    for kind, item in (("characters", "mira"), ("characters", "tobin"), ("settings", "hill")):
        sheet = json.loads(run.path(f"cast/{kind}/{item}.json").read_text())
        assert sheet["pick"]["by"] == "director" and sheet["pick"]["candidates"] == 2 and len(sheet["alternates"]) == 1
    memory = run.read_model("memory.json", MemoryFile)
    assert [(e.character, e.view) for e in memory.entries] == [
        ("mira", "sheet"), ("mira", "alternate"), ("tobin", "sheet"), ("tobin", "alternate")]


def test_a_two_character_shot_passes_two_masks_and_a_lone_character_none(forced):
    run, calls, _ = forced
    drawn = [c for c in calls if "cross_attention_kwargs" in c]  # keyframes; the sheets are text only
    lone, pair = drawn
    assert len(lone["ip_adapter_image"][0]) == 1 and len(pair["ip_adapter_image"][0]) == 2
    assert lone["num_images_per_prompt"] == pair["num_images_per_prompt"] == 2  # both candidates in one batch
    (lone_mask, _), (masks, style_mask) = (c["cross_attention_kwargs"]["ip_adapter_masks"].masks for c in drawn)
    assert lone_mask.min() == 1  # one character: its reference conditions the whole frame
    assert tuple(masks.shape) == (1, 2, 64, 64) and style_mask.min() == 1
    for i, placement in enumerate(SCRIPT.shot("s01_k2").characters):
        x0, y0, x1, y1 = placement.box.to_pixels(64, 64)
        assert masks[0, i, y0:y1, x0:x1].min() == 1 and masks[0, i].sum() == (x1 - x0) * (y1 - y0)
    references = run.read_model("keyframes/s01_k2/candidates.json", Candidates).references
    assert [(r.image, r.layers) for r in references] == [
        (run.read_model("cast/characters/mira.json", CharacterSheet).image, "all"),
        (run.read_model("cast/characters/tobin.json", CharacterSheet).image, "all"),
        (json.loads(run.path("cast/settings/hill.json").read_text())["image"], "style"),
    ]


def test_the_cast_library_carries_a_character_into_the_next_run(forced, tiny_all, tmp_path):
    first, _, _ = forced
    sheet = first.read_model("cast/characters/mira.json", CharacterSheet)
    library = tmp_path / "library"
    castlib.add("Mira", [first.path(sheet.image)], description="small red fox, green scarf", root=library)

    make_film(None, profile="tiny", out=tmp_path / "next", script=TWO_SHOTS,
              overrides=[f"weights.root={tiny_all}", f"cast.library={library}"])
    second = RunFolder(tmp_path / "next")
    reused = second.read_model("cast/characters/mira.json", CharacterSheet)
    assert reused.source == "library" and reused.pick is None and reused.appearance == "small red fox, green scarf"
    assert np.array_equal(np.asarray(second.read_image(reused.image)), np.asarray(first.read_image(sheet.image)))
    steps = set(second.manifest.steps)
    assert "pick/characters/mira" not in steps and {"cast/characters/mira", "pick/characters/tobin"} <= steps
    memory = second.read_model("memory.json", MemoryFile)
    assert [(e.character, e.image, e.view) for e in memory.entries if e.character == "mira"] == [
        ("mira", "cast/characters/mira/library-0.png", "sheet")]
    candidates = second.read_model("keyframes/s01_k1/candidates.json", Candidates)
    assert candidates.references[0].image == "cast/characters/mira/library-0.png"
    assert "Mira: small red fox, green scarf." in candidates.prompt


def test_a_finished_run_loads_no_model_and_memory_is_read_only_when_needed(forced, monkeypatch):
    from animagent import memory
    from animagent.runs import open_run
    from animagent.studio import Studio

    run, _, _ = forced

    def refuse(*args, **kwargs):
        raise AssertionError("a finished step must not load a model or read memory")

    from animagent import models

    monkeypatch.setattr(models, "build", refuse)
    monkeypatch.setattr(memory.Memory, "load", refuse)
    studio = Studio(open_run(run.root), run.root)
    script = studio.plan()
    sheets = studio.cast(script)
    script, narration = studio.speak(script)  # voices cast and every shot spoken: nothing is asked or said again
    keyframes, submitted = studio.draw(script, sheets, narration)
    assert all(s.renders == [] for s in submitted)  # no render handed to the animator
    clips = studio.choose(script, studio.render(submitted))
    assert [c.video for c in clips] == [f"clips/{s.id}.mp4" for s in SCRIPT.shots()]
