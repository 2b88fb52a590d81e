"""The tiny Qwen2.5-VL builder: the registry's exact files, five real shards, identical bytes on every build."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from animagent.weights import MODELS

NAME = "qwen2_5_vl_7b"


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def folder(tiny_model) -> Path:
    return tiny_model(NAME)


def test_exactly_the_registry_files(folder):
    assert set(_files(folder)) == {f.path for f in MODELS[NAME].files}


def test_index_spreads_every_tensor_over_the_five_shards(folder):
    from safetensors.torch import load_file

    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert shards == [f"model-0000{i}-of-00005.safetensors" for i in range(1, 6)]
    stored: dict[str, str] = {}
    total = 0
    for shard in shards:
        tensors = load_file(str(folder / shard))
        stored.update(dict.fromkeys(tensors, shard))
        total += sum(t.numel() * t.element_size() for t in tensors.values())
    assert stored == index["weight_map"]
    assert total == index["metadata"]["total_size"]
    # The real checkpoint names, as in the real index.
    assert {"lm_head.weight", "model.embed_tokens.weight", "model.norm.weight"} <= set(stored)
    assert any(k.startswith("visual.blocks.") for k in stored)
    assert stored["lm_head.weight"] == shards[-1]


def test_configs_are_real_style_and_float32(folder):
    config = json.loads((folder / "config.json").read_text())
    assert config["torch_dtype"] == "float32"
    assert config["architectures"] == ["Qwen2_5_VLForConditionalGeneration"]
    assert config["rope_scaling"]["type"] == "mrope"
    # vLLM's CPU attention takes head dims 32, 64, 80, ... only: 16 kills its engine at the first request.
    head_dim = config["hidden_size"] // config["num_attention_heads"]
    assert head_dim == 2 * sum(config["rope_scaling"]["mrope_section"]) == 32
    template = json.loads((folder / "chat_template.json").read_text())["chat_template"]
    assert json.loads((folder / "tokenizer_config.json").read_text())["chat_template"] == template
    assert template.startswith("{% set image_count = namespace(value=0) %}")
    assert "<|vision_start|><|image_pad|><|vision_end|>" in template
    preprocessor = json.loads((folder / "preprocessor_config.json").read_text())
    assert preprocessor["processor_class"] == "Qwen2_5_VLProcessor"


def test_loads_with_no_missing_keys_and_a_padded_vocabulary(folder):
    import torch
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    model, info = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert type(tokenizer).__name__ == "Qwen2Tokenizer"
    assert len(tokenizer) < model.config.get_text_config().vocab_size
    eos = [tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
    assert model.generation_config.eos_token_id == eos
    assert model.config.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>")
    text = '{"title": "Mira és la guineu", "n": [1, 2]}'
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_same_bytes_in_this_process(folder, tmp_path):
    from animagent.tiny.director import build_qwen2_5_vl

    build_qwen2_5_vl(tmp_path / "again")
    assert _files(tmp_path / "again") == _files(folder)


def test_same_bytes_in_another_process(folder, tmp_path):
    """The BPE merges and the random weights do not depend on the process (hash seeds, thread order)."""
    code = "import sys; from pathlib import Path; from animagent.tiny.director import build_qwen2_5_vl as b; " \
           "b(Path(sys.argv[1]))"
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "other")], check=True, capture_output=True,
                   cwd=Path(__file__).parents[1])
    assert _files(tmp_path / "other") == _files(folder)
