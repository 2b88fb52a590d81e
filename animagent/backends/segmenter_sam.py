"""The SAM segmenter: one box prompt in, one boolean mask of the image's size out (the repair step's mask).

This module owns loading SAM ViT-H (`sam_vit_h` in the registry, real or tiny) as transformers `SamModel` +
`SamProcessor` with the config's device and dtype, and the box -> mask call (single-mask output, upscaled
back to the original image by the processor). It does not choose boxes (the director does) or inpaint.
`SamProcessor` works without torchvision (its image processor falls back to the PIL implementation).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from PIL.Image import Image
from transformers import SamModel, SamProcessor

from animagent import gpu
from animagent.config import Config
from animagent.weights import model_dir

log = logging.getLogger(__name__)


class SamSegmenter:
    def __init__(self, config: Config, weights_root: Path, name: str = "sam_vit_h"):
        folder = model_dir(weights_root, name, config.weights.flavor)
        self.device = gpu.device(config)
        self.model = SamModel.from_pretrained(folder, dtype=gpu.dtype(config), device_map=self.device)
        self.processor = SamProcessor.from_pretrained(folder)
        log.info("segmenter %s loaded from %s", name, folder)

    def mask(self, image: Image, box: tuple[int, int, int, int]) -> np.ndarray:
        """Boolean (height, width) mask of the object in `box` = (x0, y0, x1, y1), in the image's pixels."""
        inputs = self.processor(images=image, input_boxes=[[[float(v) for v in box]]], return_tensors="pt")
        with torch.inference_mode():
            output = self.model(
                pixel_values=inputs["pixel_values"].to(self.device, self.model.dtype),
                input_boxes=inputs["input_boxes"].to(self.device, self.model.dtype),
                multimask_output=False,
            )
        masks = self.processor.post_process_masks(
            output.pred_masks.float().cpu(), inputs["original_sizes"], inputs["reshaped_input_sizes"]
        )
        return masks[0][0, 0].numpy()

    def close(self) -> None:
        del self.model
        gpu.free_memory()
