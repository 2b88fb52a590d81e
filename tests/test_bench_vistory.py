"""The ViStoryBench runner on a small synthetic dataset in the published layout (the real one is not available here)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from animagent.artifacts import Style
from animagent.bench_vistory import (
    LANGUAGE,
    METHOD,
    MODE,
    camera,
    read_story,
    run_vistory,
    story_ids,
    to_script,
)
from animagent.config import load_config
from animagent.errors import InputError

# the review and the clip choice also embed (CLIP, DINOv2) and segment (SAM)
PIPELINE = ("qwen2_5_vl_7b", "sdxl_base", "sdxl_vae_fp16_fix", "ip_adapter_sdxl_vit_h", "svd_xt", "clip_vit_l",
            "sam_vit_h", "dinov2_base", "kokoro_82m")


def _shot(index, setting, characters, perspective="Medium shot, eye level", key="Characters Appearing"):
    return {
        "index": index,
        "Plot Correspondence": {"en": f"Plot of shot {index}.", "ch": "情节"},
        "Setting Description": {"en": setting, "ch": "场景"},
        "Shot Perspective Design": {"en": perspective, "ch": "中景"},
        key: {"en": characters, "ch": ["角色"] * len(characters)},
        "Static Shot Description": {"en": f"Static description {index}.", "ch": "描述"},
    }


def write_dataset(root: Path) -> Path:
    """ViStory/01 in the benchmark's layout: story.json plus image/<character key>/*.jpg references."""
    from PIL import Image

    story = {
        "Story_type": {"en": "Children's Picture Books", "ch": "儿童绘本"},
        "Characters": {
            "Little Brown Rabbit": {"tag": "non_human", "name_ch": "小兔", "name_en": "Little Brown Rabbit",
                                    "prompt_ch": "小兔子", "prompt_en": "A small rabbit with chestnut fur.",
                                    "num_of_appearances": 3},
            "Big Brown Rabbit": {"tag": "non_human", "name_ch": "大兔", "name_en": "Big Brown Rabbit",
                                 "prompt_ch": "大兔子", "prompt_en": "A tall kind rabbit.", "num_of_appearances": 2},
        },
        "Shots": [
            _shot(1, "Night, a cosy bedroom", ["Little Brown Rabbit", "Big Brown Rabbit"]),
            _shot(2, "Night, a cosy bedroom", ["Little Brown Rabbit"], "Close-up shot"),
            _shot(3, "A meadow under the moon", ["Big Brown Rabbit", "Little Brown Rabbit"], "Wide shot, low angle",
                  key="On-Stage Characters"),
        ],
    }
    story_dir = root / "ViStory" / "01"
    story_dir.mkdir(parents=True)
    (story_dir / "story.json").write_text("\ufeff" + json.dumps(story, ensure_ascii=False), encoding="utf-8")
    for key, colour in (("Little Brown Rabbit", (150, 90, 40)), ("Big Brown Rabbit", (110, 60, 30))):
        folder = story_dir / "image" / key
        folder.mkdir(parents=True)
        Image.new("RGB", (80, 120), colour).save(folder / "01.jpg")
        Image.new("RGB", (80, 120), (255, 255, 255)).save(folder / "00.jpg")  # the first one by name is used
    return root / "ViStory"


def test_a_story_becomes_a_script_with_the_benchmark_shots(tmp_path):
    dataset = write_dataset(tmp_path)
    assert story_ids(dataset) == ["01"]
    story = read_story(dataset / "01")
    script, ids = to_script("01", story, Style(style_class="illustration", description="soft"), load_config("tiny"))
    assert ids == {"Little Brown Rabbit": "little-brown-rabbit", "Big Brown Rabbit": "big-brown-rabbit"}
    shots = script.shots()
    assert [s.id for s in shots] == ["shot_01", "shot_02", "shot_03"]
    assert [s.camera for s in shots] == ["medium shot", "close-up", "low angle"]
    assert [[p.character for p in s.characters] for s in shots] == [
        ["little-brown-rabbit", "big-brown-rabbit"], ["little-brown-rabbit"], ["big-brown-rabbit", "little-brown-rabbit"]
    ]
    left, right = shots[0].characters[0].box, shots[0].characters[1].box
    assert left.x1 < right.x0 and left.y1 == right.y1 == 0.95
    assert [s.id for s in script.settings] == ["setting01", "setting02"]
    assert [[s.id for s in scene.shots] for scene in script.scenes] == [["shot_01", "shot_02"], ["shot_03"]]
    assert shots[0].narration == "Plot of shot 1." and shots[1].description == "Close-up shot. Static description 2."
    assert script.character("big-brown-rabbit").appearance == "A tall kind rabbit."


def test_camera_words_map_onto_the_closed_set():
    assert camera("Over-the-shoulder shot") == "over the shoulder"
    assert camera("Extreme close-up") == "close-up"
    assert camera("Bird's-eye view") == "high angle"
    assert camera("Long shot, eye level") == "wide shot"
    assert camera("Eye level") == "medium shot"


def test_a_wrong_dataset_folder_is_named(tmp_path):
    write_dataset(tmp_path)
    with pytest.raises(InputError, match="ViStory"):
        story_ids(tmp_path)
    (tmp_path / "ViStory" / "01" / "story.json").write_text('{"Characters": {}, "Shots": []}')
    with pytest.raises(InputError, match="not a ViStoryBench story"):
        read_story(tmp_path / "ViStory" / "01")


def test_run_writes_the_evaluator_layout(tmp_path, tiny_model):
    from PIL import Image

    for name in PIPELINE:
        tiny_model(name)
    dataset = write_dataset(tmp_path / "data")
    out = tmp_path / "bench"
    written = run_vistory(dataset, out, profile="tiny", overrides=[f"weights.root={tiny_model.root}"])

    assert len(written) == 1
    story_out = written[0]
    method, mode, language, timestamp, story = story_out.relative_to(out / "outputs").parts
    assert (method, mode, language, story) == (METHOD, MODE, LANGUAGE, "01")
    assert re.fullmatch(r"\d{8}-\d{6}", timestamp)  # the evaluator's TIMESTAMP_PATTERN
    shots = sorted(p.name for p in (story_out / "shots").iterdir())
    assert shots == ["shot_01.png", "shot_02.png", "shot_03.png"]
    with Image.open(story_out / "shots" / "shot_01.png") as image:
        assert image.size == (64, 64)  # the tiny profile's painter size

    run = out / "runs" / "01"
    assert (run / "film.mp4").is_file() and (run / "script.json").is_file()
    with Image.open(run / "references" / "little-brown-rabbit.png") as reference:
        assert reference.getpixel((5, 5)) == (255, 255, 255)  # 00.jpg, the first reference by name
