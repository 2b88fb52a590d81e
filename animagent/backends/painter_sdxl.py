"""The SDXL painter: text-to-image keyframes and sheets, with IP-Adapter plus references placed by boxes.

This module owns the SDXL pipeline (base model + fp16-fix VAE, from the weights registry) and the IP-Adapter
plus (ViT-H) loaded into it on first use. `sketch` draws from text alone (character and setting sheets);
`draw` adds references: all of them go to one adapter call, each gated by a mask built from its box, each with
its own scale. Adapter scales are restored after every call, so no call leaks state into the next.
Heavy imports (torch, diffusers) happen when the module is imported; `animagent` never imports it eagerly.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, StableDiffusionXLPipeline
from diffusers.image_processor import IPAdapterMaskProcessor
from PIL import Image

from animagent import gpu
from animagent.artifacts import Box
from animagent.config import Config
from animagent.weights import model_dir

log = logging.getLogger(__name__)

IP_ADAPTER_WEIGHTS = ("sdxl_models", "ip-adapter-plus_sdxl_vit-h.safetensors")
IP_ADAPTER_ENCODER = "models/image_encoder"  # the ViT-H encoder; sdxl_models/image_encoder is bigG


@dataclass(frozen=True)
class Reference:
    """An image the painter should follow, how strongly, and where in the frame (None = everywhere)."""

    image: Image.Image
    scale: float
    box: Box | None = None


class SDXLPainter:
    def __init__(self, config: Config, weights_root: Path):
        self._config = config
        self._root = weights_root
        flavor = config.weights.flavor
        dtype = gpu.dtype(config)
        started = time.perf_counter()
        vae = AutoencoderKL.from_pretrained(
            model_dir(weights_root, config.painter.vae, flavor), dtype=dtype, use_safetensors=True,
            local_files_only=True,
        )
        self._pipe = StableDiffusionXLPipeline.from_pretrained(
            model_dir(weights_root, config.painter.model, flavor), vae=vae, variant="fp16", dtype=dtype,
            use_safetensors=True, local_files_only=True,
        ).to(gpu.device(config))
        self._pipe.set_progress_bar_config(disable=True)
        self._adapter_loaded = False
        log.info("loaded %s + %s in %.1f s", config.painter.model, config.painter.vae,
                 time.perf_counter() - started)

    def sketch(self, prompt: str, width: int, height: int, seed: int) -> Image.Image:
        """Text only. With the adapter loaded, it runs at scale 0, which diffusers skips entirely."""
        if not self._adapter_loaded:
            return self._paint(prompt, width, height, seed)
        blank = Image.new("RGB", (width, height))
        with _adapter_scale(self._pipe, 0.0):
            return self._paint(prompt, width, height, seed, ip_adapter_image=[[blank]])

    def draw(self, prompt: str, refs: Sequence[Reference], width: int, height: int, seed: int) -> Image.Image:
        """Text plus references: one adapter call, one mask and one scale per reference."""
        if not refs:
            return self.sketch(prompt, width, height, seed)
        self._load_adapter()
        masks = IPAdapterMaskProcessor().preprocess(
            [_mask(ref.box, width, height) for ref in refs], height=height, width=width
        )
        with _adapter_scale(self._pipe, [[ref.scale for ref in refs]]):
            return self._paint(
                prompt, width, height, seed,
                ip_adapter_image=[[ref.image.convert("RGB") for ref in refs]],
                cross_attention_kwargs={"ip_adapter_masks": [masks.transpose(0, 1)]},  # [1, refs, H, W]
            )

    def close(self) -> None:
        del self._pipe
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _paint(self, prompt: str, width: int, height: int, seed: int, **extra: object) -> Image.Image:
        painter = self._config.painter
        started = time.perf_counter()
        image = self._pipe(
            prompt,
            negative_prompt=painter.negative_prompt,
            width=width,
            height=height,
            num_inference_steps=painter.steps,
            guidance_scale=painter.guidance,
            generator=gpu.generator(seed),
            **extra,
        ).images[0]
        log.debug("painted %dx%d in %.2f s", width, height, time.perf_counter() - started)
        return image

    def _load_adapter(self) -> None:
        if self._adapter_loaded:
            return
        started = time.perf_counter()
        subfolder, weight_name = IP_ADAPTER_WEIGHTS
        self._pipe.load_ip_adapter(
            str(model_dir(self._root, self._config.painter.ip_adapter, self._config.weights.flavor)),
            subfolder=subfolder, weight_name=weight_name, image_encoder_folder=IP_ADAPTER_ENCODER,
            local_files_only=True,
        )
        self._adapter_loaded = True
        log.info("loaded %s in %.1f s", self._config.painter.ip_adapter, time.perf_counter() - started)


@contextmanager
def _adapter_scale(pipe: StableDiffusionXLPipeline, scale: float | list[list[float]]) -> Iterator[None]:
    """Set the adapter scale for one call, then put every layer's previous scale back."""
    saved = adapter_scales(pipe)
    pipe.set_ip_adapter_scale(scale)
    try:
        yield
    finally:
        processors = pipe.unet.attn_processors
        for name, value in saved.items():
            processors[name].scale = value


def adapter_scales(pipe: StableDiffusionXLPipeline) -> dict[str, list]:
    """Each IP-Adapter attention processor's current scale list (one entry per loaded adapter)."""
    return {name: list(p.scale) for name, p in pipe.unet.attn_processors.items() if hasattr(p, "scale")}


def _mask(box: Box | None, width: int, height: int) -> Image.Image:
    mask = Image.new("L", (width, height), 0 if box is not None else 255)
    if box is not None:
        x0, y0, x1, y1 = box.to_pixels(width, height)
        mask.paste(255, (x0, y0, x1, y1))
    return mask
