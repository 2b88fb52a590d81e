"""The Wan animator (`animator.kind: wan`): Wan2.2-TI2V-5B, the keyframe and the shot's words in, a clip out.

This module owns the WanImageToVideoPipeline (registry model `wan2_2_ti2v_5b`) and how a shot becomes its
call: the keyframe is the first frame, the prompt is the keyframe's prompt plus the motion class's phrase
(`WAN`), the negative prompt and guidance come from the config (the model card's),
and the frame count comes from the shot's duration at the model's 24 fps (4k+1 frames, at most 121), so a
3 s shot is 3 s of motion. TI2V-5B's repo is saved as a `WanPipeline` with `expand_timesteps`; the image-to-
video class reads the same folder and conditions the first latent frame on the keyframe (diffusers
pipeline_wan_i2v.py). The transformer and text encoder run in `config.dtype` (bfloat16 in the wan profile),
the VAE in float32 (diffusers' Wan docs: better decoding). Heavy imports happen when the module is imported.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan, WanImageToVideoPipeline
from diffusers.utils.torch_utils import get_module_execution_device
from PIL import Image, ImageOps

from animagent import faults, gpu
from animagent.artifacts import Motion
from animagent.backends.motion import WAN
from animagent.config import Config
from animagent.errors import MissingError
from animagent.weights import model_dir

log = logging.getLogger(__name__)


MAX_FRAMES = 121  # Wan2.2-TI2V-5B's clip length (5 s at 24 fps)
TEMPORAL_STRIDE = 4  # the VAE's temporal compression: clips are 4k+1 frames


def frame_count(duration_s: float, fps: int) -> int:
    """The 4k+1 frame count nearest to `duration_s` at `fps`, from 5 frames up to the model's 121."""
    k = math.floor((duration_s * fps - 1) / TEMPORAL_STRIDE + 0.5)
    return TEMPORAL_STRIDE * min(max(k, 1), (MAX_FRAMES - 1) // TEMPORAL_STRIDE) + 1


def motion_prompt(prompt: str, motion: Motion) -> str:
    """What the pipeline reads: the keyframe's prompt, then the motion class's phrase."""
    return f"{prompt.rstrip(' .')}. {WAN[motion].phrase}."


class WanAnimator:
    def __init__(self, config: Config, weights_root: Path):
        if importlib.util.find_spec("ftfy") is None:
            # diffusers' Wan pipelines clean every prompt with ftfy and fail without it
            raise MissingError("animator.kind wan needs ftfy; install it with: pip install 'animagent[wan]'")
        self._config = config
        self._device = gpu.device(config)
        started = time.perf_counter()
        folder = model_dir(weights_root, config.animator.model, config.weights.flavor)
        vae = AutoencoderKLWan.from_pretrained(
            folder, subfolder="vae", dtype=torch.float32, use_safetensors=True, local_files_only=True
        )
        self._pipe = WanImageToVideoPipeline.from_pretrained(
            folder, vae=vae, dtype=gpu.dtype(config), use_safetensors=True, local_files_only=True
        )
        self._pipe.set_progress_bar_config(disable=True)
        self._offloaded = config.animator.cpu_offload and gpu.cpu_offload(self._pipe, self._device)
        if not self._offloaded:
            self._pipe.to(self._device)
        if config.animator.cpu_offload:
            # Offloaded, the untiled decode is the peak: 23.8 GB allocated (33.4 reserved) for 121 frames at
            # 1280×704 on an H200, 17.2 GB (19.7) tiled (docs/benchmarks.md, "Wan2.2-TI2V-5B").
            self._pipe.vae.enable_tiling()
        self.ladder = gpu.OomLadder(
            "animator", "free the GPU or use --set animator.cpu_offload=true (or --set gpu.allow_degrade=true)"
        )
        log.info("loaded %s in %.1f s", config.animator.model, time.perf_counter() - started)

    def animate(self, image: Image.Image, prompt: str, motion: Motion, duration_s: float, seed: int) -> list[Image.Image]:
        """`frame_count(duration_s)` frames at the animator's size; the keyframe is cover-scaled and centred.

        Out of GPU memory it walks a ladder instead of failing (the rungs taken go to the manifest): denoising
        retries with model CPU offload (unless it is on already), then — only with `gpu.allow_degrade` — with
        half the frames; decoding retries with VAE tiling (on from the start with `animator.cpu_offload`). The latents are kept between the two, so a decode
        failure never re-runs the denoising.
        """
        animator = self._config.animator
        size = (animator.width, animator.height)
        started = time.perf_counter()
        keyframe = ImageOps.fit(image.convert("RGB"), size, method=Image.Resampling.LANCZOS)
        frames = [frame_count(duration_s, WAN[motion].fps)]

        def fewer_frames() -> None:
            frames[0] = max(5, (frames[0] - 1) // 2 // TEMPORAL_STRIDE * TEMPORAL_STRIDE + 1)

        def offload() -> None:
            self._offloaded = gpu.cpu_offload(self._pipe, self._device)

        def denoise() -> torch.Tensor:
            faults.check("animator")
            return self._pipe(
                keyframe,
                motion_prompt(prompt, motion),
                negative_prompt=animator.negative_prompt,
                height=animator.height,
                width=animator.width,
                num_frames=frames[0],
                num_inference_steps=animator.steps,
                guidance_scale=animator.guidance,
                generator=gpu.generator(seed),
                output_type="latent",
            ).frames

        rungs = [] if self._offloaded else [("cpu offload", offload)]
        if self._config.gpu.allow_degrade:
            rungs.append(("half the frames", fewer_frames))
        latents = self.ladder.run("denoise", denoise, rungs)
        denoised = time.perf_counter()
        tiling = [] if self._pipe.vae.use_tiling else [("vae tiling", self._pipe.vae.enable_tiling)]
        video = self.ladder.run("decode", lambda: self._decode(latents), tiling)
        result = self._pipe.video_processor.postprocess_video(video=video, output_type="pil")[0]
        log.debug("animated %d frames at %dx%d: denoised in %.2f s, decoded in %.2f s", len(result), *size,
                  denoised - started, time.perf_counter() - denoised)
        return result

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        """The pipeline's own decode (pipeline_wan_i2v.py): undo the per-channel latent normalisation, decode."""
        faults.check("decode")
        vae = self._pipe.vae
        latents = latents.to(device=get_module_execution_device(vae), dtype=vae.dtype)
        shape = (1, vae.config.z_dim, 1, 1, 1)
        mean = torch.tensor(vae.config.latents_mean).view(shape).to(latents)
        std = torch.tensor(vae.config.latents_std).view(shape).to(latents)
        with torch.no_grad():
            video = vae.decode(latents * std + mean, return_dict=False)[0]
        self._pipe.maybe_free_model_hooks()
        return video

    def take_ladder(self) -> list[str]:
        """The OOM-ladder steps taken since the last call (recorded in the manifest by the stage)."""
        return self.ladder.take()

    def close(self) -> None:
        del self._pipe
        gpu.free_memory()
