"""Tiny random diffusion models: SDXL base, fp16-fix VAE, IP-Adapter plus (ViT-H), SVD-XT, AnimateDiff SDXL.

Each builder writes exactly the files `animagent.weights.MODELS` lists for its model, in the Hub repo's layout
(fp16 variants where the real repo ships them, hand-written CLIP tokenizer files, the original tencent-ailab
IP-Adapter key format), with seeded random weights: two builds give byte-identical folders. The shapes below
are the contract between the models: the fp16-fix VAE is a drop-in `vae=` for the SDXL pipeline, the
IP-Adapter matches the SDXL UNet's cross-attention layers, the motion adapter matches its blocks.
Everything is small enough to render 64×64 in 2 steps on a CPU in well under a second.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# --- shared shapes ------------------------------------------------------------------------------------------
TEXT_HIDDEN = 32  # hidden size (and projection size) of both CLIP text encoders
SDXL_UNET: dict[str, Any] = {
    "sample_size": 8,
    "block_out_channels": (32, 64),
    "layers_per_block": 1,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
    "attention_head_dim": (2, 4),
    "transformer_layers_per_block": (1, 2),
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 8,
    "projection_class_embeddings_input_dim": 6 * 8 + TEXT_HIDDEN,  # 6 size/crop ids × time dim + pooled text
    "cross_attention_dim": 2 * TEXT_HIDDEN,  # both text encoders' hidden states, concatenated
    "norm_num_groups": 8,
}
SDXL_VAE: dict[str, Any] = {  # four blocks: vae_scale_factor 8 and 4 latent channels, as in the real VAE
    "block_out_channels": (8, 8, 16, 16),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "latent_channels": 4,
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "sample_size": 64,
    "scaling_factor": 0.13025,
}
IP_ENCODER_HIDDEN = 32  # the IP-Adapter image encoder (ViT-H stand-in)
IP_ENCODER_IMAGE = 32  # its input size; diffusers builds the feature extractor from it
IP_QUERIES = 4  # Resampler output tokens (16 in the real plus adapter)
RESAMPLER_DIM = 64  # diffusers derives heads = dim // 64, so dim_head must be 64
RESAMPLER_DEPTH = 4  # diffusers assumes the original depth of 4
SVD_CROSS_ATTENTION = 32  # SVD UNet cross-attention dim = image encoder projection dim
SVD_FRAMES = 4

_SPECIALS = ("<|startoftext|>", "<|endoftext|>")
# Words that get whole-word merges, so common prompt words encode to single tokens like the real vocab.
_WORDS = (
    "a", "an", "and", "the", "of", "in", "on", "with", "girl", "boy", "man", "woman", "cat", "dog", "fox",
    "forest", "city", "house", "room", "night", "day", "sky", "sea", "red", "blue", "green", "portrait",
    "full", "body", "character", "sheet", "setting", "wide", "shot", "close", "up", "anime", "style",
    "blurry", "text", "watermark", "low", "quality",
)


def build_sdxl(folder: Path) -> None:
    """stabilityai/stable-diffusion-xl-base-1.0: fp16 variants of both text encoders, UNet and VAE."""
    import diffusers
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    vocab, merges = _clip_vocab()
    for name, cls, pad, act, seed in (
        ("text_encoder", CLIPTextModel, "<|endoftext|>", "quick_gelu", 11),
        ("text_encoder_2", CLIPTextModelWithProjection, "!", "gelu", 12),
    ):
        _write_tokenizer(folder / name.replace("text_encoder", "tokenizer"), vocab, merges, pad)
        text_config = CLIPTextConfig(
            vocab_size=len(vocab), hidden_size=TEXT_HIDDEN, intermediate_size=37, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=77, projection_dim=TEXT_HIDDEN, hidden_act=act,
            bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
            pad_token_id=vocab[pad],
        )
        with _seed(seed):
            encoder = cls(text_config)
        encoder.half().save_pretrained(folder / name, variant="fp16")

    with _seed(1):
        unet = UNet2DConditionModel(**SDXL_UNET)
    unet.half().save_pretrained(folder / "unet", variant="fp16")
    with _seed(2):
        vae = AutoencoderKL(**SDXL_VAE, force_upcast=True)
    vae.half().save_pretrained(folder / "vae", variant="fp16")
    EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
        timestep_spacing="leading", interpolation_type="linear", prediction_type="epsilon",
    ).save_pretrained(folder / "scheduler")
    _write_json(folder / "model_index.json", {
        "_class_name": "StableDiffusionXLPipeline",
        "_diffusers_version": diffusers.__version__,
        "force_zeros_for_empty_prompt": True,
        "add_watermarker": None,
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "tokenizer_2": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    })


def build_vae_fp16_fix(folder: Path) -> None:
    """madebyollin/sdxl-vae-fp16-fix: the SDXL VAE's shape, `force_upcast: false`, fp32, no variant."""
    from diffusers import AutoencoderKL

    with _seed(3):
        vae = AutoencoderKL(**SDXL_VAE, force_upcast=False)
    vae.save_pretrained(folder)


