"""The SDXL painter: sheets and keyframes as batches of candidates, with IP-Adapter references; repair by inpainting.

This module owns the SDXL pipeline (base model + fp16-fix VAE, from the weights registry), its inpainting twin
(`StableDiffusionXLInpaintPipeline.from_pipe`: the same weights and the same loaded adapters, no extra memory) and
two instances of the IP-Adapter plus (ViT-H), loaded on first use: adapter 0 takes the characters' references,
each gated by a mask built from its box and with its own scale; adapter 1 takes the setting's reference through
InstantStyle's per-layer scales (the style block only), so the place lends its palette, texture and light without
laying its empty composition over the characters. `sketch` draws from text alone; `draw` adds references; both
draw one candidate per seed in one batched call. `repair` inpaints one masked region with one reference.
Adapter scales are restored after every call, so no call leaks state into the next. The UNet's attention
processors (fused self-attention; masks resized once per call) come from `sdxl_attention`. With `gpu.graph_painter`
the UNet's forward, adapters included, is replayed from CUDA graphs (`gpu.CudaGraphs`): one per call shape (image
size, candidates, references) and adapter scales, never per call's masks or embeddings; they are dropped whenever the
weights move or change. `sleep` / `wake` move the pipelines to CPU memory and back while the director has the GPU
(`gpu.one_heavy_model`).
Heavy imports (torch, diffusers) happen when the module is imported; `animagent` never imports it eagerly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, StableDiffusionXLInpaintPipeline, StableDiffusionXLPipeline
from diffusers.image_processor import IPAdapterMaskProcessor
from PIL import Image

from animagent import faults, gpu
from animagent.artifacts import Box, Reference
from animagent.backends import sdxl_attention
from animagent.config import Config
from animagent.weights import model_dir

log = logging.getLogger(__name__)

IP_ADAPTER_WEIGHTS = ("sdxl_models", "ip-adapter-plus_sdxl_vit-h.safetensors")
IP_ADAPTER_ENCODER = "models/image_encoder"  # the ViT-H encoder; sdxl_models/image_encoder is bigG
# InstantStyle (arXiv 2404.02733; diffusers ip_adapter.md "Style and layout control"): in SDXL the second
# attention of up_blocks.0 carries style. The tiny UNet has the same block, with fewer attentions around it.
STYLE_BLOCK, STYLE_ATTENTION = 0, 1


class SDXLPainter:
    def __init__(self, config: Config, weights_root: Path):
        self._config = config
        self._root = weights_root
        flavor = config.weights.flavor
        dtype = gpu.dtype(config)
        self._device = gpu.device(config)
        started = time.perf_counter()
        vae = AutoencoderKL.from_pretrained(
            model_dir(weights_root, config.painter.vae, flavor), dtype=dtype, use_safetensors=True,
            local_files_only=True,
        )
        self._pipe = StableDiffusionXLPipeline.from_pretrained(
            model_dir(weights_root, config.painter.model, flavor), vae=vae, variant="fp16", dtype=dtype,
            use_safetensors=True, local_files_only=True,
        ).to(self._device)
        self._pipe.set_progress_bar_config(disable=True)
        self._regions = sdxl_attention.install(self._pipe.unet)
        self._graphs: gpu.CudaGraphs | None = None
        if config.gpu.graph_painter:
            reason = gpu.lever_off(config, "graph_painter")
            if reason is None:
                # A graph bakes in the adapter scales (Python floats in the processors): they are part of its key.
                self._graphs = gpu.CudaGraphs(self._pipe.unet, key=lambda: tuple(str(p.scale) for p in self._regions))
            else:
                log.warning(reason)
        self.ladder = gpu.OomLadder("painter", "free the GPU or use --profile lowvram")
        self._inpaint: StableDiffusionXLInpaintPipeline | None = None
        self._adapter_loaded = False
        self._parked = False
        self._host = gpu.HostCopy()  # the CPU copy of the weights that parking keeps (lowvram)
        self._offloaded = False  # model CPU offload (an OOM rung) places the modules itself from then on
        log.info("loaded %s + %s in %.1f s", config.painter.model, config.painter.vae,
                 time.perf_counter() - started)

    def sketch(self, prompt: str, width: int, height: int, seeds: Sequence[int]) -> list[Image.Image]:
        """Text only, one image per seed. With the adapters loaded they run at scale 0, which diffusers skips."""
        if not self._adapter_loaded:
            return self._paint(self._pipe, prompt, width, height, seeds)
        blank = Image.new("RGB", (width, height))
        with _adapter_scale(self._pipe, [0.0, 0.0]):
            return self._paint(self._pipe, prompt, width, height, seeds, ip_adapter_image=[[blank], blank])

    def draw(
        self,
        prompt: str,
        references: Sequence[Reference],
        images: Sequence[Image.Image],
        width: int,
        height: int,
        seeds: Sequence[int],
        prompt_2: str | None = None,
    ) -> list[Image.Image]:
        """Text plus references, one image per seed (`images[i]` is `references[i]`'s picture). References with
        `layers="all"` share adapter 0, one mask (from its box) and one scale each; the one with `layers="style"`
        goes to adapter 1 through the style block only. `prompt_2` feeds SDXL's second text encoder (None: `prompt`
        feeds both)."""
        if not references:
            return self.sketch(prompt, width, height, seeds)
        self._load_adapter()
        refs, style = _split(references, images)
        blank = Image.new("RGB", (width, height))
        characters = [image.convert("RGB") for _, image in refs] or [blank]
        scales = [[ref.scale for ref, _ in refs] or [0.0], self._style_scale(style)]
        with _adapter_scale(self._pipe, scales):
            return self._paint(
                self._pipe, prompt, width, height, seeds, prompt_2=prompt_2,
                ip_adapter_image=[characters, style[1].convert("RGB") if style is not None else blank],
                cross_attention_kwargs={
                    "ip_adapter_masks": self._region_masks([[ref.box for ref, _ in refs] or [None], [None]], width,
                                                           height)
                },
            )

    def repair(
        self,
        image: Image.Image,
        mask: np.ndarray,
        prompt: str,
        references: Sequence[Reference],
        images: Sequence[Image.Image],
        strength: float,
        seed: int,
    ) -> Image.Image:
        """Inpaint the `mask` (bool, image-sized) region of `image` with the one `layers="all"` reference
        (whole-frame on adapter 0: the inpainting mask is what confines it) and the style one, if any. Pixels outside
        the mask are returned untouched: the VAE round trip would otherwise alter them slightly everywhere."""
        self._load_adapter()
        refs, style = _split(references, images)
        if len(refs) != 1:
            raise ValueError(f"repair takes one character reference, got {len(refs)}")
        ((ref, ref_image),) = refs
        if self._inpaint is None:
            # Shares the pipeline's modules and its loaded adapters; scales are set per call, as for draw.
            # from_pipe casts the shared modules to float32 unless told a dtype: on an H200 that made every
            # draw after the first repair 6x slower (docs/benchmarks.md).
            self._inpaint = StableDiffusionXLInpaintPipeline.from_pipe(self._pipe, dtype=self._pipe.unet.dtype)
            self._inpaint.set_progress_bar_config(disable=True)
        region = Image.fromarray(mask.astype(np.uint8) * 255)  # 2-D uint8: mode L
        blank = Image.new("RGB", image.size)
        with _adapter_scale(self._pipe, [[ref.scale], self._style_scale(style)]):
            (painted,) = self._paint(
                self._inpaint, prompt, image.width, image.height, [seed], image=image.convert("RGB"),
                mask_image=region, strength=strength,
                ip_adapter_image=[[ref_image.convert("RGB")], style[1].convert("RGB") if style is not None else blank],
                # per-image scales need per-adapter masks; whole-frame ones change nothing else
                cross_attention_kwargs={"ip_adapter_masks": self._region_masks([[None], [None]], *image.size)},
            )
        return Image.composite(painted, image.convert("RGB"), region)

    def sleep(self) -> None:
        """Every module to CPU memory and the GPU's cached blocks freed, so the director fits (lowvram). The
        inpainting pipeline shares these modules, so it moves with them."""
        if self._parked or self._offloaded:
            return
        started = time.perf_counter()
        if self._graphs is not None:
            self._graphs.clear()  # they hold the weights' GPU addresses, and their own memory
        self._host.park(self._modules())  # fp16 on the CPU only waits there, it never runs
        gpu.free_memory()
        self._parked = True
        log.info("painter parked in CPU memory in %.2f s", time.perf_counter() - started)

    def wake(self) -> None:
        if not self._parked:
            return
        started = time.perf_counter()
        self._host.unpark(self._modules(), self._device)
        self._parked = False
        log.info("painter back on %s in %.2f s", self._device, time.perf_counter() - started)

    def _modules(self) -> list[torch.nn.Module]:
        return [m for m in self._pipe.components.values() if isinstance(m, torch.nn.Module)]

    def close(self) -> None:
        if self._graphs is not None:
            self._graphs.remove()
            self._graphs = None
        del self._pipe
        self._inpaint = None
        gpu.free_memory()

    def _region_masks(self, boxes: list[list[Box | None]], width: int, height: int) -> sdxl_attention.RegionMasks:
        """Per adapter, one [1, images, H, W] mask tensor from each image's box (None: the whole frame), on the
        pipeline's device: CPU masks meant a host-device copy in every layer at every step (the H200 idled 9 of a
        keyframe's 11 s)."""
        processor = IPAdapterMaskProcessor()
        return sdxl_attention.RegionMasks([
            processor.preprocess([_mask(box, width, height) for box in adapter], height=height, width=width)
            .transpose(0, 1).to(self._device)
            for adapter in boxes
        ])

    def _style_scale(self, style: tuple[Reference, Image.Image] | None) -> float | dict:
        """Adapter 1's scale: InstantStyle's style block at the reference's scale, every other layer at 0."""
        if style is None:
            return 0.0
        count = len(self._pipe.unet.up_blocks[STYLE_BLOCK].attentions)
        layers = [style[0].scale if i == STYLE_ATTENTION else 0.0 for i in range(count)]
        return {"up": {f"block_{STYLE_BLOCK}": layers}}

    def _paint(
        self, pipe, prompt: str, width: int, height: int, seeds: Sequence[int], **extra: object
    ) -> list[Image.Image]:
        """Denoise to latents, then decode; out of GPU memory, walk a ladder instead of failing.

        Denoising retries with model CPU offload, then one candidate at a time; decoding retries with VAE
        slicing, then tiling. The latents are kept between the two, so a decode failure never re-runs the
        denoising. The rungs taken are recorded in the manifest (`take_ladder`).
        """
        started = time.perf_counter()
        batches = [list(seeds)]

        def one_at_a_time() -> None:
            batches[:] = [[seed] for seed in seeds]

        latents = self.ladder.run(
            "denoise",
            lambda: torch.cat([self._denoise(pipe, prompt, width, height, batch, **extra) for batch in batches]),
            [("cpu offload", self._offload), ("one candidate at a time", one_at_a_time)],
        )
        images = self.ladder.run(
            "decode",
            lambda: self._decode(pipe, latents),
            [("vae slicing", pipe.vae.enable_slicing), ("vae tiling", pipe.vae.enable_tiling)],
        )
        log.debug("painted %d × %dx%d in %.2f s", len(seeds), width, height, time.perf_counter() - started)
        return images

    def _denoise(self, pipe, prompt: str, width: int, height: int, seeds: Sequence[int], **extra: object):
        painter = self._config.painter
        faults.check("painter")
        return pipe(
            prompt,
            negative_prompt=painter.negative_prompt,
            width=width,
            height=height,
            num_inference_steps=painter.steps,
            guidance_scale=painter.guidance,
            num_images_per_prompt=len(seeds),
            generator=[gpu.generator(seed) for seed in seeds],  # one generator per image: a seed is a candidate
            output_type="latent",
            **extra,
        ).images

    @torch.no_grad()
    def _decode(self, pipe, latents: torch.Tensor) -> list[Image.Image]:
        """What the SDXL pipelines do after denoising (diffusers 0.42): unscale, decode, postprocess."""
        faults.check("painter_decode")
        vae = pipe.vae
        upcast = vae.dtype == torch.float16 and vae.config.force_upcast  # the fp16-fix VAE needs no upcast
        if upcast:
            vae.to(dtype=torch.float32)
        latents = latents.to(next(iter(vae.post_quant_conv.parameters())).dtype)
        mean, std = getattr(vae.config, "latents_mean", None), getattr(vae.config, "latents_std", None)
        if mean is not None and std is not None:
            mean = torch.tensor(mean).view(1, 4, 1, 1).to(latents.device, latents.dtype)
            std = torch.tensor(std).view(1, 4, 1, 1).to(latents.device, latents.dtype)
            latents = latents * std / vae.config.scaling_factor + mean
        else:
            latents = latents / vae.config.scaling_factor
        image = vae.decode(latents, return_dict=False)[0]
        if upcast:
            vae.to(dtype=torch.float16)
        if getattr(pipe, "watermark", None) is not None:
            image = pipe.watermark.apply_watermark(image)
        return pipe.image_processor.postprocess(image, output_type="pil")

    def take_ladder(self) -> list[str]:
        """The OOM-ladder steps taken since the last call (recorded in the manifest by the stage)."""
        return self.ladder.take()

    def _offload(self) -> None:
        if self._graphs is not None:  # offload moves each module on and off the GPU around every forward
            self._graphs.remove()
            self._graphs = None
            log.info("painter: CUDA graphs off, model CPU offload moves the weights from now on")
        self._offloaded = gpu.cpu_offload(self._pipe, self._device)

    def _load_adapter(self) -> None:
        if self._adapter_loaded:
            return
        started = time.perf_counter()
        subfolder, weight_name = IP_ADAPTER_WEIGHTS
        self._pipe.load_ip_adapter(
            str(model_dir(self._root, self._config.painter.ip_adapter, self._config.weights.flavor)),
            subfolder=subfolder, weight_name=[weight_name, weight_name],  # characters, setting style
            image_encoder_folder=IP_ADAPTER_ENCODER, local_files_only=True,
        )
        self._regions = sdxl_attention.install(self._pipe.unet)  # loading the adapters reset every processor
        if self._graphs is not None:
            self._graphs.clear()  # captured before the adapters' weights and processors existed
        self._adapter_loaded = True
        log.info("loaded %s (two instances) in %.1f s", self._config.painter.ip_adapter, time.perf_counter() - started)


@contextmanager
def _adapter_scale(pipe: StableDiffusionXLPipeline, scale: list) -> Iterator[None]:
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


def _split(
    references: Sequence[Reference], images: Sequence[Image.Image]
) -> tuple[list[tuple[Reference, Image.Image]], tuple[Reference, Image.Image] | None]:
    """(the references for adapter 0 with their images, the style one or None)."""
    if len(references) != len(images):
        raise ValueError(f"{len(references)} references but {len(images)} images")
    pairs = list(zip(references, images))
    styles = [pair for pair in pairs if pair[0].layers == "style"]
    if len(styles) > 1:
        raise ValueError(f"at most one style reference, got {len(styles)}")
    return [pair for pair in pairs if pair[0].layers == "all"], (styles[0] if styles else None)


def _mask(box: Box | None, width: int, height: int) -> Image.Image:
    mask = Image.new("L", (width, height), 0 if box is not None else 255)
    if box is not None:
        x0, y0, x1, y1 = box.to_pixels(width, height)
        mask.paste(255, (x0, y0, x1, y1))
    return mask
