"""Tiny random Wan2.2-TI2V-5B in the layout of Wan-AI/Wan2.2-TI2V-5B-Diffusers.

Writes exactly the files `animagent.weights.MODELS["wan2_2_ti2v_5b"]` lists: the UMT5 text encoder in three bf16
shards with its index, the T5 tokenizer (tokenizer.json, a SentencePiece `spiece.model`, the two JSON configs),
the transformer in five fp32 shards with its index, the fp32 VAE, the UniPC scheduler and `model_index.json`
(`WanPipeline` with `expand_timesteps`, as diffusers' conversion script saves TI2V-5B). The architecture keeps
what the pipeline depends on: 48 latent channels, the Wan2.2 VAE's patchified residual layout and its
4×16×16 compression, 1×2×2 transformer patches, per-token timesteps; widths and depths are tiny. Seeded random
weights: two builds give byte-identical folders.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import TYPE_CHECKING

from animagent.tiny.diffusion import _seed, _write_json

if TYPE_CHECKING:
    import torch

TEXT_DIM = 32  # d_model of the tiny UMT5 = the transformer's text_dim (4096 in UMT5-XXL)
TEXT_SHARDS, TRANSFORMER_SHARDS = 3, 5  # as in the real repo
# The Wan2.2 VAE's per-channel latent statistics (diffusers scripts/convert_wan_to_diffusers.py, vae22 config).
LATENTS_MEAN = [
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557, -0.1382, 0.0542, 0.2813, 0.0891, 0.1570,
    -0.0098, 0.0375, -0.1825, -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502, -0.2055, -0.0322,
    0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230, -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520,
    0.3748, 0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
]
LATENTS_STD = [
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013, 0.8158, 1.0344, 0.5894, 1.0901, 0.6885, 0.6165,
    0.8454, 0.4978, 0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659, 0.7069, 0.5338, 0.4889, 0.4917,
    0.4069, 0.4999, 0.6866, 0.4093, 0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887, 0.3971, 1.0600,
    0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
]
_SPECIALS = ("<pad>", "</s>", "<unk>")  # T5's ids 0, 1, 2
# Whole words the tiny vocabulary holds as one piece each (with SentencePiece's word-start mark), so prompts
# and the motion phrases encode to few tokens; everything else falls back to single characters.
_WORDS = (
    "a", "an", "and", "the", "of", "in", "on", "with", "girl", "boy", "cat", "fox", "forest", "city", "night", "sky",
    "red", "blue", "anime", "style", "wide", "shot", "close", "up", "slow", "gentle", "movement", "motion", "still",
    "camera", "fast", "lively", "intense", "natural", "almost", "quick", "action", "dynamic",
)


def build_wan(folder: Path) -> None:
    import diffusers
    import torch
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    pieces = _pieces()
    _write_tokenizer(folder / "tokenizer", pieces)
    with _seed(21):
        encoder = UMT5EncoderModel(UMT5Config(
            vocab_size=len(pieces), d_model=TEXT_DIM, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
            relative_attention_num_buckets=32, relative_attention_max_distance=128, feed_forward_proj="gated-gelu",
            is_encoder_decoder=False, use_cache=False, tie_word_embeddings=False, pad_token_id=0, eos_token_id=1,
            decoder_start_token_id=0,
        ))
    encoder.to(torch.bfloat16).config.save_pretrained(folder / "text_encoder")
    state = {k: v for k, v in encoder.state_dict().items() if k != "encoder.embed_tokens.weight"}  # tied to shared
    _save_shards(folder / "text_encoder", "model", state, TEXT_SHARDS, "model.safetensors.index.json")

    with _seed(22):
        transformer = WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=48, out_channels=48,
            text_dim=TEXT_DIM, freq_dim=32, ffn_dim=32, num_layers=2, cross_attn_norm=True,
            qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=None, added_kv_proj_dim=None, rope_max_seq_len=1024,
        )
    transformer.save_config(folder / "transformer")
    _save_shards(folder / "transformer", "diffusion_pytorch_model", transformer.state_dict(), TRANSFORMER_SHARDS,
                 "diffusion_pytorch_model.safetensors.index.json")

    with _seed(23):
        vae = AutoencoderKLWan(
            base_dim=8, decoder_base_dim=8, z_dim=48, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
            temperal_downsample=[False, True, True], latents_mean=LATENTS_MEAN, latents_std=LATENTS_STD,
            is_residual=True, in_channels=12, out_channels=12, patch_size=2, scale_factor_temporal=4,
            scale_factor_spatial=16,
        )
    vae.save_pretrained(folder / "vae")
    UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=5.0
    ).save_pretrained(folder / "scheduler")
    _write_json(folder / "model_index.json", {
        "_class_name": "WanPipeline",
        "_diffusers_version": diffusers.__version__,
        "boundary_ratio": None,
        "expand_timesteps": True,
        "scheduler": ["diffusers", "UniPCMultistepScheduler"],
        "text_encoder": ["transformers", "UMT5EncoderModel"],
        "tokenizer": ["transformers", "T5TokenizerFast"],
        "transformer": ["diffusers", "WanTransformer3DModel"],
        "transformer_2": [None, None],
        "vae": ["diffusers", "AutoencoderKLWan"],
    })


def _save_shards(folder: Path, stem: str, state: dict[str, torch.Tensor], count: int, index: str) -> None:
    """`state` split by key order into `count` shards named as diffusers and transformers name them, plus the
    index that maps every tensor to its shard."""
    from safetensors.torch import save_file

    keys = sorted(state)
    names = [f"{stem}-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)]
    per = -(-len(keys) // count)
    weight_map = {}
    for i, name in enumerate(names):
        part = {k: state[k].contiguous() for k in keys[i * per:(i + 1) * per]}
        save_file(part, str(folder / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, name))
    total = sum(t.numel() * t.element_size() for t in state.values())
    _write_json(folder / index, {"metadata": {"total_size": total}, "weight_map": weight_map})


def _pieces() -> list[str]:
    """The tiny vocabulary in T5's order: specials, word pieces, then single characters."""
    chars = [chr(c) for c in range(0x21, 0x7F)]
    return [*_SPECIALS, "▁", *(f"▁{w}" for w in _WORDS), *chars]