def build_ip_adapter(folder: Path) -> None:
    """h94/IP-Adapter: the ViT-H image encoder (models/) and the SDXL plus adapter, original key format."""
    import torch
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    encoder_config = CLIPVisionConfig(
        hidden_size=IP_ENCODER_HIDDEN, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
        image_size=IP_ENCODER_IMAGE, patch_size=8, projection_dim=IP_ENCODER_HIDDEN, hidden_act="gelu",
    )
    with _seed(4):
        encoder = CLIPVisionModelWithProjection(encoder_config)
    encoder.save_pretrained(folder / "models" / "image_encoder")

    with _seed(5):
        weights = {f"image_proj.{k}": v for k, v in _resampler_state().items()}
    # One to_k_ip/to_v_ip pair per cross-attention processor, numbered as diffusers reads them: processors
    # are enumerated in `attn_processors` order (attn1, attn2, attn1, ...) and only the attn2 ones (odd ids)
    # carry weights.
    with torch.device("meta"):
        unet = UNet2DConditionModel(**SDXL_UNET)
    channels = SDXL_UNET["block_out_channels"]
    generator = torch.Generator().manual_seed(6)
    for index, name in enumerate(unet.attn_processors):
        if name.endswith("attn1.processor"):
            continue
        if name.startswith("mid_block"):
            hidden = channels[-1]
        elif name.startswith("up_blocks"):
            hidden = channels[::-1][int(name.split(".")[1])]
        else:
            hidden = channels[int(name.split(".")[1])]
        for projection in ("to_k_ip", "to_v_ip"):
            weight = torch.randn(hidden, SDXL_UNET["cross_attention_dim"], generator=generator) * 0.1
            weights[f"ip_adapter.{index}.{projection}.weight"] = weight
    (folder / "sdxl_models").mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.to(torch.float16).contiguous() for k, v in weights.items()},
        folder / "sdxl_models" / "ip-adapter-plus_sdxl_vit-h.safetensors",
        metadata={"format": "pt"},
    )


def build_svd(folder: Path) -> None:
    """stabilityai/stable-video-diffusion-img2vid-xt: fp16 variants of the image encoder, UNet and VAE."""
    import diffusers
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        UNetSpatioTemporalConditionModel,
    )
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    with _seed(7):
        unet = UNetSpatioTemporalConditionModel(
            sample_size=8,
            in_channels=8,  # noisy latents + the conditioning image's latents
            out_channels=4,
            block_out_channels=(32, 64),  # GroupNorm(32) is hard-coded in the spatio-temporal blocks
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
            up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
            cross_attention_dim=SVD_CROSS_ATTENTION,
            num_attention_heads=(2, 4),
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=3 * 8,  # fps, motion_bucket_id, noise_aug_strength
            num_frames=SVD_FRAMES,
        )
    unet.half().save_pretrained(folder / "unet", variant="fp16")
    with _seed(8):
        vae = AutoencoderKLTemporalDecoder(
            block_out_channels=(32, 32, 32, 32),  # no norm_num_groups argument: GroupNorm(32) is hard-coded
            down_block_types=("DownEncoderBlock2D",) * 4,
            latent_channels=4,
            layers_per_block=1,
            sample_size=64,
        )
    vae.half().save_pretrained(folder / "vae", variant="fp16")
    encoder_config = CLIPVisionConfig(  # the pipeline resizes to 224 itself, so the encoder must take 224
        hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=224,
        patch_size=32, projection_dim=SVD_CROSS_ATTENTION, hidden_act="gelu",
    )
    with _seed(9):
        encoder = CLIPVisionModelWithProjection(encoder_config)
    encoder.half().save_pretrained(folder / "image_encoder", variant="fp16")
    EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
        timestep_spacing="leading", interpolation_type="linear", prediction_type="v_prediction",
        sigma_min=0.002, sigma_max=700.0, timestep_type="continuous", use_karras_sigmas=True,
    ).save_pretrained(folder / "scheduler")
    _write_json(folder / "feature_extractor" / "preprocessor_config.json", {  # the real repo's file
        "crop_size": {"height": 224, "width": 224},
        "do_center_crop": True,
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "feature_extractor_type": "CLIPFeatureExtractor",
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_processor_type": "CLIPImageProcessor",
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "resample": 3,
        "rescale_factor": 0.00392156862745098,
        "size": {"shortest_edge": 224},
    })
    _write_json(folder / "model_index.json", {
        "_class_name": "StableVideoDiffusionPipeline",
        "_diffusers_version": diffusers.__version__,
        "feature_extractor": ["transformers", "CLIPImageProcessor"],
        "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "unet": ["diffusers", "UNetSpatioTemporalConditionModel"],
        "vae": ["diffusers", "AutoencoderKLTemporalDecoder"],
    })


