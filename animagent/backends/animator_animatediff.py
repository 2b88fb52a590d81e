"""The AnimateDiff animator (`animator.kind: animatediff`): SDXL with the AnimateDiff motion adapter, held to the
keyframe through IP-Adapter.

AnimateDiff-SDXL is text-to-video only (no init image, ecosystem.md §1.7), so the keyframe reaches it as the
IP-Adapter plus image prompt at `animator.keyframe_scale`: the clip keeps the keyframe's characters and place
without being a warp of its pixels. It reuses the painter's SDXL base, fp16-fix VAE, IP-Adapter, guidance and
negative prompt; the motion adapter is `animator.model` (`animatediff_sdxl`). The scheduler is DDIM with the
settings the diffusers docs give for the SDXL beta adapter (linear betas, no sample clipping).
This module owns the pipeline; motion is steered by its table in motion.py: words in the prompt, and the playback
fps. It renders `animator.frames` frames whatever the shot's length: assembly retimes the clip to the shot.
Heavy imports (torch, diffusers) happen when the module is imported; `animagent` never imports it eagerly.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from diffusers import AnimateDiffSDXLPipeline, AutoencoderKL, DDIMScheduler, MotionAdapter
from PIL import Image, ImageOps

from animagent import gpu
from animagent.artifacts import Motion
from animagent.backends.motion import ANIMATEDIFF
from animagent.backends.painter_sdxl import IP_ADAPTER_ENCODER, IP_ADAPTER_WEIGHTS
from animagent.config import Config
from animagent.weights import model_dir

log = logging.getLogger(__name__)


class AnimateDiffAnimator:
    def __init__(self, config: Config, weights_root: Path):
        self._config = config
        flavor = config.weights.flavor
        dtype = gpu.dtype(config)
        started = time.perf_counter()
        adapter = MotionAdapter.from_pretrained(
            model_dir(weights_root, config.animator.model, flavor), variant="fp16", dtype=dtype,
            use_safetensors=True, local_files_only=True,
        )
        vae = AutoencoderKL.from_pretrained(
            model_dir(weights_root, config.painter.vae, flavor), dtype=dtype, use_safetensors=True,
            local_files_only=True,
        )
        self._pipe = AnimateDiffSDXLPipeline.from_pretrained(
            model_dir(weights_root, config.painter.model, flavor), vae=vae, motion_adapter=adapter, variant="fp16",
            dtype=dtype, use_safetensors=True, local_files_only=True,
        )
        self._pipe.scheduler = DDIMScheduler.from_config(
            self._pipe.scheduler.config, clip_sample=False, timestep_spacing="linspace", beta_schedule="linear",
            steps_offset=1,
        )
        subfolder, weight_name = IP_ADAPTER_WEIGHTS
        self._pipe.load_ip_adapter(
            str(model_dir(weights_root, config.painter.ip_adapter, flavor)), subfolder=subfolder,
            weight_name=weight_name, image_encoder_folder=IP_ADAPTER_ENCODER, local_files_only=True,
        )
        self._pipe.set_ip_adapter_scale(config.animator.keyframe_scale)
        self._pipe.to(gpu.device(config))
        self._pipe.set_progress_bar_config(disable=True)
        log.info("loaded %s on %s in %.1f s", config.animator.model, config.painter.model,
                 time.perf_counter() - started)

    def animate(
        self, image: Image.Image, prompt: str, motion: Motion, duration_s: float, seed: int
    ) -> list[Image.Image]:
        """`config.animator.frames` frames at the animator's size, following `prompt`, the motion's words and the
        keyframe (`duration_s` is not used: assembly retimes the clip)."""
        animator, painter = self._config.animator, self._config.painter
        size = (animator.width, animator.height)
        started = time.perf_counter()
        frames = self._pipe(
            f"{prompt} {ANIMATEDIFF[motion].phrase}.",
            negative_prompt=painter.negative_prompt,
            ip_adapter_image=ImageOps.fit(image.convert("RGB"), size, method=Image.Resampling.LANCZOS),
            num_frames=animator.frames,
            width=animator.width,
            height=animator.height,
            num_inference_steps=animator.steps,
            guidance_scale=painter.guidance,
            generator=gpu.generator(seed),
        ).frames[0]
        log.debug("animated %d frames at %dx%d in %.2f s", len(frames), *size, time.perf_counter() - started)
        return frames

    def take_ladder(self) -> list[str]:
        """Out-of-memory recovery steps taken since the last call: this animator has no ladder, so none."""
        return []

    def close(self) -> None:
        del self._pipe
        gpu.free_memory()
