"""The DINOv2 image embedder: images in, L2-normalised CLS features out (VBench-style subject consistency, identity).

This module owns loading a registry DINOv2 model (`transformers.Dinov2Model` + its BitImageProcessor) and turning
PIL images into an (N, D) float32 array whose rows have unit norm. The feature is the model's pooled output:
the final-layernormed CLS token, the image-level descriptor DINO's papers use. CLIP embeddings live in
backends/embedder.py. Heavy imports (torch, transformers) happen when the module is imported; `animagent` never
imports it eagerly.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoImageProcessor, Dinov2Model

from animagent import gpu
from animagent.config import Config
from animagent.weights import model_dir

log = logging.getLogger(__name__)

BATCH = 16  # images per forward pass: bounds activation memory for long clips at full resolution


class DinoEmbedder:
    def __init__(self, config: Config, weights_root: Path, name: str = "dinov2_base"):
        started = time.perf_counter()
        folder = model_dir(weights_root, name, config.weights.flavor)
        self._device = gpu.device(config)
        self._processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
        self._model = Dinov2Model.from_pretrained(
            folder, dtype=gpu.dtype(config), use_safetensors=True, local_files_only=True
        ).to(self._device).eval()
        log.info("loaded %s in %.1f s", name, time.perf_counter() - started)

    def images(self, images: list[Image.Image]) -> np.ndarray:
        """(N, D) float32 CLS features, each row of unit L2 norm."""
        if not images:
            raise ValueError("DinoEmbedder.images needs at least one image")
        rows = []
        for start in range(0, len(images), BATCH):
            batch = [image.convert("RGB") for image in images[start : start + BATCH]]
            pixels = self._processor(images=batch, return_tensors="pt")["pixel_values"]
            with torch.inference_mode():
                pooled = self._model(pixel_values=pixels.to(self._device, self._model.dtype)).pooler_output
            rows.append(torch.nn.functional.normalize(pooled.float(), dim=-1).cpu().numpy())
        return np.concatenate(rows).astype(np.float32)

    def close(self) -> None:
        del self._model
        gpu.free_memory()
