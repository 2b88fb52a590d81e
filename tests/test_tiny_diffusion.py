"""The tiny diffusion builders: exact registry layouts, byte-identical rebuilds, models that fit together."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from animagent.tiny import BUILDERS
from animagent.weights import MODELS

DIFFUSION_MODELS = ["sdxl_base", "sdxl_vae_fp16_fix", "ip_adapter_sdxl_vit_h", "svd_xt", "animatediff_sdxl"]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("name", DIFFUSION_MODELS)
def test_builder_writes_exactly_the_registry_files_deterministically(name: str, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for folder in (first, second):
        folder.mkdir()
        BUILDERS[name](folder)
    built = _files(first)
    assert sorted(built) == sorted(f.path for f in MODELS[name].files)
    assert built == _files(second)


def test_configs_load_as_float32_when_asked(tiny_model) -> None:
    import torch
    from transformers import CLIPTextModelWithProjection

    encoder = CLIPTextModelWithProjection.from_pretrained(
        tiny_model("sdxl_base"), subfolder="text_encoder_2", variant="fp16", dtype=torch.float32
    )
    assert encoder.dtype == torch.float32


def test_tokenizers_are_clip_tokenizers_with_77_positions(tiny_model) -> None:
    from transformers import CLIPTokenizer

    folder = tiny_model("sdxl_base")
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    tokenizer_2 = CLIPTokenizer.from_pretrained(folder / "tokenizer_2")
    assert tokenizer.model_max_length == tokenizer_2.model_max_length == 77
    ids = tokenizer("A girl in the FOREST!")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    words = ["a</w>", "girl</w>", "in</w>", "the</w>", "forest</w>", "!</w>"]  # lower-cased, merged words
    assert tokenizer.convert_ids_to_tokens(ids[1:-1]) == words
    assert tokenizer_2.pad_token == "!" and tokenizer.pad_token == "<|endoftext|>"
    padded = tokenizer_2("a cat", padding="max_length", max_length=77)["input_ids"]
    assert len(padded) == 77 and padded[-1] == tokenizer_2.pad_token_id


def test_fp16_fix_vae_is_a_drop_in_for_the_sdxl_vae(tiny_model) -> None:
    sdxl_vae = json.loads((tiny_model("sdxl_base") / "vae" / "config.json").read_text())
    fix_vae = json.loads((tiny_model("sdxl_vae_fp16_fix") / "config.json").read_text())
    assert sdxl_vae["force_upcast"] is True and fix_vae["force_upcast"] is False
    for key in ("block_out_channels", "latent_channels", "scaling_factor", "in_channels", "out_channels"):
        assert fix_vae[key] == sdxl_vae[key], key


def test_ip_adapter_plus_file_uses_the_original_key_format(tiny_model) -> None:
    from safetensors import safe_open

    path = tiny_model("ip_adapter_sdxl_vit_h") / "sdxl_models" / "ip-adapter-plus_sdxl_vit-h.safetensors"
    with safe_open(path, framework="pt") as f:
        keys = set(f.keys())
        # diffusers derives heads = to_q.out // 64, so the Resampler's dim_head must be 64
        assert f.get_tensor("image_proj.layers.0.0.to_q.weight").shape[0] % 64 == 0
    assert {"image_proj.latents", "image_proj.proj_in.weight", "image_proj.norm_out.weight"} <= keys
    assert {k.split(".")[2] for k in keys if k.startswith("image_proj.layers.")} == {"0", "1", "2", "3"}
    ip_ids = sorted({int(k.split(".")[1]) for k in keys if k.startswith("ip_adapter.")})
    assert ip_ids == list(range(1, 2 * len(ip_ids), 2))  # one per cross-attention processor: 1, 3, 5, ...


def test_motion_adapter_turns_the_tiny_sdxl_into_animatediff(tiny_model) -> None:
    import torch
    from diffusers import AnimateDiffSDXLPipeline, MotionAdapter

    adapter = MotionAdapter.from_pretrained(
        tiny_model("animatediff_sdxl"), variant="fp16", dtype=torch.float32, local_files_only=True
    )
    pipe = AnimateDiffSDXLPipeline.from_pretrained(
        tiny_model("sdxl_base"), motion_adapter=adapter, variant="fp16", dtype=torch.float32,
        local_files_only=True,
    )
    pipe.set_progress_bar_config(disable=True)
    frames = pipe("a cat", num_frames=4, height=64, width=64, num_inference_steps=2,
                  generator=torch.Generator().manual_seed(0)).frames[0]
    assert len(frames) == 4 and frames[0].size == (64, 64)
