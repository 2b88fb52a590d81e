"""LLaVA-OneVision-Qwen2-7B as a director (issue 12): the registry entry, the tiny build in the converted Hub repo's
layout, and the transformers director on it with `director.weights=llava_onevision_7b`.

A random model writes noise, so the director tests check the machinery: every reply the grammar lets through is a
validated instance of the output model, with and without images; each `<image>` gets exactly as many tokens as
the model packs features for (a wrong count is an error inside generate).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import pytest
from PIL import Image
from pydantic import BaseModel, Field

import animagent.backends.director as director_module
from animagent.config import load_config
from animagent.weights import MODELS

NAME = "llava_onevision_7b"


class Verdict(BaseModel):
    choice: int = Field(ge=0, le=3)
    on_model: bool
    problems: list[Literal["face", "hands", "extra_limb", "text"]] = Field(max_length=2)
    reason: str


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def folder(tiny_model) -> Path:
    return tiny_model(NAME)


def test_registry_entry_pins_the_hub_repo():
    spec = MODELS[NAME]
    assert spec.repo_id == "llava-hf/llava-onevision-qwen2-7b-ov-hf"
    assert spec.folder == "llava-hf--llava-onevision-qwen2-7b-ov-hf"
    assert len(spec.revision) == 40 and int(spec.revision, 16) >= 0
    assert spec.license == "apache-2.0"


def test_tiny_build_writes_exactly_the_registry_files(folder):
    assert sorted(_files(folder)) == sorted(f.path for f in MODELS[NAME].files)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    names = set(index["weight_map"])
    # transformers 4.45's checkpoint names, as in the converted repo's shards
    assert {"image_newline", "language_model.lm_head.weight", "language_model.model.embed_tokens.weight"} <= names
    assert any(n.startswith("vision_tower.vision_model.encoder.layers.") for n in names)
    assert any(n.startswith("multi_modal_projector.linear_1.") for n in names)


def test_loads_with_no_missing_keys_and_vllm_sized_heads(folder):
    import torch
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    model, info = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32, output_loading_info=True)
    assert type(model).__name__ == "LlavaOnevisionForConditionalGeneration"
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    text = model.config.text_config
    assert text.hidden_size // text.num_attention_heads == 32  # vLLM's CPU attention: 32, 64, 80, ...
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert model.config.image_token_id == tokenizer.convert_tokens_to_ids("<image>")
    assert model.config.video_token_id == tokenizer.convert_tokens_to_ids("<video>")
    assert len(tokenizer) < text.vocab_size
    assert model.generation_config.eos_token_id == [tokenizer.convert_tokens_to_ids(t)
                                                    for t in ("<|im_end|>", "<|endoftext|>")]


def test_same_bytes_on_every_build(folder, tmp_path):
    from animagent.tiny.llava import build_llava_onevision

    build_llava_onevision(tmp_path)
    assert _files(tmp_path) == _files(folder)


@pytest.fixture(autouse=True)
def fixed_prompts(monkeypatch):
    monkeypatch.setattr(director_module, "render_prompt", lambda task, variables: f"Task: {task}. Reply in JSON.")


@pytest.fixture(scope="module")
def director(folder, tiny_model, tmp_path_factory):
    from animagent.backends.director_transformers import TransformersDirector

    config = load_config("tiny", overrides=[
        f"weights.root={tiny_model.root}", f"director.weights={NAME}", "director.box_convention=llava",
        "director.max_new_tokens=512", "director.temperature=0.7",
        "director.max_attempts=1",  # the first reply must be valid: a retry would hide a grammar fault
    ])
    d = TransformersDirector(config, tmp_path_factory.mktemp("run") / "logs" / "director.jsonl")
    yield d
    d.close()


def test_the_director_loads_llava_onevision(director):
    assert type(director.model).__name__ == "LlavaOnevisionForConditionalGeneration"
    assert "<image>" in director.chat_template  # from chat_template.json, where the converted repo keeps it


def test_text_only_replies_are_validated_instances(director):
    for seed in range(2):
        assert isinstance(director.ask("review", {}, Verdict, seed=seed), Verdict)


@pytest.mark.parametrize("sizes", [[(64, 48)], [(300, 170), (56, 56), (90, 200)]])
def test_image_replies_get_one_token_per_packed_feature(director, monkeypatch, sizes):
    seen = {}
    generate = director.model.generate

    def spy(**inputs):
        seen.update(inputs)
        return generate(**inputs)

    monkeypatch.setattr(director.model, "generate", spy)
    images = [Image.new("RGB", size, (40 * i, 90, 200)) for i, size in enumerate(sizes)]
    assert isinstance(director.ask("review", {}, Verdict, images=images, seed=1), Verdict)
    assert seen["pixel_values"].shape[0] == len(images)
    image_tokens = int((seen["input_ids"] == director.model.config.image_token_id).sum())
    assert image_tokens > len(images)  # expanded, and generate accepted the count


def test_doctor_and_pull_know_the_llava_director(folder, tiny_model, tmp_path):
    from typer.testing import CliRunner

    from animagent.cli import app

    runner = CliRunner()
    ok = runner.invoke(app, ["doctor", "--profile", "tiny", "--dir", str(tiny_model.root),
                             "--set", f"director.weights={NAME}"])
    assert f"present  {NAME}" in ok.output
    missing = runner.invoke(app, ["doctor", "--profile", "tiny", "--dir", str(tmp_path),
                                  "--set", f"director.weights={NAME}"])
    assert missing.exit_code == 4 and f"missing  {NAME}" in missing.output
    assert "llava-hf/llava-onevision-qwen2-7b-ov-hf" in missing.output


def test_a_llava_box_lands_on_its_image_position():
    """LLaVA-OneVision answers [x1, y1, x2, y2] as fractions of the image's width and height: the box around a block
    painted at known pixels of a 640x480 keyframe comes back onto exactly those pixels, whatever size was sent."""
    from animagent.tasks import verdict_output

    image = Image.new("RGB", (640, 480), (255, 255, 255))
    image.paste((220, 20, 20), (320, 120, 640, 360))
    grounding = director_module.grounding("llava", (616, 448))
    assert grounding.frame == (1.0, 1.0) and "0 to 1" in grounding.words
    reply = '{"alignment": 3, "characters": {"mira": {"bbox_2d": [0.5, 0.25, 1.0, 0.75], "on_model": true}}, ' \
            '"distortions": []}'
    verdict = verdict_output(["mira"], *grounding.frame).model_validate_json(reply)
    box = grounding.box(verdict.characters.c0.bbox_2d)
    assert box.to_pixels(640, 480) == (320, 120, 640, 360)
    assert [color for _, color in image.crop(box.to_pixels(640, 480)).getcolors()] == [(220, 20, 20)]
    assert grounding.box([1.0, 0.75, 0.5, 0.25]) == box  # corners in any order
    with pytest.raises(ValueError):  # a corner outside the frame is refused by the schema
        verdict_output(["mira"], *grounding.frame).model_validate_json(reply.replace("1.0,", "1.5,"))
