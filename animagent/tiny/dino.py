"""Tiny random DINOv2-base in the Hub repo's exact layout (`dinov2_base` in the registry).

This module owns `build_dinov2(folder)`: the real repo's `config.json` (captured, key order kept) with tiny
sizes, its `preprocessor_config.json` (BitImageProcessor: shortest edge 256, centre crop 224, ImageNet mean and
std) unchanged, and a seeded random `Dinov2Model` as `model.safetensors` under the checkpoint's own tensor names.
Two builds give byte-identical folders. It does not load anything back; backends/embedder_dino.py does.
"""

from __future__ import annotations

import json
from pathlib import Path

# Captured from facebook/dinov2-base@f9e44c8 (config.json, 548 bytes). The tiny build changes only the sizes.
REAL_CONFIG = {
    "architectures": ["Dinov2Model"],
    "attention_probs_dropout_prob": 0.0,
    "drop_path_rate": 0.0,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "hidden_size": 768,
    "image_size": 518,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-06,
    "layerscale_value": 1.0,
    "mlp_ratio": 4,
    "model_type": "dinov2",
    "num_attention_heads": 12,
    "num_channels": 3,
    "num_hidden_layers": 12,
    "patch_size": 14,
    "qkv_bias": True,
    "torch_dtype": "float32",
    "transformers_version": "4.31.0.dev0",
    "use_swiglu_ffn": False,
}
# Captured from facebook/dinov2-base@f9e44c8 (preprocessor_config.json); used as is.
REAL_PREPROCESSOR_CONFIG = {
    "crop_size": {"height": 224, "width": 224},
    "do_center_crop": True,
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": [0.485, 0.456, 0.406],
    "image_processor_type": "BitImageProcessor",
    "image_std": [0.229, 0.224, 0.225],
    "resample": 3,
    "rescale_factor": 0.00392156862745098,
    "size": {"shortest_edge": 256},
}
TINY_SIZES = {"hidden_size": 32, "num_attention_heads": 2, "num_hidden_layers": 2}
SEED = 7


def build_dinov2(folder: Path) -> None:
    """facebook/dinov2-base: config.json, model.safetensors (float32), preprocessor_config.json."""
    import torch
    from safetensors.torch import save_file
    from transformers import Dinov2Config, Dinov2Model

    config = {**REAL_CONFIG, **TINY_SIZES}
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(folder / "config.json", config)
    _write_json(folder / "preprocessor_config.json", REAL_PREPROCESSOR_CONFIG)
    torch.manual_seed(SEED)
    model = Dinov2Model(Dinov2Config(**{k: v for k, v in config.items() if k not in ("architectures", "torch_dtype")}))
    state = {name: tensor.detach().contiguous() for name, tensor in sorted(model.state_dict().items())}
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
