"""The SVD animator: one keyframe in, one short clip of frames out (Stable Video Diffusion img2vid-xt).

This module owns the StableVideoDiffusionPipeline (from the weights registry) and MOTION_TABLE, the one place
that maps the director's closed motion vocabulary (`artifacts.Motion`) to SVD's micro-conditioning.
SVD takes no text: motion is steered only by `motion_bucket_id`, `noise_aug_strength` and `fps`.
Heavy imports (torch, diffusers) happen when the module is imported; `animagent` never imports it eagerly.
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import StableVideoDiffusionPipeline
from PIL import Image, ImageOps

from animagent import gpu
from animagent.artifacts import Motion
from animagent.config import Config
from animagent.weights import model_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MotionParams:
    motion_bucket_id: int  # 0..255; higher = more motion
    noise_aug_strength: float  # noise added to the conditioning image; higher = more motion, less resemblance
    fps: int  # the conditioning (and playback) frame rate; the pipeline passes fps - 1 to the model itself


# Stability's reference sampling for SVD-XT is motion_bucket_id 127, noise_aug 0.02, fps 7 (the model sees
# fps_id 6): that is "moderate". The buckets spread around it over the trained 0..255 range. noise_aug stays
# at the reference for calm shots, because it costs resemblance to the keyframe (character identity), and
# rises only where strong motion matters more than fidelity. fps stays at the reference for every motion:
# it is also the clip's playback rate and SVD-XT was fine-tuned at it; the other two steer the motion.
MOTION_TABLE: dict[Motion, MotionParams] = {
    "still": MotionParams(motion_bucket_id=30, noise_aug_strength=0.02, fps=7),
    "gentle": MotionParams(motion_bucket_id=80, noise_aug_strength=0.02, fps=7),
    "moderate": MotionParams(motion_bucket_id=127, noise_aug_strength=0.02, fps=7),
    "lively": MotionParams(motion_bucket_id=170, noise_aug_strength=0.05, fps=7),
    "intense": MotionParams(motion_bucket_id=220, noise_aug_strength=0.1, fps=7),
}


class SVDAnimator:
    def __init__(self, config: Config, weights_root: Path):
        self._config = config
        started = time.perf_counter()
        self._pipe = StableVideoDiffusionPipeline.from_pretrained(
            model_dir(weights_root, config.animator.model, config.weights.flavor), variant="fp16",
            dtype=gpu.dtype(config), use_safetensors=True, local_files_only=True,
        ).to(gpu.device(config))
        self._pipe.set_progress_bar_config(disable=True)
        log.info("loaded %s in %.1f s", config.animator.model, time.perf_counter() - started)

    def animate(self, image: Image.Image, motion: MotionParams, seed: int) -> list[Image.Image]:
        """`config.animator.frames` frames at the animator's size; the keyframe is cover-scaled and centred."""
        animator = self._config.animator
        size = (animator.width, animator.height)
        started = time.perf_counter()
        frames = self._pipe(
            ImageOps.fit(image.convert("RGB"), size, method=Image.Resampling.LANCZOS),
            width=animator.width,
            height=animator.height,
            num_frames=animator.frames,
            num_inference_steps=animator.steps,
            min_guidance_scale=animator.min_guidance,
            max_guidance_scale=animator.max_guidance,
            fps=motion.fps,
            motion_bucket_id=motion.motion_bucket_id,
            noise_aug_strength=motion.noise_aug_strength,
            decode_chunk_size=animator.decode_chunk_size,
            generator=gpu.generator(seed),
        ).frames[0]
        log.debug("animated %d frames at %dx%d in %.2f s", len(frames), *size, time.perf_counter() - started)
        return frames

    def close(self) -> None:
        del self._pipe
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
