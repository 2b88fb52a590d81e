"""WanAnimator on the tiny Wan2.2-TI2V-5B, on CPU: the builder's layout, frames from duration, the prompt, the ladder."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import get_args

import numpy as np
import pytest
from PIL import Image

from animagent import faults
from animagent.artifacts import Motion
from animagent.config import Config, load_config
from animagent.errors import InputError, ResourceError

WIDTH, HEIGHT = 96, 64


def _config(root: Path, **gpu) -> Config:
    return Config(
        device="cpu", dtype="float32", weights={"flavor": "tiny", "root": str(root)},
        animator={"kind": "wan", "width": WIDTH, "height": HEIGHT, "steps": 2},
        gpu=gpu,
    )


@pytest.fixture(scope="module")
def animator(tiny_model):
    from animagent.backends.animator_wan import WanAnimator

    tiny_model("wan2_2_ti2v_5b")
    animator = WanAnimator(_config(tiny_model.root), tiny_model.root)
    yield animator
    animator.close()


def _keyframe(width: int, height: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def _stack(frames: list[Image.Image]) -> np.ndarray:
    return np.stack([np.asarray(f, dtype=np.float32) for f in frames])


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_builder_writes_exactly_the_registry_files_deterministically(tmp_path: Path) -> None:
    from animagent.tiny import BUILDERS
    from animagent.weights import MODELS

    first, second = tmp_path / "first", tmp_path / "second"
    for folder in (first, second):
        folder.mkdir()
        BUILDERS["wan2_2_ti2v_5b"](folder)
    built = _files(first)
    assert sorted(built) == sorted(f.path for f in MODELS["wan2_2_ti2v_5b"].files)
    assert built == _files(second)


def test_the_tiny_repo_is_the_ti2v_layout(tiny_model) -> None:
    folder = tiny_model("wan2_2_ti2v_5b")
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "WanPipeline" and index["expand_timesteps"] is True
    transformer = json.loads((folder / "transformer" / "config.json").read_text())
    vae = json.loads((folder / "vae" / "config.json").read_text())
    assert transformer["in_channels"] == transformer["out_channels"] == vae["z_dim"] == 48
    assert (vae["is_residual"], vae["patch_size"], vae["scale_factor_spatial"], vae["scale_factor_temporal"]) == (
        True, 2, 16, 4
    )
    assert len(vae["latents_mean"]) == len(vae["latents_std"]) == 48
    for part, stem in (("transformer", "diffusion_pytorch_model"), ("text_encoder", "model")):
        weight_map = json.loads((folder / part / f"{stem}.safetensors.index.json").read_text())["weight_map"]
        assert all((folder / part / shard).is_file() for shard in weight_map.values())
    scheduler = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    assert (scheduler["_class_name"], scheduler["flow_shift"], scheduler["use_flow_sigmas"]) == (
        "UniPCMultistepScheduler", 5.0, True
    )


def test_tokenizer_is_t5_style_and_spiece_holds_the_same_pieces(tiny_model) -> None:
    from transformers import AutoTokenizer

    folder = tiny_model("wan2_2_ti2v_5b") / "tokenizer"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    ids = tokenizer("a girl in the forest")["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == ["▁a", "▁girl", "▁in", "▁the", "▁forest", "</s>"]
    padded = tokenizer("a cat", padding="max_length", max_length=512)["input_ids"]
    assert len(padded) == 512 and padded[-1] == 0
    vocab = json.loads((folder / "tokenizer.json").read_text())["model"]["vocab"]
    assert _spiece_pieces((folder / "spiece.model").read_bytes()) == [piece for piece, _ in vocab]


def _spiece_pieces(data: bytes) -> list[str]:
    """The pieces of a SentencePiece ModelProto (field 1 messages, their field 1 strings)."""
    def varint(buf: bytes, i: int) -> tuple[int, int]:
        shift = value = 0
        while True:
            byte = buf[i]
            value |= (byte & 0x7F) << shift
            i, shift = i + 1, shift + 7
            if not byte & 0x80:
                return value, i

    pieces, i = [], 0
    while i < len(data):
        tag, i = varint(data, i)
        length, i = varint(data, i)
        if tag == (1 << 3 | 2):
            body = data[i:i + length]
            assert body[0] == 0x0A  # field 1, length-delimited: the piece
            size, start = varint(body, 1)
            pieces.append(body[start:start + size].decode())
            assert struct.unpack("<f", body[start + size + 1:start + size + 5])  # field 2: the score
        i += length
    return pieces


@pytest.mark.parametrize(("duration", "frames"), [(3.0, 73), (5.0, 121), (2.0, 49), (1.0, 25), (8.0, 121), (0.05, 5)])
def test_frames_follow_the_duration_at_24_fps(duration: float, frames: int) -> None:
    from animagent.backends.animator_wan import frame_count

    assert frame_count(duration, 24) == frames
    assert (frames - 1) % 4 == 0


def test_motion_table_covers_every_motion_at_the_models_fps() -> None:
    from animagent.backends.animator_wan import WAN

    assert list(WAN) == list(get_args(Motion))
    assert {row.fps for row in WAN.values()} == {24}
    assert len({row.phrase for row in WAN.values()}) == len(WAN)


@pytest.mark.parametrize("size", [(200, 64), (40, 100), (WIDTH, HEIGHT)])
def test_animate_returns_the_durations_frames_at_the_configured_size(animator, size) -> None:
    frames = animator.animate(_keyframe(*size), "a girl in the forest", "moderate", duration_s=0.5, seed=1)
    assert len(frames) == 13  # 0.5 s at 24 fps: 12 frames, the nearest 4k+1 is 13
    assert all(f.size == (WIDTH, HEIGHT) and f.mode == "RGB" for f in frames)


def test_a_seed_gives_the_same_clip_and_another_seed_another(animator) -> None:
    keyframe = _keyframe(WIDTH, HEIGHT)
    clip = _stack(animator.animate(keyframe, "a cat", "gentle", 0.2, seed=2))
    assert np.array_equal(_stack(animator.animate(keyframe, "a cat", "gentle", 0.2, seed=2)), clip)
    assert not np.array_equal(_stack(animator.animate(keyframe, "a cat", "gentle", 0.2, seed=3)), clip)


def test_the_motion_phrase_and_negative_prompt_reach_the_pipeline(animator, monkeypatch) -> None:
    from animagent.backends.animator_wan import WAN

    seen = []
    encode = animator._pipe.encode_prompt

    def spy(*args, **kwargs):
        seen.append((kwargs["prompt"], kwargs["negative_prompt"]))
        return encode(*args, **kwargs)

    monkeypatch.setattr(animator._pipe, "encode_prompt", spy)
    keyframe = _keyframe(WIDTH, HEIGHT)
    still = _stack(animator.animate(keyframe, "a fox in the city.", "still", 0.2, seed=4))
    intense = _stack(animator.animate(keyframe, "a fox in the city.", "intense", 0.2, seed=4))
    assert seen == [
        (f"a fox in the city. {WAN['still'].phrase}.", animator._config.animator.negative_prompt),
        (f"a fox in the city. {WAN['intense'].phrase}.", animator._config.animator.negative_prompt),
    ]
    assert not np.array_equal(still, intense)


def test_wan_needs_sizes_that_are_multiples_of_32() -> None:
    with pytest.raises(InputError, match="multiples of 32"):
        load_config("wan", overrides=["animator.width=1000"])
    assert load_config("wan").animator.model == "wan2_2_ti2v_5b"  # derived from the kind


def test_the_wan_profile_pulls_wan_and_runs_the_model_cards_settings() -> None:
    from animagent.weights import required_models

    config = load_config("wan")
    assert "wan2_2_ti2v_5b" in required_models(config) and "svd_xt" not in required_models(config)
    animator = config.animator
    assert (animator.width, animator.height, animator.steps, animator.guidance) == (1280, 704, 50, 5.0)
    assert config.dtype == "bfloat16"


@pytest.fixture
def faulty(tiny_model, monkeypatch):
    from animagent.backends.animator_wan import WanAnimator

    tiny_model("wan2_2_ti2v_5b")
    made = []

    def make(fault: str, **gpu):
        monkeypatch.setenv("ANIMAGENT_FAULT", fault)
        faults._passes.clear()
        a = WanAnimator(_config(tiny_model.root, **gpu), tiny_model.root)
        calls = {"denoise": 0}
        pipe_call = type(a._pipe).__call__

        def counting(self, *args, **kwargs):
            calls["denoise"] += 1
            return pipe_call(self, *args, **kwargs)

        monkeypatch.setattr(type(a._pipe), "__call__", counting)
        made.append((a, calls))
        return a, calls

    yield make
    for a, _ in made:
        a.close()


def _animate(a, duration_s: float = 0.5):
    return a.animate(Image.new("RGB", (WIDTH, HEIGHT), "orange"), "a cat", "gentle", duration_s, 7)


def test_decode_oom_tiles_the_vae_and_never_re_denoises(faulty) -> None:
    a, calls = faulty("oom@decode:1")
    assert len(_animate(a)) == 13
    assert calls["denoise"] == 1
    assert a._pipe.vae.use_tiling
    assert a.take_ladder() == ["decode out of memory: vae tiling"]
    assert a.take_ladder() == []


def test_denoise_oom_offloads_then_fails_as_a_resource_error(faulty) -> None:
    a, calls = faulty("oom@animator:1")
    assert len(_animate(a)) == 13 and calls["denoise"] == 1
    assert a.take_ladder() == ["denoise out of memory: cpu offload"]
    b, _ = faulty("oom@animator:1,oom@animator:2")
    with pytest.raises(ResourceError, match="animator.cpu_offload=true"):
        _animate(b)


def test_cpu_offload_starts_with_a_tiled_vae_and_has_no_rungs_left(tiny_model, monkeypatch) -> None:
    from animagent.backends.animator_wan import WanAnimator

    tiny_model("wan2_2_ti2v_5b")
    monkeypatch.setenv("ANIMAGENT_FAULT", "oom@decode:1")
    faults._passes.clear()
    config = _config(tiny_model.root)
    config = config.model_copy(update={"animator": config.animator.model_copy(update={"cpu_offload": True})})
    a = WanAnimator(config, tiny_model.root)
    try:
        assert a._pipe.vae.use_tiling
        with pytest.raises(ResourceError, match="decode"):
            _animate(a)
    finally:
        a.close()


def test_degrading_halves_the_frames_only_when_allowed(faulty) -> None:
    a, _ = faulty("oom@animator:1,oom@animator:2", allow_degrade=True)
    assert len(_animate(a, duration_s=1.0)) == 13  # 25 frames, then 4k+1 near half: 13
    assert a.take_ladder() == ["denoise out of memory: cpu offload", "denoise out of memory: half the frames"]