def _write_tokenizer(folder: Path, pieces: list[str]) -> None:
    """T5TokenizerFast's files: a Unigram tokenizer.json (Metaspace, `</s>` appended), its SentencePiece model,
    and the two JSON configs. Scores prefer whole words over characters."""
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    scores = [(p, 0.0) for p in _SPECIALS] + [(p, -1.0 - 0.01 * i) for i, p in enumerate(pieces[3:])]
    tokenizer = Tokenizer(Unigram(scores, unk_id=2, byte_fallback=False))
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    tokenizer.add_special_tokens([AddedToken(p, normalized=False) for p in _SPECIALS])
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "spiece.model").write_bytes(_sentencepiece_model(scores))
    _write_json(folder / "special_tokens_map.json", {"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"})
    _write_json(folder / "tokenizer_config.json", {
        "clean_up_tokenization_spaces": True,
        "eos_token": "</s>",
        "extra_ids": 0,
        "model_max_length": 512,  # the Wan pipeline pads every prompt to 512 tokens
        "pad_token": "<pad>",
        "tokenizer_class": "T5Tokenizer",
        "unk_token": "<unk>",
    })


def _sentencepiece_model(scores: list[tuple[str, float]]) -> bytes:
    """A SentencePiece ModelProto (protobuf wire format, written by hand: no protobuf dependency): one
    SentencePiece message (piece, score, type) per vocabulary entry and a Unigram trainer spec."""
    def field(number: int, wire: int, payload: bytes) -> bytes:
        return _varint(number << 3 | wire) + payload

    def message(number: int, body: bytes) -> bytes:
        return field(number, 2, _varint(len(body)) + body)

    kinds = {"<unk>": 2, "<pad>": 3, "</s>": 3}  # UNKNOWN, CONTROL; NORMAL (1) otherwise
    out = b""
    for piece, score in scores:
        text = piece.encode()
        body = field(1, 2, _varint(len(text)) + text) + field(2, 5, struct.pack("<f", score))
        body += field(3, 0, _varint(kinds.get(piece, 1)))
        out += message(1, body)
    trainer = field(3, 0, _varint(1)) + field(4, 0, _varint(len(scores)))  # model_type UNIGRAM, vocab_size
    # T5's special ids: unk 2, no bos (-1, as a 64-bit two's-complement varint), eos 1, pad 0
    trainer += field(40, 0, _varint(2)) + field(41, 0, _varint(2**64 - 1)) + field(42, 0, _varint(1))
    trainer += field(43, 0, _varint(0))
    return out + message(2, trainer)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)
