"""The SVD animator: one keyframe in, one short clip of frames out (Stable Video Diffusion img2vid-xt).

This module owns the StableVideoDiffusionPipeline (from the weights registry). SVD takes no text: the prompt is
ignored, and motion is steered only by its table in motion.py (`motion_bucket_id`, `noise_aug_strength`, `fps`).
It renders `animator.frames` frames whatever the shot's length: assembly retimes the clip to the shot.
Two GPU levers act on the UNet at load: `gpu.fp8_animator` (its linear layers in FP8 through torchao) and
`gpu.compile_animator` (its transformer blocks compiled), in that order, so the compiled blocks include the FP8 ones.
Heavy imports (torch, diffusers) happen when the module is imported; `animagent` never imports it eagerly.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from diffusers import StableVideoDiffusionPipeline
from PIL import Image, ImageOps

from animagent import faults, gpu
from animagent.artifacts import Motion
from animagent.backends.motion import SVD
from animagent.config import Config
from animagent.weights import model_dir

log = logging.getLogger(__name__)


class SVDAnimator:
    def __init__(self, config: Config, weights_root: Path):
        self._config = config
        self._device = gpu.device(config)
        started = time.perf_counter()
        self._pipe = StableVideoDiffusionPipeline.from_pretrained(
            model_dir(weights_root, config.animator.model, config.weights.flavor), variant="fp16",
            dtype=gpu.dtype(config), use_safetensors=True, local_files_only=True,
        ).to(self._device)
        self._pipe.set_progress_bar_config(disable=True)
        if config.gpu.fp8_animator:
            reason = gpu.lever_off(config, "fp8_animator")
            if reason is None:
                quantize_fp8(self._pipe.unet)
            else:
                log.warning(reason)
        if config.gpu.compile_animator:
            compile_transformer_blocks(self._pipe.unet)
        self.ladder = gpu.OomLadder(
            "animator", "free the GPU or use --profile lowvram (or --set gpu.allow_degrade=true)"
        )
        log.info("loaded %s in %.1f s", config.animator.model, time.perf_counter() - started)

    def animate(
        self, image: Image.Image, prompt: str, motion: Motion, duration_s: float, seed: int
    ) -> list[Image.Image]:
        """`config.animator.frames` frames at the animator's size; the keyframe is cover-scaled and centred. SVD
        reads no text and renders a fixed frame count, so `prompt` and `duration_s` are not used.

        Out of GPU memory, it walks a ladder instead of failing (the rungs taken go to the manifest):
        denoising retries with model CPU offload, then forward chunking, then — only with
        `gpu.allow_degrade` — half the frames; decoding retries with half the decode chunk down to 1 frame.
        The latents are kept between the two, so a decode failure never re-runs the denoising.
        """
        animator = self._config.animator
        params = SVD[motion]
        size = (animator.width, animator.height)
        started = time.perf_counter()
        keyframe = ImageOps.fit(image.convert("RGB"), size, method=Image.Resampling.LANCZOS)
        frames = [animator.frames]

        def fewer_frames() -> None:
            frames[0] = max(2, frames[0] // 2)

        def denoise():
            faults.check("animator")
            return self._pipe(
                keyframe,
                width=animator.width,
                height=animator.height,
                num_frames=frames[0],
                num_inference_steps=animator.steps,
                min_guidance_scale=animator.min_guidance,
                max_guidance_scale=animator.max_guidance,
                fps=params.fps,
                motion_bucket_id=params.motion_bucket_id,
                noise_aug_strength=params.noise_aug_strength,
                generator=gpu.generator(seed),
                output_type="latent",
            ).frames

        rungs = [("cpu offload", lambda: gpu.cpu_offload(self._pipe, self._device)),
                 ("forward chunking", self._pipe.unet.enable_forward_chunking)]
        if self._config.gpu.allow_degrade:
            rungs.append(("half the frames", fewer_frames))
        latents = self.ladder.run("denoise", denoise, rungs)

        # The pipeline upcasts an fp16 VAE for encoding and casts it back only when it decodes itself.
        self._pipe.vae.to(dtype=self._pipe.unet.dtype)
        chunk = [animator.decode_chunk_size]
        smaller, n = [], animator.decode_chunk_size  # the chunk halved down to one frame: the decode rungs
        while n > 1:
            n //= 2
            smaller.append(n)

        def decode():
            faults.check("decode")
            with torch.no_grad():
                return self._pipe.decode_latents(latents, frames[0], chunk[0])

        video = self.ladder.run(
            "decode", decode,
            [(f"decode_chunk_size {n}", lambda n=n: chunk.__setitem__(0, n)) for n in smaller],
        )
        result = self._pipe.video_processor.postprocess_video(video=video, output_type="pil")[0]
        log.debug("animated %d frames at %dx%d in %.2f s", len(result), *size, time.perf_counter() - started)
        return result

    def take_ladder(self) -> list[str]:
        """The OOM-ladder steps taken since the last call (recorded in the manifest by the stage)."""
        return self.ladder.take()

    def close(self) -> None:
        del self._pipe
        gpu.free_memory()


def quantize_fp8(unet) -> None:
    """Every linear layer of the UNet in FP8 (e4m3), activations scaled at run time (torchao's float8 dynamic
    quantization): half the bytes and twice the tensor-core rate of fp16 for the attention projections and
    feed-forwards, at the cost of the clips no longer being fp16's. Scales per output row and per token need bf16
    weights (torchao's row-wise kernel); an fp16 UNet, the profiles' dtype, is scaled per tensor."""
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, PerTensor, quantize_

    started = time.perf_counter()
    granularity = PerRow() if unet.dtype == torch.bfloat16 else PerTensor()
    # set_inductor_config=False: torchao's inductor settings (coordinate-descent tuning) would lengthen the compile
    # that the first clip of every film pays (gpu.compile_animator).
    quantize_(unet, Float8DynamicActivationFloat8WeightConfig(granularity=granularity, set_inductor_config=False))
    log.info("the animator's linear layers quantized to FP8 in %.1f s", time.perf_counter() - started)


def compile_transformer_blocks(unet) -> None:
    """Regional compilation: each spatial and temporal transformer block goes through torch.compile, the res
    blocks stay eager (their many shapes took minutes to compile). The blocks compile on the first clip (about
    19 s for SVD-XT on an H200) and every later clip of the same size reuses them: 640 -> 556 ms per step."""
    import torch._dynamo
    from diffusers.models.attention import BasicTransformerBlock, TemporalBasicTransformerBlock

    # One compiled graph per block shape; SVD-XT's blocks come in more shapes than dynamo's default cap of 8.
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    for module in unet.modules():
        if isinstance(module, (BasicTransformerBlock, TemporalBasicTransformerBlock)):
            module.compile(fullgraph=True, dynamic=False)
    log.info("the animator's transformer blocks compile on the first clip (about 19 s on an H200)")
