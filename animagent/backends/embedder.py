"""The CLIP embedder: L2-normalised image and text embeddings in one space (identity, CLIP-T, memory).

This module owns loading CLIP ViT-L/14 (`clip_vit_l` in the registry, real or tiny) as `CLIPModel` +
`CLIPTokenizer` + `CLIPImageProcessor` with the config's device and dtype, and turning images or texts into
float32 (N, D) unit vectors. It does not store or compare embeddings (memory.py and the stages do).
Without torchvision, `CLIPImageProcessor` is transformers' PIL implementation (same numbers).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from PIL.Image import Image
from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

from animagent import gpu
from animagent.config import Config
from animagent.weights import model_dir

log = logging.getLogger(__name__)


class ClipEmbedder:
    def __init__(self, config: Config, weights_root: Path, name: str = "clip_vit_l"):
        folder = model_dir(weights_root, name, config.weights.flavor)
        self.device = gpu.device(config)
        self.model = CLIPModel.from_pretrained(folder, dtype=gpu.dtype(config), device_map=self.device)
        self.tokenizer = CLIPTokenizer.from_pretrained(folder)
        self.image_processor = CLIPImageProcessor.from_pretrained(folder)
        log.info("embedder %s loaded from %s", name, folder)

    def images(self, images: list[Image]) -> np.ndarray:
        pixels = self.image_processor(images=images, return_tensors="pt")
        with torch.inference_mode():
            features = self.model.get_image_features(
                pixel_values=pixels["pixel_values"].to(self.device, self.model.dtype)
            ).pooler_output
        return _unit(features)

    def texts(self, texts: list[str]) -> np.ndarray:
        # CLIP reads at most 77 tokens (model_max_length); longer prompts are cut, as every CLIP-T does.
        tokens = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            features = self.model.get_text_features(**tokens).pooler_output
        return _unit(features)

    def close(self) -> None:
        del self.model
        gpu.free_memory()


def _unit(features: torch.Tensor) -> np.ndarray:
    features = features.float()
    return (features / features.norm(dim=-1, keepdim=True)).cpu().numpy()
