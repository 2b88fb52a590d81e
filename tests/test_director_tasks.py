"""Each consistency task's schema and prompt template through the `transformers` director on the tiny Qwen2.5-VL.

A random model writes noise, so this checks the contract: the real template renders with the stage's variables,
the grammar admits only replies that validate, and every bounded field (indices, boxes, classes) stays in range.
"""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import numpy as np
import pytest
from PIL import Image

from animagent.artifacts import Distortion, Motion, StyleClass
from animagent.backends.director import grounding
from animagent.config import Config, DirectorConfig, WeightsConfig
from animagent.tasks import KeyframeDescription, KeyframeStyle, MotionDecision, pick_output, verdict_output

SEEDS = range(3)


def _image(seed: int, size=(64, 64)) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def director(tiny_model, tmp_path_factory):
    from animagent.backends.director_transformers import TransformersDirector

    tiny_model("qwen2_5_vl_7b")
    config = Config(device="cpu", dtype="float32", weights=WeightsConfig(flavor="tiny", root=str(tiny_model.root)),
                    director=DirectorConfig(max_field_chars=16, max_new_tokens=512, temperature=1.0,
                                             max_attempts=1))  # a retry would hide a grammar fault
    d = TransformersDirector(config, tmp_path_factory.mktemp("run") / "logs" / "director.jsonl")
    yield d
    d.close()


@pytest.mark.parametrize("count", [2, 4])
def test_pick_names_one_of_the_images_shown(director, count):
    output = pick_output(count)
    for seed in SEEDS:
        reply = director.ask("pick", {"count": str(count), "last": str(count - 1), "purpose": "a fox, full body"},
                             output, images=[_image(i) for i in range(count)], seed=seed)
        assert 0 <= reply.choice < count and len(reply.reason) <= 16
    assert output.model_json_schema()["properties"]["choice"]["maximum"] == count - 1


def test_clip_pick_names_one_of_the_top_k(director):
    reply = director.ask(
        "clip_pick", {"count": "2", "last": "1", "frames": "2", "description": "a fox climbs", "motion": "gentle"},
        pick_output(2), images=[_image(i) for i in range(4)], seed=0,
    )
    assert reply.choice in (0, 1)


@pytest.mark.parametrize("convention", ["qwen2.5", "qwen3"])
def test_verdict_boxes_stay_in_the_grounding_frame(director, convention):
    max_x, max_y = grounding(convention, (56, 56)).frame
    output = verdict_output(["mira", "tobin"], max_x, max_y)
    replies = [
        director.ask("verdict", {"description": "a fox and a tortoise", "coordinates": "in pixels",
                                 "references": "- mira: image 2\n- tobin: image 3"},
                     output, images=[_image(0, (56, 56)), _image(1), _image(2)], seed=seed)
        for seed in SEEDS
    ]
    for reply in replies:
        assert 0 <= reply.alignment <= 4
        assert set(reply.distortions) <= set(get_args(Distortion))
        for name in ("c0", "c1"):
            located = getattr(reply.characters, name)
            if located is not None:
                assert all(0 <= v <= bound for v, bound in zip(located.bbox_2d, (max_x, max_y, max_x, max_y)))
    keys = output.model_json_schema()["$defs"]["PresentCharacters"]["required"]
    assert keys == ["mira", "tobin"]  # every present character must be answered, by its id


@pytest.mark.parametrize("task", ["base", "context"])
def test_keyframe_descriptions(director, task):
    reply = director.ask(task, {}, KeyframeDescription, images=[_image(3)], seed=0)
    assert isinstance(reply.description, str) and len(reply.description) <= 16


def test_motion_is_one_of_the_closed_set(director):
    for seed in SEEDS:
        reply = director.ask("motion", {"description": "a fox climbs a hill", "planned": "gentle"}, MotionDecision,
                             images=[_image(4)], seed=seed)
        assert reply.motion in get_args(Motion)


def test_keyframe_style_is_one_of_the_seven_classes(director):
    reply = director.ask("keyframe_style", {}, KeyframeStyle, images=[_image(5)], seed=0)
    assert reply.style_class in get_args(StyleClass)


def test_voice_casting_names_only_the_models_voices_and_present_speakers(director):
    from animagent.config import load_config
    from animagent.stages.speak import _variables, voice_ids
    from animagent.tasks import voice_output
    from tests.test_speak import three_shots

    script, valid = three_shots(), voice_ids(load_config("tiny"))
    shots = [(s.id, [p.character for p in s.characters]) for s in script.shots()]
    output = voice_output(valid, ["mira", "tobin"], shots)
    for seed in SEEDS:
        reply = director.ask("voice", _variables(script, valid), output, seed=seed)
        assert reply.narrator in valid
        assert set(reply.characters.model_dump(by_alias=True).values()) <= set(valid)
        speakers = reply.speakers.model_dump(by_alias=True)
        assert speakers["s01_k1"] in ("narrator", "mira") and speakers["s01_k3"] in ("narrator", "mira")


def test_every_task_has_a_template_and_the_fake_director_knows_it():
    from animagent.backends.director import render_prompt
    from tests.fakes import _TASKS

    templates = {p.stem for p in Path("animagent/prompts").glob("*.md")} - {"system"}
    assert templates == {task for _, task in _TASKS}
    rendered = render_prompt("verdict", {"description": "<story>x</story>", "coordinates": "c", "references": "r"})
    assert "<story>x" not in rendered  # data cannot close a delimiter