def build_animatediff_sdxl(folder: Path) -> None:
    """guoyww/animatediff-motion-adapter-sdxl-beta: a MotionAdapter matching the tiny SDXL UNet's blocks."""
    from diffusers import MotionAdapter

    with _seed(10):
        adapter = MotionAdapter(
            block_out_channels=SDXL_UNET["block_out_channels"],  # one motion block per UNet block
            motion_layers_per_block=SDXL_UNET["layers_per_block"],  # must equal the UNet's layers_per_block
            motion_norm_num_groups=8,
            motion_num_attention_heads=4,
            motion_max_seq_length=32,
            use_motion_mid_block=False,  # as in the SDXL beta adapter
        )
    adapter.half().save_pretrained(folder, variant="fp16")


# --- helpers ------------------------------------------------------------------------------------------------


@contextmanager
def _seed(seed: int) -> Iterator[None]:
    """Run the block under a fixed torch seed without disturbing the caller's random state."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _resampler_state() -> dict[str, torch.Tensor]:
    """State dict of the original IP-Adapter plus `Resampler` (tencent-ailab resampler.py), tiny dimensions.

    latents, proj_in, proj_out, norm_out, then per layer: `0` = PerceiverAttention (norm1, norm2, to_q, to_kv,
    to_out; no biases on the projections), `1` = FeedForward Sequential(LayerNorm, Linear, GELU, Linear).
    """
    import torch
    from torch import nn

    dim, inner = RESAMPLER_DIM, RESAMPLER_DIM  # heads × dim_head = 1 × 64
    layers = nn.ModuleList(
        nn.ModuleList([
            nn.ModuleDict({
                "norm1": nn.LayerNorm(dim), "norm2": nn.LayerNorm(dim),
                "to_q": nn.Linear(dim, inner, bias=False), "to_kv": nn.Linear(dim, 2 * inner, bias=False),
                "to_out": nn.Linear(inner, dim, bias=False),
            }),
            nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 4 * dim, bias=False), nn.GELU(),
                          nn.Linear(4 * dim, dim, bias=False)),
        ])
        for _ in range(RESAMPLER_DEPTH)
    )
    resampler = nn.Module()
    resampler.latents = nn.Parameter(torch.randn(1, IP_QUERIES, dim) / dim**0.5)
    resampler.proj_in = nn.Linear(IP_ENCODER_HIDDEN, dim)
    resampler.proj_out = nn.Linear(dim, SDXL_UNET["cross_attention_dim"])
    resampler.norm_out = nn.LayerNorm(SDXL_UNET["cross_attention_dim"])
    resampler.layers = layers
    return {k: v.detach() for k, v in resampler.state_dict().items()}


def _clip_vocab() -> tuple[dict[str, int], list[str]]:
    """A CLIP-style byte-level BPE vocab: 256 byte symbols, the same with `</w>`, word merges, specials."""
    symbols = _bytes_to_unicode()
    tokens = symbols + [s + "</w>" for s in symbols]
    merges: list[str] = []
    for word in _WORDS:
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            merge = f"{pieces[0]} {pieces[1]}"
            if merge not in merges:
                merges.append(merge)
                tokens.append(pieces[0] + pieces[1])
            pieces = [pieces[0] + pieces[1], *pieces[2:]]
    tokens.extend(_SPECIALS)
    return {token: i for i, token in enumerate(tokens)}, merges


def _bytes_to_unicode() -> list[str]:
    """GPT-2/CLIP's printable stand-ins for the 256 byte values, in CLIP's vocab order."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    unprintable = [b for b in range(256) if b not in printable]
    return [chr(c) for c in printable] + [chr(256 + i) for i in range(len(unprintable))]


def _write_tokenizer(folder: Path, vocab: dict[str, int], merges: list[str], pad_token: str) -> None:
    """The four files of SDXL's tokenizer folders; tokenizer_2 differs only by `pad_token: "!"`."""
    def special(content: str, typed: bool) -> dict[str, Any]:
        token = {"content": content, "lstrip": False, "normalized": True, "rstrip": False,
                 "single_word": False}
        return {"__type": "AddedToken", **token} if typed else token

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False) + "\n", encoding="utf-8")
    merges_text = "#version: 0.2\n" + "".join(m + "\n" for m in merges)
    (folder / "merges.txt").write_text(merges_text, encoding="utf-8")
    _write_json(folder / "special_tokens_map.json", {
        "bos_token": special("<|startoftext|>", False),
        "eos_token": special("<|endoftext|>", False),
        "pad_token": pad_token,
        "unk_token": special("<|endoftext|>", False),
    })
    _write_json(folder / "tokenizer_config.json", {
        "add_prefix_space": False,
        "bos_token": special("<|startoftext|>", True),
        "clean_up_tokenization_spaces": True,
        "do_lower_case": True,
        "eos_token": special("<|endoftext|>", True),
        "errors": "replace",
        "model_max_length": 77,  # SDXL pads prompts to this; it must not exceed max_position_embeddings
        "pad_token": pad_token,
        "tokenizer_class": "CLIPTokenizer",
        "unk_token": special("<|endoftext|>", True),
    })


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
