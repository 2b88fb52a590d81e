"""Qwen3-VL-8B-Instruct as a drop-in director (issue 3): the tiny build's layout, the transformers director on it
with `director.weights=qwen3_vl_8b director.box_convention=qwen3`, and qwen3 (0-1000) grounding boxes.

A random model writes noise, so the director tests check the machinery: every reply the grammar lets through is
a validated instance of the output model, with and without an image. Prompt templates are replaced by a fixed
text (they are data owned elsewhere).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest
from PIL import Image
from pydantic import BaseModel, Field

import animagent.backends.director as director_module
from animagent.artifacts import Box
from animagent.backends.director import grounding
from animagent.config import load_config
from animagent.weights import MODELS

NAME = "qwen3_vl_8b"
CAPTURED = Path("/work/shared/model-configs/Qwen--Qwen3-VL-8B-Instruct")  # optional offline reference


class Verdict(BaseModel):
    choice: int = Field(ge=0, le=3)
    on_model: bool
    problems: list[Literal["face", "hands", "extra_limb", "text"]] = Field(max_length=2)
    reason: str


class Shot(BaseModel):
    camera: Literal["wide", "medium", "close-up"]
    seconds: int = Field(ge=2, le=5)
    box: tuple[int, int, int, int] | None = None


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def folder(tiny_model) -> Path:
    return tiny_model(NAME)


# -- registry and tiny layout ------------------------------------------------------------------------------------

def test_registry_entry_pins_the_hub_repo():
    spec = MODELS[NAME]
    assert spec.repo_id == "Qwen/Qwen3-VL-8B-Instruct" and spec.folder == "Qwen--Qwen3-VL-8B-Instruct"
    assert len(spec.revision) == 40 and int(spec.revision, 16) >= 0
    assert spec.license == "apache-2.0"
    paths = [f.path for f in spec.files]
    assert [p for p in paths if p.endswith(".safetensors")] == [
        f"model-0000{i}-of-00004.safetensors" for i in range(1, 5)
    ]
    assert {"video_preprocessor_config.json", "chat_template.json", "tokenizer.json"} <= set(paths)


def test_exactly_the_registry_files(folder):
    assert set(_files(folder)) == {f.path for f in MODELS[NAME].files}


def test_index_spreads_every_tensor_over_the_four_shards(folder):
    from safetensors.torch import load_file

    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert shards == [f"model-0000{i}-of-00004.safetensors" for i in range(1, 5)]
    stored: dict[str, str] = {}
    total = 0
    for shard in shards:
        tensors = load_file(str(folder / shard))
        stored.update(dict.fromkeys(tensors, shard))
        total += sum(t.numel() * t.element_size() for t in tensors.values())
    assert stored == index["weight_map"]
    assert total == index["metadata"]["total_size"]
    # The real checkpoint names, as in the real index.
    assert {"lm_head.weight", "model.language_model.embed_tokens.weight", "model.language_model.norm.weight"} <= set(
        stored
    )
    assert any(k.startswith("model.visual.deepstack_merger_list.") for k in stored)
    assert stored["lm_head.weight"] == shards[-1]


def test_configs_are_real_style_and_float32(folder):
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["Qwen3VLForConditionalGeneration"]
    assert config["text_config"]["dtype"] == "float32"
    assert config["text_config"]["rope_scaling"]["mrope_interleaved"] is True
    template = json.loads((folder / "chat_template.json").read_text())["chat_template"]
    assert json.loads((folder / "tokenizer_config.json").read_text())["chat_template"] == template
    assert "<|vision_start|><|image_pad|><|vision_end|>" in template
    preprocessor = json.loads((folder / "preprocessor_config.json").read_text())
    assert preprocessor["processor_class"] == "Qwen3VLProcessor" and preprocessor["patch_size"] == 16


@pytest.mark.skipif(not CAPTURED.is_dir(), reason="no captured Hub configs on this machine")
def test_captured_files_are_byte_identical_and_key_orders_real(folder):
    for name in ("chat_template.json", "preprocessor_config.json", "video_preprocessor_config.json"):
        assert (folder / name).read_bytes() == (CAPTURED / name).read_bytes(), name
    for name in ("config.json", "generation_config.json", "tokenizer_config.json"):
        tiny, real = (json.loads((d / name).read_text()) for d in (folder, CAPTURED))
        assert list(tiny) == list(real), name
    tiny, real = (json.loads((d / "config.json").read_text()) for d in (folder, CAPTURED))
    assert list(tiny["text_config"]) == list(real["text_config"])
    assert list(tiny["vision_config"]) == list(real["vision_config"])


def test_loads_with_no_missing_keys_and_real_token_layout(folder):
    import torch
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    model, info = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32, output_loading_info=True)
    assert type(model).__name__ == "Qwen3VLForConditionalGeneration"
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert len(tokenizer) < model.config.get_text_config().vocab_size
    eos = [tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
    assert model.generation_config.eos_token_id == eos
    assert model.config.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert tokenizer.convert_tokens_to_ids("</think>") == len(tokenizer) - 1  # Qwen3's last added token
    text = '{"title": "Mira és la guineu", "n": [1, 2]}'
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_same_bytes_on_every_build(folder, tmp_path):
    from animagent.tiny.director_qwen3 import build_qwen3_vl

    build_qwen3_vl(tmp_path)
    assert _files(tmp_path) == _files(folder)


def test_same_bytes_in_another_process(folder, tmp_path):
    """The BPE merges and the random weights do not depend on the process (hash seeds, thread order)."""
    code = ("import sys; from pathlib import Path; from animagent.tiny.director_qwen3 import build_qwen3_vl as b; "
            "b(Path(sys.argv[1]))")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "other")], check=True, capture_output=True,
                   cwd=Path(__file__).parents[1])
    assert _files(tmp_path / "other") == _files(folder)


# -- the transformers director on it -----------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def fixed_prompts(monkeypatch):
    monkeypatch.setattr(director_module, "render_prompt", lambda task, variables: f"Task: {task}. Reply in JSON.")


@pytest.fixture(scope="module")
def director(folder, tiny_model, tmp_path_factory):
    from animagent.backends.director_transformers import TransformersDirector

    # What `--profile tiny --set director.weights=qwen3_vl_8b director.box_convention=qwen3` resolves to.
    config = load_config("tiny", overrides=[
        f"weights.root={tiny_model.root}", "director.weights=qwen3_vl_8b", "director.box_convention=qwen3",
        "director.max_new_tokens=512", "director.temperature=0.7",
        "director.max_attempts=1",  # the first reply must be valid: a retry would hide a grammar fault
    ])
    assert config.director.weights == NAME and config.director.box_convention == "qwen3"
    d = TransformersDirector(config, tmp_path_factory.mktemp("run") / "logs" / "director.jsonl")
    yield d
    d.close()


def test_the_director_loads_qwen3_vl(director):
    assert type(director.model).__name__ == "Qwen3VLForConditionalGeneration"


def test_text_only_replies_are_validated_instances(director):
    for seed in range(2):
        assert isinstance(director.ask("review", {}, Verdict, seed=seed), Verdict)
    assert isinstance(director.ask("plan", {}, Shot, seed=3), Shot)


def test_image_replies_are_validated_instances(director):
    images = [Image.new("RGB", (64, 48), (200, 30, 30)), Image.new("RGBA", (300, 170), (0, 90, 200, 255))]
    assert isinstance(director.ask("review", {}, Verdict, images=images, seed=1), Verdict)


def test_images_get_one_pad_per_merged_16px_patch(director, monkeypatch):
    seen = {}
    generate = director.model.generate

    def spy(**inputs):
        seen.update(inputs)
        return generate(**inputs)

    monkeypatch.setattr(director.model, "generate", spy)
    verdict = director.ask("review", {}, Verdict, images=[Image.new("RGB", (2000, 1500), (9, 9, 9))], seed=2)
    assert isinstance(verdict, Verdict)
    (t, h, w), = seen["image_grid_thw"].tolist()
    assert h * w * 16 * 16 <= director.config.max_pixels
    assert abs(w / h - 2000 / 1500) < 0.1
    pad = director.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((seen["input_ids"] == pad).sum()) == t * h * w // 4


# -- qwen3 grounding boxes ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [(64, 64), (1280, 720), (333, 1999)])
def test_qwen3_boxes_are_on_a_0_1000_grid_of_any_image(size):
    assert grounding("qwen3", size).frame == (1000, 1000)
    assert grounding("qwen3", size).box([0, 0, 500, 1000]) == Box(x0=0.0, y0=0.0, x1=0.5, y1=1.0)
    assert grounding("qwen3", size).box([500, 1000, 0, 0]) == Box(x0=0.0, y0=0.0, x1=0.5, y1=1.0)
    assert grounding("qwen3", size).box([0, 0, 1200, 1000]) == Box(x0=0.0, y0=0.0, x1=1.0, y1=1.0)
    assert grounding("qwen3", size).box([10, 10, 10, 900]) is None
