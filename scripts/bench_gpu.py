"""Benchmark the full-size pipeline on one GPU, in one process: models, film, naive baseline, lowvram, levers.

Needs the weights written by scripts/make_fullsize.py (full-size architectures, random weights: timings and
memory are real, pictures are noise). Phases (`--phases` picks some, run in the order given):

  reference  plain diffusers models built from the configs (no pipeline): UNet step, VAE decode, FLOP counts
  pipeline   the default profile on scripts/bench_script.json through animagent.studio's stages (plan is
             skipped: the script is given): wall time, load time, GPU kernel time and peak memory per stage;
             every painter/animator call is timed, which gives the keyframe and clip figures
  naive      the same work written by hand: plain diffusers pipelines, default settings, fp16 eager, loaded
             per shot; then the ratio of the two
  director   TransformersDirector.ask eager and with gpu.compile_director: style calls (an image and a schema)
             and verdict calls (three images, the verdict schema), time to first token, decode tokens/s, median
             and spread over 12 calls each, and whether the two give the same replies
  lowvram    the lowvram profile on the same script: peak GPU memory per stage
  levers     the backends' own pipelines as shipped (one keyframe, a batch of candidates, one clip), then
             levers applied from outside, cumulatively: diffusers' IP-Adapter processor vs the painter's region
             processor (shipped), regional torch.compile; a keyframe and a clip with them (compile time apart)
  fast       the opt-in fast profile (fewer steps and candidates: not the default's quality) on the same script
  attention  SVD-XT's spatial and temporal self-attention at the film's shapes under each SDPA backend alone
  graphs     gpu.graph_painter: one keyframe alone and a batch of draw.candidates, eager vs the UNet replayed from
             CUDA graphs, median and spread over 10 draws each, and whether the graphs paint eager's pictures
  fp8        gpu.fp8_animator: one clip at the default profile's size, fp16 vs FP8 (torchao), compiled as the
             profile says, median of 3 clips each, peak memory, and how far the FP8 clip is from fp16's
  wan        the wan profile (Wan2.2-TI2V-5B animator; its weights from scripts/bench_wan.py --phases build) on the
             same script with one clip candidate a shot (three would not fit a lease: 24 x 72 s); compare its
             animate stage with the pipeline phase's

GPU time is the union of the kernels' busy intervals from CUPTI (torch.profiler, CUDA activity only); time
outside model kernels = stage wall - model loading - kernel time. Writes <out>/summary.json after every phase
and prints it at the end. `--tiny` runs every phase on the tiny models (`animagent weights make-tiny`) to
check the code paths in seconds; its numbers mean nothing.

Usage: python scripts/bench_gpu.py --weights ROOT --out DIR [--phases pipeline,naive] [--tiny]
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from animagent import gpu
from animagent.artifacts import Clip, Keyframe, Script
from animagent.config import Config, load_config
from animagent.runfolder import RunFolder, derive_seed
from animagent.weights import model_dir

log = logging.getLogger("bench")

PHASES = ("reference", "pipeline", "naive", "director", "lowvram", "levers", "fast", "attention", "graphs", "fp8",
          "wan")
GB = 1e9
FIELD = 96  # characters of director free text with random weights (see Bench.config)
CALLS = ("sketch", "draw", "repair", "animate", "director")  # the backend calls timed one by one
TARGETS = {"keyframe_s": 0.9, "clip_s": 9.0, "film_speedup": 2.5, "outside_kernels_share": 0.10, "lowvram_peak_gb": 22.0}


# --- measuring ----------------------------------------------------------------------------------------------


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def reset_peak() -> None:
    gpu.free_memory()
    gpu.reset_peak_memory()


def peak() -> dict[str, float]:
    if not torch.cuda.is_available():
        return {}
    return {"peak_allocated_gb": round(torch.cuda.max_memory_allocated() / GB, 2),
            "peak_reserved_gb": round(torch.cuda.max_memory_reserved() / GB, 2)}


def time_gpu(fn: Callable[[], object], repeat: int, warmup: int = 1) -> float:
    """Median milliseconds of `fn` between CUDA events (host clock without CUDA)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        if torch.cuda.is_available():
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            began = time.perf_counter()
            fn()
            times.append((time.perf_counter() - began) * 1e3)
    return round(statistics.median(times), 2)


def wall(fn: Callable[[], object]) -> float:
    sync()
    began = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - began


def count_flops(fn: Callable[[], object]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def union_seconds(intervals: list[tuple[int, int]]) -> float:
    total, end = 0, -1
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total / 1e9


class GpuActivity:
    """The block's wall time and the GPU's busy time while it runs: union of kernel intervals (copies and memsets
    apart), from CUPTI. `wall_s` stops before the profiler reads its trace back, which takes about 25 µs per kernel
    (two minutes for a film's draw stage) and is the bench's cost, not the pipeline's."""

    def __init__(self) -> None:
        self.kernel_s = self.copy_s = self.wall_s = 0.0
        self.kernels = 0
        self._profiler: Any = None
        self._began = 0.0

    def __enter__(self) -> Self:
        if torch.cuda.is_available():
            from torch.profiler import ProfilerActivity, profile

            self._profiler = profile(activities=[ProfilerActivity.CUDA])
            self._profiler.__enter__()
        self._began = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        sync()
        self.wall_s = time.perf_counter() - self._began
        if self._profiler is None:
            return
        from torch.autograd import DeviceType

        self._profiler.__exit__(*exc)
        kernels, copies = [], []
        for event in self._profiler.profiler.kineto_results.events():
            if event.device_type() == DeviceType.CUDA:
                span = (event.start_ns(), event.start_ns() + event.duration_ns())
                (copies if event.name().startswith(("Memcpy", "Memset")) else kernels).append(span)
        self.kernel_s, self.copy_s, self.kernels = union_seconds(kernels), union_seconds(copies), len(kernels)
        self._profiler = None


@dataclass
class Recorder:
    """Wall time of backend calls and model loads, recorded by wrapping the backend classes' methods."""

    events: list[tuple[str, float, float]] = field(default_factory=list)  # (kind, seconds, of which loading)
    loading: float = 0.0

    def wrap(self, cls: type, method: str, kind: str, load: bool = False) -> None:
        original = getattr(cls, method)
        recorder = self

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            sync()
            began, loading_before = time.perf_counter(), recorder.loading
            try:
                return original(*args, **kwargs)
            finally:
                sync()
                seconds = time.perf_counter() - began
                nested = recorder.loading - loading_before
                if load:
                    recorder.loading += seconds - nested
                recorder.events.append((kind, seconds, nested))

        setattr(cls, method, timed)

    def mark(self) -> int:
        return len(self.events)

    def load_seconds(self, since: int) -> float:
        return sum(s - nested for kind, s, nested in self.events[since:] if kind.startswith("load"))

    def calls(self, kind: str, since: int) -> list[float]:
        """Net seconds of each `kind` call since the mark, loads inside it excluded."""
        return [round(s - nested, 3) for k, s, nested in self.events[since:] if k == kind]


def instrument(recorder: Recorder) -> None:
    from animagent.backends.animator_svd import SVDAnimator
    from animagent.backends.animator_wan import WanAnimator
    from animagent.backends.director_transformers import TransformersDirector
    from animagent.backends.embedder import ClipEmbedder
    from animagent.backends.embedder_dino import DinoEmbedder
    from animagent.backends.painter_sdxl import SDXLPainter
    from animagent.backends.segmenter_sam import SamSegmenter

    recorder.wrap(SDXLPainter, "__init__", "load:painter", load=True)
    recorder.wrap(ClipEmbedder, "__init__", "load:clip", load=True)
    recorder.wrap(DinoEmbedder, "__init__", "load:dino", load=True)
    recorder.wrap(SamSegmenter, "__init__", "load:sam", load=True)
    recorder.wrap(SDXLPainter, "_load_adapter", "load:ip_adapter", load=True)
    recorder.wrap(SVDAnimator, "__init__", "load:animator", load=True)
    recorder.wrap(TransformersDirector, "__init__", "load:director", load=True)
    recorder.wrap(SDXLPainter, "sketch", "sketch")
    recorder.wrap(SDXLPainter, "draw", "draw")
    recorder.wrap(SVDAnimator, "animate", "animate")
    recorder.wrap(WanAnimator, "__init__", "load:animator", load=True)
    recorder.wrap(WanAnimator, "animate", "animate")
    recorder.wrap(SDXLPainter, "repair", "repair")
    recorder.wrap(TransformersDirector, "_complete", "director")


class Capture:
    """Keep the arguments of a module's first forward call, to replay exactly that call."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.args: tuple = ()
        self.kwargs: dict[str, Any] = {}
        self._handle = module.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        self.args, self.kwargs = args, kwargs
        self._handle.remove()


# --- the bench ----------------------------------------------------------------------------------------------


@dataclass
class Bench:
    root: Path
    out: Path
    script: Script
    tiny: bool
    recorder: Recorder
    summary: dict[str, Any]
    director_variants: list[str]
    director_calls: int

    def config(self, profile: str, *overrides: str) -> Config:
        # A random-weight director writes a free-text field until its bound (the default, 2000 characters, is
        # over a thousand tokens; a real model stops after a sentence): 96 characters give real reply lengths.
        extra = [f"weights.root={self.root}"] + (["device=auto"] if self.tiny else [f"director.max_field_chars={FIELD}"])
        if self.tiny:  # the bench script is a full-size film: the tiny profile's limits would refuse it
            extra += [f"limits.{k}={v}" for k, v in load_config("default").limits.model_dump().items()]
        return load_config("tiny" if self.tiny else profile, overrides=[*extra, *overrides])

    def folder(self, name: str, config: Config) -> Path:
        return model_dir(self.root, name, config.weights.flavor)

    def fresh(self, name: str) -> Path:
        path = self.out / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path


def phase_reference(b: Bench) -> dict[str, Any]:
    """Plain diffusers models from the configs with random init (no pipeline, no weights file): the issue's
    reference figures on this machine, and the FLOP counts the other phases divide by."""
    from diffusers import (
        AutoencoderKL,
        AutoencoderKLTemporalDecoder,
        UNet2DConditionModel,
        UNetSpatioTemporalConditionModel,
    )

    config = b.config("default")
    dtype, device = gpu.dtype(config), gpu.device(config)
    painter, animator = config.painter, config.animator
    result: dict[str, Any] = {"dtype": str(dtype), "sdpa_backends": sdpa_backends()}
    randn = functools.partial(torch.randn, device=device, dtype=dtype)

    def build(cls: Any, folder: Path) -> Any:  # random init on the GPU; forward passes run outside the context
        with torch.device(device):
            return cls.from_config(cls.load_config(folder)).to(device=device, dtype=dtype).eval()  # legacy CPU buffers too

    with torch.no_grad():
        unet = build(UNet2DConditionModel, b.folder(painter.model, config) / "unet")
        c = unet.config
        text_dim = c.projection_class_embeddings_input_dim - 6 * c.addition_time_embed_dim
        sample = randn(2, c.in_channels, painter.height // 8, painter.width // 8)
        hidden, timestep = randn(2, 77, c.cross_attention_dim), torch.tensor([500.0, 500.0], device=device)
        added = {"text_embeds": randn(2, text_dim), "time_ids": randn(2, 6)}

        def sdxl_step() -> object:
            return unet(sample, timestep, hidden, added_cond_kwargs=added)

        result["sdxl_unet_step_ms"] = time_gpu(sdxl_step, repeat=10, warmup=3)
        result["sdxl_unet_step_tflop"] = count_flops(sdxl_step) / 1e12

        vae = build(AutoencoderKL, b.folder(painter.vae, config))
        latents = randn(1, 4, painter.height // 8, painter.width // 8)
        result["sdxl_vae_decode_ms"] = time_gpu(lambda: vae.decode(latents), repeat=5, warmup=2)
        result["sdxl_vae_decode_tflop"] = count_flops(lambda: vae.decode(latents)) / 1e12
        vae.float()  # what the pipeline's force_upcast does to the base VAE in fp16
        result["sdxl_vae_decode_fp32_upcast_ms"] = time_gpu(lambda: vae.decode(latents.float()), repeat=3, warmup=1)

        svd = build(UNetSpatioTemporalConditionModel, b.folder(animator.model, config) / "unet")
        c = svd.config
        frames, h, w = animator.frames, animator.height // 8, animator.width // 8
        video = randn(2, frames, c.in_channels, h, w)
        image_embeds, ids = randn(2, 1, c.cross_attention_dim), randn(2, 3)
        sigma = torch.tensor([1.0, 1.0], device=device)

        def svd_step() -> object:
            return svd(video, sigma, encoder_hidden_states=image_embeds, added_time_ids=ids)

        result["svd_unet_step_ms"] = time_gpu(svd_step, repeat=3, warmup=1)
        result["svd_unet_step_tflop"] = count_flops(svd_step) / 1e12

        vae = build(AutoencoderKLTemporalDecoder, b.folder(animator.model, config) / "vae")
        clip_latents = randn(frames, 4, h, w)

        def decode(chunk: int) -> Callable[[], None]:
            def run() -> None:
                for i in range(0, frames, chunk):
                    part = clip_latents[i:i + chunk]
                    vae.decode(part, num_frames=part.shape[0])
            return run

        for chunk in sorted({animator.decode_chunk_size, frames}):
            result[f"svd_vae_decode_chunk{chunk}_ms"] = time_gpu(decode(chunk), repeat=2, warmup=1)
        result["svd_vae_decode_tflop"] = count_flops(decode(animator.decode_chunk_size)) / 1e12
    return result


def sdpa_backends() -> dict[str, bool]:
    b = torch.backends.cuda
    return {"flash": b.flash_sdp_enabled(), "mem_efficient": b.mem_efficient_sdp_enabled(),
            "cudnn": b.cudnn_sdp_enabled(), "math": b.math_sdp_enabled()}


def run_film(b: Bench, profile: str, label: str, *overrides: str) -> dict[str, Any]:
    """Studio.run() with each pass timed (a Studio whose pass methods time themselves, so the order and the
    releases are Studio.run's own); the script is given, so planning is skipped; eval and the narration are off."""
    from animagent.studio import SCRIPT, Studio

    # The narration is off: the GPU image has no kokoro or espeak-ng, and speaking is 0.25 s of a film's 15 s of
    # speech on the H200 (docs/benchmarks.md section 10).
    config = b.config(profile, "eval.auto=false", "assemble.voice=false", *overrides)
    stages: dict[str, Any] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        mark = b.recorder.mark()
        reset_peak()
        with GpuActivity() as activity:
            value = fn()
        seconds = activity.wall_s
        loads = b.recorder.load_seconds(mark)
        stages[name] = {
            "wall_s": round(seconds, 2), "load_s": round(loads, 2), "kernel_s": round(activity.kernel_s, 2),
            "copy_s": round(activity.copy_s, 2), "kernels": activity.kernels,
            "outside_kernels_s": round(seconds - loads - activity.kernel_s, 2), **peak(),
            "calls": {kind: calls for kind in CALLS if (calls := b.recorder.calls(kind, mark))},
        }
        log.info("%s %s: %s", label, name, {k: v for k, v in stages[name].items() if k != "calls"})
        return value

    class TimedStudio(Studio):
        def cast(self, *args):
            return timed("cast", lambda: super(TimedStudio, self).cast(*args))

        def draw(self, *args):
            return timed("draw", lambda: super(TimedStudio, self).draw(*args))

        def render(self, *args):
            return timed("render", lambda: super(TimedStudio, self).render(*args))

        def choose(self, *args):
            return timed("choose", lambda: super(TimedStudio, self).choose(*args))

        def assemble(self, *args):
            return timed("assemble", lambda: super(TimedStudio, self).assemble(*args))

    from animagent.runs import prepare_run

    script_path = b.fresh(f"script-{label}") / SCRIPT
    script_path.write_text(b.script.model_dump_json(indent=2) + "\n", encoding="utf-8")
    TimedStudio(config, prepare_run(None, config, b.fresh(f"run-{label}"), script_path=script_path)).run()
    return {"profile": config.profile, "stages": stages, **totals(stages)}


def totals(stages: dict[str, Any]) -> dict[str, Any]:
    total = sum(s["wall_s"] for s in stages.values())
    loads = sum(s["load_s"] for s in stages.values())
    outside = sum(s["outside_kernels_s"] for s in stages.values())
    for s in stages.values():
        s["share"] = round(s["wall_s"] / total, 3)
    return {
        "wall_s": round(total, 2), "load_s": round(loads, 2),
        "kernel_s": round(sum(s["kernel_s"] for s in stages.values()), 2),
        "outside_kernels_s": round(outside, 2),
        "outside_kernels_share": round(outside / (total - loads), 3),
        "peak_reserved_gb": max((s.get("peak_reserved_gb", 0.0) for s in stages.values()), default=0.0),
        "peak_allocated_gb": max((s.get("peak_allocated_gb", 0.0) for s in stages.values()), default=0.0),
    }


def phase_pipeline(b: Bench) -> dict[str, Any]:
    return run_film(b, "default", "default")


def phase_lowvram(b: Bench) -> dict[str, Any]:
    return run_film(b, "lowvram", "lowvram")


def phase_fast(b: Bench) -> dict[str, Any]:
    return run_film(b, "fast", "fast")


def phase_wan(b: Bench) -> dict[str, Any]:
    overrides = ["animator.candidates=1", "animator.top_k=1"]
    if b.tiny:  # the tiny profile animates with SVD: name the tiny Wan and a size it can draw
        overrides += ["animator.kind=wan", "animator.width=128",
                      "animator.height=96", "animator.steps=2"]
    return run_film(b, "wan", "wan", *overrides)


def phase_naive(b: Bench) -> dict[str, Any]:
    """The film's generation work as a user would write it from the diffusers docs: plain pipelines, default
    settings (the SDXL base VAE, upcast to fp32 for decoding; SVD decodes all frames at once), fp16 eager, the
    SDXL pipeline (+ IP-Adapter) and the SVD pipeline loaded again for every shot, one call per image or clip.
    Same sizes, steps, guidance, references, masks and candidate counts as the film; no director picks, review
    or scoring (the film's extra work); the first candidate is kept; clips and film encoded by the same code."""
    from diffusers import StableDiffusionXLPipeline, StableVideoDiffusionPipeline
    from diffusers.image_processor import IPAdapterMaskProcessor

    from animagent import video
    from animagent.artifacts import Takes
    from animagent.backends.motion import SVD as MOTION_TABLE
    from animagent.backends.painter_sdxl import IP_ADAPTER_ENCODER, IP_ADAPTER_WEIGHTS, _mask
    from animagent.models import Models
    from animagent.stages import Context, assemble, cast

    config = b.config("default")
    painter, animator = config.painter, config.animator
    dtype, device = gpu.dtype(config), gpu.device(config)
    sdxl, svd = b.folder(painter.model, config), b.folder(animator.model, config)
    adapter = b.folder(painter.ip_adapter, config)
    run = RunFolder(b.fresh("run-naive"))
    script, load_s = b.script, 0.0
    calls: dict[str, list[float]] = {"sketch": [], "draw": [], "animate": []}

    def load(make: Callable[[], Any]) -> Any:
        nonlocal load_s
        began = time.perf_counter()
        value = make()
        sync()
        load_s += time.perf_counter() - began
        return value

    def load_sdxl(with_adapter: bool) -> Any:
        pipe = StableDiffusionXLPipeline.from_pretrained(sdxl, torch_dtype=dtype, variant="fp16").to(device)
        pipe.set_progress_bar_config(disable=True)
        if with_adapter:
            pipe.load_ip_adapter(str(adapter), subfolder=IP_ADAPTER_WEIGHTS[0], weight_name=IP_ADAPTER_WEIGHTS[1],
                                 image_encoder_folder=IP_ADAPTER_ENCODER)
        return pipe

    def paint(pipe: Any, prompt: str, seed: int, kind: str, **extra: Any) -> Image.Image:
        began = time.perf_counter()
        image = pipe(prompt, negative_prompt=painter.negative_prompt, width=painter.width, height=painter.height,
                     num_inference_steps=painter.steps, guidance_scale=painter.guidance,
                     generator=torch.Generator("cpu").manual_seed(seed), **extra).images[0]
        calls[kind].append(round(time.perf_counter() - began, 3))
        return image

    reset_peak()
    with GpuActivity() as activity:
        pipe = load(lambda: load_sdxl(with_adapter=False))
        sheets: dict[str, str] = {}
        jobs = [("characters", c.id, cast.character_prompt(script, c)) for c in script.characters]
        jobs += [("settings", s.id, cast.setting_prompt(script, s)) for s in script.settings]
        for kind, item, prompt in jobs:
            for n in range(config.cast.candidates):  # the film draws this many per item (the director picks)
                image = paint(pipe, prompt, derive_seed(config.seed, "cast", kind, item, take=n), "sketch")
                if n == 0:
                    sheets[item] = f"cast/{kind}/{item}.png"
                    run.write_image(sheets[item], image)
        del pipe
        gc.collect()

        keyframes, clips = [], []
        for shot in script.shots():
            pipe = load(lambda: load_sdxl(with_adapter=True))
            refs = [(run.read_image(sheets[p.character]), painter.character_scale, p.box) for p in shot.characters]
            refs.append((run.read_image(sheets[shot.setting]), painter.setting_scale, None))
            pipe.set_ip_adapter_scale([[scale for _, scale, _ in refs]])
            masks = IPAdapterMaskProcessor().preprocess([_mask(box, painter.width, painter.height) for *_, box in refs],
                                                        height=painter.height, width=painter.width)
            prompt, seed = shot_prompt(script, shot), derive_seed(config.seed, "draw", shot.id)
            for n in range(config.draw.candidates):
                candidate = paint(pipe, prompt, seed + n, "draw", ip_adapter_image=[[img for img, *_ in refs]],
                                  cross_attention_kwargs={"ip_adapter_masks": [masks.reshape(1, len(refs),
                                                                                             *masks.shape[-2:])]})
                if n == 0:
                    image = candidate
            keyframes.append(Keyframe(shot=shot.id, image=f"keyframes/{shot.id}.png", prompt=prompt, seed=seed))
            run.write_image(keyframes[-1].image, image)
            del pipe
            gc.collect()

            pipe = load(lambda: StableVideoDiffusionPipeline.from_pretrained(svd, torch_dtype=dtype, variant="fp16")
                        .to(device))
            pipe.set_progress_bar_config(disable=True)
            motion, seed = MOTION_TABLE[shot.motion], derive_seed(config.seed, "animate", shot.id)
            for n in range(animator.candidates):
                began_clip = time.perf_counter()
                candidate = pipe(image.resize((animator.width, animator.height)), width=animator.width,
                                 height=animator.height, num_frames=animator.frames,
                                 num_inference_steps=animator.steps, min_guidance_scale=animator.min_guidance,
                                 max_guidance_scale=animator.max_guidance, fps=motion.fps,
                                 motion_bucket_id=motion.motion_bucket_id,
                                 noise_aug_strength=motion.noise_aug_strength,
                                 generator=torch.Generator("cpu").manual_seed(seed + n)).frames[0]
                calls["animate"].append(round(time.perf_counter() - began_clip, 3))
                if n == 0:
                    frames = candidate
            clips.append(Clip(shot=shot.id, video=f"clips/{shot.id}.mp4", frames=len(frames), fps=motion.fps,
                              seed=seed))
            with run.writing(clips[-1].video) as tmp:
                video.write_video([np.asarray(f.convert("RGB")) for f in frames], tmp, fps=motion.fps,
                                  crf=config.assemble.crf, preset=config.assemble.preset)
            del pipe
            gc.collect()
        assemble.assemble(Context(run, config, Models(config, run.path("logs")), Takes()), script, keyframes, clips)
    seconds = activity.wall_s
    return {
        "wall_s": round(seconds, 2), "load_s": round(load_s, 2), "kernel_s": round(activity.kernel_s, 2),
        "copy_s": round(activity.copy_s, 2), "outside_kernels_s": round(seconds - load_s - activity.kernel_s, 2),
        "outside_kernels_share": round((seconds - load_s - activity.kernel_s) / (seconds - load_s), 3),
        **peak(), "calls": calls,
    }


DIRECTOR_CALLS = 12  # timed calls of each kind per variant: host-bound figures are medians over >= 10 (issue 16)
# The director phase's variants: eager (shipped default); compiled (gpu.compile_director as shipped: the static
# cache's decode on the key/value heads, director_transformers.decode_attention); sdpa (the lever before it: SDPA
# with the cache's mask, which repeats the key/value heads); varlen (flash attention over the cache's valid prefix
# alone, told its length on the device: bench_varlen_attention). A name given twice runs twice (the second compile
# reads inductor's on-disk caches); its results are keyed name#2.
DIRECTOR_VARIANTS = ("eager", "compiled", "sdpa", "varlen")


def phase_director(b: Bench) -> dict[str, Any]:
    """`TransformersDirector.ask` under each of `--director-variants`, one after the other in this process: per
    variant one untimed call of each kind (a compiled variant's first call compiles; its time is kept apart), then
    `--director-calls` style calls (one image + schema) and as many verdict calls (keyframe + two sheets + the
    verdict schema, as the review asks), seeds 0..N-1; per call TTFT, decode tokens/s and wall; median and spread;
    and how many replies each variant shares with eager seed for seed. A variant that fails keeps the others."""
    unknown = set(b.director_variants) - set(DIRECTOR_VARIANTS)
    if unknown:
        raise ValueError(f"unknown director variants {sorted(unknown)}; choose from {DIRECTOR_VARIANTS}")
    result: dict[str, Any] = {"calls_per_kind": b.director_calls}
    replies: dict[str, dict[str, list[str]]] = {}
    for variant in b.director_variants:
        key = variant if variant not in result else f"{variant}#2"
        try:
            result[key], replies[key] = director_variant(b, variant)
        except Exception as exc:  # keep the other variants' figures
            log.exception("director variant %s failed", key)
            result[key] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
        b.summary["director"] = result  # written after each variant: a run cut short keeps the variants done
        (b.out / "summary.json").write_text(json.dumps(b.summary, indent=2) + "\n")
    if "eager" in replies:
        result["same_replies_as_eager"] = {
            key: {kind: sum(a == c for a, c in zip(replies["eager"][kind], theirs[kind])) for kind in theirs}
            for key, theirs in replies.items() if key != "eager"
        }
    return result


def bench_varlen_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                           attention_mask: torch.Tensor | None, scaling: float, **kwargs: Any) -> tuple[Any, None]:
    """The decode step through flash attention's variable-length entry, told on the device how many of the static
    cache's positions hold tokens (`seqused_k`, counted from the mask): work in proportion to the valid prefix, the
    key/value heads as they are, no mask. CUDA only; batch 1 (the director's)."""
    from animagent.backends.director_transformers import sdpa_attention_forward

    if query.shape[2] > 1 or attention_mask is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
    _, heads, _, dim = query.shape
    length = key.shape[2]
    starts = torch.arange(2, dtype=torch.int32, device=query.device)
    used = attention_mask.reshape(1, length).sum(-1, dtype=torch.int32)
    output = torch.ops.aten._flash_attention_forward(
        query.reshape(1, heads, dim), key[0].transpose(0, 1), value[0].transpose(0, 1), starts, starts * length,
        1, length, 0.0, False, False, scale=scaling, seqused_k=used)[0]
    return output.reshape(1, 1, heads, dim), None


def director_variant(b: Bench, variant: str) -> tuple[dict[str, Any], dict[str, list[str]]]:
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    import animagent.backends.director_transformers as director_transformers
    from animagent.errors import DirectorOutputError
    from animagent.tasks import StyleDecision, verdict_output

    compiled = variant != "eager"
    attention = {"compiled": director_transformers.DECODE_ATTENTION, "sdpa": "sdpa", "varlen": "bench_varlen"}
    AttentionInterface.register("bench_varlen", bench_varlen_attention)
    AttentionMaskInterface.register("bench_varlen", sdpa_mask)
    config = b.config("default", "director.max_attempts=1", f"gpu.compile_director={str(compiled).lower()}")
    reset_peak()
    torch._dynamo.reset()  # each variant compiles afresh in memory (inductor's on-disk caches stay)
    torch._dynamo.utils.counters.clear()
    mark = b.recorder.mark()
    # Not models.build: it checks every model of the profile, and this phase's machine may hold the director alone.
    shipped = director_transformers.DECODE_ATTENTION
    director_transformers.DECODE_ATTENTION = attention.get(variant, shipped)
    try:
        director = director_transformers.TransformersDirector(config, b.out / "logs" / "director.jsonl")
    finally:
        director_transformers.DECODE_ATTENTION = shipped
    load_s = b.recorder.load_seconds(mark)
    clock = TokenClock()
    generate = director.model.generate

    def timed_generate(*args: Any, **kwargs: Any) -> Any:
        clock.times = []
        return generate(*args, streamer=clock, **kwargs)

    director.model.generate = timed_generate
    shot = b.script.shots()[0]
    ids = [p.character for p in shot.characters]
    keyframe = director.sent_image(keyframe_image(b, (1024, 1024)))
    grounding = director.grounding(keyframe.size)
    verdict_vars = {"description": shot.description, "coordinates": grounding.words,
                    "references": "\n".join(f"- {cid}: image {n + 2}" for n, cid in enumerate(ids))}
    calls = {
        "style": lambda seed: director.ask("style", {"story": b.script.story}, StyleDecision, images=[keyframe],
                                           seed=seed),
        "verdict": lambda seed: director.ask("verdict", verdict_vars, verdict_output(ids, *grounding.frame),
                                             images=[keyframe, *(keyframe.rotate(90 * (n + 1)) for n in range(2))],
                                             seed=seed),
    }

    def one(kind: str, seed: int) -> tuple[dict[str, Any], str]:
        began = time.perf_counter()
        ok, reply = True, ""
        try:
            reply = calls[kind](seed).model_dump_json()
        except DirectorOutputError:
            ok = False
        seconds = time.perf_counter() - began
        times, new = clock.times, len(clock.times) - 1
        run = {"seconds": round(seconds, 3), "ok": ok, "prompt_tokens": clock.prompt_tokens, "new_tokens": new,
               "ttft_s": round(times[1] - times[0], 4) if new >= 1 else None,
               "decode_tok_s": round((new - 1) / (times[-1] - times[1]), 1) if new >= 2 else None}
        return run, reply

    result: dict[str, Any] = {"load_s": round(load_s, 2), "first_call_s": {},
                              "attention": director.model.config.get_text_config()._attn_implementation}
    replies: dict[str, list[str]] = {}
    try:
        for kind in calls:
            result["first_call_s"][kind] = one(kind, 1000)[0]["seconds"]  # compiles, for the compiled variant
        for kind in calls:
            runs = [one(kind, seed) for seed in range(b.director_calls)]
            replies[kind] = [reply for _, reply in runs]
            timed = [run for run, _ in runs]
            result[kind] = {"runs": timed, **{
                name: spread([r[name] for r in timed if r[name] is not None])
                for name in ("decode_tok_s", "ttft_s", "seconds", "new_tokens")}}
            log.info("director %s %s: %s", variant, kind,
                     {k: v for k, v in result[kind].items() if k != "runs"})
        if compiled:  # graph breaks, recompiles and the graphs dynamo made: where a compiled decode loses time
            result["dynamo_counters"] = {k: dict(v) for k, v in torch._dynamo.utils.counters.items() if v}
        if torch.cuda.is_available():
            result["profile_style_call"] = profile_kernels(lambda: one("style", 0))
            log.info("director %s kernels of one style call: %s", variant,
                     result["profile_style_call"])
    finally:
        director.close()
    result.update(peak())
    return result, replies


def profile_kernels(fn: Callable[[], object], top: int = 12) -> dict[str, Any]:
    """One call under the CUDA profiler: wall, the kernels' summed time, and the kernels taking the most."""
    from torch.profiler import ProfilerActivity, profile

    sync()
    began = time.perf_counter()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        sync()
    seconds = time.perf_counter() - began  # includes the profiler's own overhead
    events = sorted(prof.key_averages(), key=lambda e: e.device_time_total, reverse=True)
    kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
    return {"wall_s": round(seconds, 3), "kernel_ms": round(sum(e.device_time_total for e in kernels) / 1e3, 2),
            "top": [{"name": e.key[:120], "count": e.count, "ms": round(e.device_time_total / 1e3, 2)}
                    for e in events[:top]]}


def spread(values: list[float]) -> dict[str, float] | None:
    """Median, quartiles, min and max of host-bound figures (issue 16: median and spread over >= 10 calls)."""
    if not values:
        return None
    q1, _, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else (values[0],) * 3
    return {"n": len(values), "median": round(statistics.median(values), 4), "q1": round(q1, 4),
            "q3": round(q3, 4), "min": min(values), "max": max(values)}


def phase_attention(b: Bench) -> dict[str, Any]:
    """SVD-XT's spatial and temporal self-attention at the film's shapes (25 frames, 1024×576, CFG batch 2, fp16,
    head dim 64) under each SDPA backend alone: milliseconds per call (CUDA events, median of 20 after 3 warm-ups),
    and per UNet step (calls per step × time). The UNet's transformer blocks: 5 per level at levels 1-3 (2 down,
    3 up), 1 in the mid block; each has one spatial and one temporal self-attention (the cross-attentions see one
    image token)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    frames, batch = 25, 2 * 25
    levels = [  # (tokens per frame, heads, transformer blocks)
        (72 * 128, 5, 5), (36 * 64, 10, 5), (18 * 32, 20, 5), (9 * 16, 20, 1),
    ]
    if b.tiny:
        frames, batch, levels = 4, 8, [(16 * 16, 2, 1)]
    backends = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
                "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if device == "cuda" else torch.float32
    shapes = []
    for tokens, heads, blocks in levels:
        shapes.append(("spatial", tokens, (batch, heads, tokens, 64), blocks))
        shapes.append(("temporal", tokens, (2 * tokens, heads, frames, 64), blocks))
    result: dict[str, Any] = {"shapes": [], "per_step_ms": {}}
    per_step = {name: 0.0 for name in ["default", *backends]}
    with torch.no_grad():
        for kind, tokens, shape, blocks in shapes:
            q, k, v = (torch.randn(shape, device=device, dtype=dtype) for _ in range(3))
            row: dict[str, Any] = {"kind": kind, "tokens_per_frame": tokens, "shape": list(shape), "blocks": blocks}
            attend = functools.partial(torch.nn.functional.scaled_dot_product_attention, q, k, v)
            reference = attend()
            row["default"] = time_gpu(attend, 20, 3)
            per_step["default"] += blocks * row["default"]
            for name, backend in backends.items():
                if name == "math" and shape[0] * shape[1] * shape[2] ** 2 > 4e9:
                    row[name] = None  # the math backend materialises the scores: tens of GB here
                    per_step[name] = None
                    continue
                try:
                    with sdpa_kernel([backend]):
                        out = attend()
                        row[name] = time_gpu(attend, 20, 3)
                    row[f"{name}_max_abs_diff"] = float((out - reference).abs().max())
                    if per_step[name] is not None:
                        per_step[name] += blocks * row[name]
                except RuntimeError as exc:  # the backend does not take this shape on this GPU
                    row[name] = f"unavailable: {str(exc)[:200]}"
                    per_step[name] = None
            log.info("attention %s", row)
            result["shapes"].append(row)
    # per UNet step with CFG: the batch above already holds both halves
    result["per_step_ms"] = {name: round(ms, 2) if ms is not None else None for name, ms in per_step.items()}
    result["sdpa_backends"] = sdpa_backends()
    return result


class TokenClock:
    """A `generate(streamer=...)` that only timestamps: first `put` is the prompt, then one per new token."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.prompt_tokens = 0

    def put(self, value: torch.Tensor) -> None:
        if not self.times:
            self.prompt_tokens = int(value.numel())
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


def shot_prompt(script: Script, shot: Any) -> str:
    """A keyframe prompt like the draw stage's (style, camera, description, people, setting); CLIP truncates
    it to 77 tokens, so its exact wording does not change the work."""
    people = " ".join(f"{script.character(p.character).name}: {script.character(p.character).appearance}."
                      for p in shot.characters)
    setting = script.setting(shot.setting)
    return (f"{script.style.style_class} style, {script.style.description}. {shot.camera}. {shot.description}. "
            f"{people} Setting: {setting.name}, {setting.description}.")


def keyframe_image(b: Bench, size: tuple[int, int]) -> Image.Image:
    """The film's first keyframe if the pipeline phase left one, else seeded noise."""
    path = b.out / "run-default" / "keyframes" / f"{b.script.shots()[0].id}.png"
    if path.is_file():
        return Image.open(path).convert("RGB")
    noise = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(noise)


def phase_levers(b: Bench) -> dict[str, Any]:
    """Each lever applied from outside to the backend's own pipeline, cumulatively, timing the exact UNet call
    the pipeline makes (captured), then a whole keyframe / clip with every lever on."""
    import torch._dynamo
    from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0

    from animagent.artifacts import Reference
    from animagent.backends import sdxl_attention
    from animagent.backends.animator_svd import SVDAnimator, compile_transformer_blocks
    from animagent.backends.painter_sdxl import SDXLPainter

    torch._dynamo.config.cache_size_limit = 64  # regional compilation specialises each block shape
    config = b.config("default")
    result: dict[str, Any] = {}

    # SDXL keyframe
    painter_cfg = config.painter
    painter = SDXLPainter(config, b.root)
    shot = b.script.shots()[0]
    sheet = keyframe_image(b, (painter_cfg.width, painter_cfg.height))
    refs = [Reference(image="sheet.png", scale=painter_cfg.character_scale, box=p.box, layers="all")
            for p in shot.characters]
    refs.append(Reference(image="sheet.png", scale=painter_cfg.setting_scale, layers="style"))
    prompt = shot_prompt(b.script, shot)

    def keyframe(candidates: int = 1) -> object:
        return painter.draw(prompt, refs, [sheet] * len(refs), painter_cfg.width, painter_cfg.height,
                            seeds=list(range(candidates)))

    unet = painter._pipe.unet
    capture = Capture(unet)
    keyframe()  # warm-up: loads the adapters, captures one UNet call
    batch = config.draw.candidates
    sdxl: dict[str, Any] = {"keyframe_s": round(statistics.median(wall(keyframe) for _ in range(3)), 3)}
    sdxl[f"keyframes_batch{batch}_s"] = round(statistics.median(wall(lambda: keyframe(batch)) for _ in range(2)), 3)
    log.info("levers sdxl, as the painter runs: %s", sdxl)
    region_masks = capture.kwargs["cross_attention_kwargs"]["ip_adapter_masks"]
    region_processors = dict(unet.attn_processors)

    def sdxl_step() -> object:
        with torch.no_grad():
            return unet(*capture.args, **capture.kwargs)

    def diffusers_processors() -> None:  # the IP-Adapter processor diffusers installs, over the same weights
        processors = {}
        for name, processor in region_processors.items():
            if isinstance(processor, sdxl_attention.RegionIPAdapterProcessor):
                plain = IPAdapterAttnProcessor2_0(processor.hidden_size, processor.cross_attention_dim,
                                                  processor.num_tokens, processor.scale)
                plain.to_k_ip, plain.to_v_ip = processor.to_k_ip, processor.to_v_ip
                processor = plain
            processors[name] = processor
        unet.set_attn_processor(processors)
        capture.kwargs["cross_attention_kwargs"] = {"ip_adapter_masks": region_masks.masks}

    def region_processors_back() -> None:
        unet.set_attn_processor(region_processors)
        capture.kwargs["cross_attention_kwargs"] = {"ip_adapter_masks": region_masks}

    sdxl["steps_ms"] = measure_levers(sdxl_step, 10, [
        ("diffusers_ip_adapter_processor", diffusers_processors),
        ("region_ip_adapter_processor (shipped)", region_processors_back),
        ("compile_repeated_blocks", lambda: unet.compile_repeated_blocks(fullgraph=True, dynamic=False)),
    ], sdxl)
    if "compile_repeated_blocks" in sdxl["steps_ms"]:
        keyframe()  # the compiled blocks meet the whole pipeline once
        sdxl["keyframe_compiled_s"] = round(statistics.median(wall(keyframe) for _ in range(3)), 3)
        keyframe(batch)
        sdxl[f"keyframes_batch{batch}_compiled_s"] = round(
            statistics.median(wall(lambda: keyframe(batch)) for _ in range(2)), 3)
    painter.close()
    result["sdxl"] = sdxl
    log.info("levers sdxl: %s", sdxl)

    # SVD clip
    animator = SVDAnimator(b.config("default", "gpu.compile_animator=false"), b.root)  # compiled below, as a lever
    image = keyframe_image(b, (painter_cfg.width, painter_cfg.height))
    motion = "moderate"
    unet = animator._pipe.unet
    capture = Capture(unet)
    animator._config = b.config("default", "animator.steps=2")  # warm-up and capture: same shapes, 2 steps
    animator.animate(image, "", motion, 1.0, seed=1)
    animator._config = config

    def svd_step() -> object:
        with torch.no_grad():
            return unet(*capture.args, **capture.kwargs)

    frames, h, w = config.animator.frames, config.animator.height // 8, config.animator.width // 8
    latents = torch.randn(1, frames, 4, h, w, device=unet.device, dtype=unet.dtype)
    svd: dict[str, Any] = {}
    for chunk in sorted({config.animator.decode_chunk_size, frames}):
        with torch.no_grad():
            svd[f"decode_chunk{chunk}_ms"] = time_gpu(
                lambda chunk=chunk: animator._pipe.decode_latents(latents, frames, chunk), 2)

    svd["clip_s"] = round(wall(lambda: animator.animate(image, "", motion, 1.0, seed=1)), 3)
    svd["steps_ms"] = measure_levers(svd_step, 3, [
        ("eager", lambda: None),
        ("compile_transformer_blocks (shipped)", lambda: compile_transformer_blocks(unet)),
    ], svd)
    animator.animate(image, "", motion, 1.0, seed=1)  # the compiled blocks meet the whole pipeline once
    svd["clip_compiled_s"] = round(wall(lambda: animator.animate(image, "", motion, 1.0, seed=1)), 3)
    animator.close()
    result["svd"] = svd
    log.info("levers svd: %s", svd)
    return result


def measure_levers(step: Callable[[], object], repeat: int, levers: list[tuple[str, Callable[[], object]]],
                   into: dict[str, Any]) -> dict[str, float]:
    """Apply each lever on top of the previous ones and time the step; a lever that fails is recorded and skipped.
    The first call after a lever is timed apart (compilation)."""
    times: dict[str, float] = {}
    for name, apply in levers:
        try:
            apply()
            into[f"{name}_first_call_s"] = round(wall(step), 2)
            times[name] = time_gpu(step, repeat, warmup=1)
        except Exception as exc:  # a lever that does not apply is a finding, not a crash
            log.exception("lever %s failed", name)
            into[f"{name}_error"] = f"{type(exc).__name__}: {exc}"[:500]
        log.info("lever %s: %s ms", name, times.get(name))
    return times

GRAPH_CALLS = 10  # timed draws per figure: one keyframe alone swings from 2.9 to 4.8 s call to call (issue 16)
FP8_CLIPS = 3


def phase_graphs(b: Bench) -> dict[str, Any]:
    """gpu.graph_painter on the full-size painter: one keyframe alone and a batch of draw.candidates, drawn as the
    draw stage draws them (the first shot's references and masks), eager and then with the UNet replayed from CUDA
    graphs. Per variant: the load, one untimed draw of each size (where the graph variant captures), GRAPH_CALLS
    timed draws of each (median and spread: host-bound figures), the graphs captured, peak memory. Then whether the
    graphs paint eager's pictures, seed for seed: the largest difference of the denoised latents and of the images.
    A variant that fails keeps the other; a lever this machine cannot run is recorded, not timed."""
    result: dict[str, Any] = {"calls": GRAPH_CALLS}
    outputs = lever_variants(b, "graphs", result, {"eager": lambda: graphs_variant(b, graph=False),
                                                  "graph": lambda: graphs_variant(b, graph=True)})
    if outputs.get("eager") and outputs.get("graph"):
        result["graph_vs_eager"] = {}
        for n, (latents, images) in outputs["eager"].items():
            graph_latents, graph_images = outputs["graph"][n]
            result["graph_vs_eager"][f"batch{n}"] = {
                "latents_max_abs_diff": float((latents - graph_latents).abs().max()),
                "latents_max_abs": float(latents.abs().max()),
                "images_max_abs_diff": int(np.abs(images.astype(np.int16) - graph_images.astype(np.int16)).max()),
            }
    return result


def lever_variants(b: Bench, phase: str, result: dict[str, Any],
                   variants: dict[str, Callable[[], tuple[dict[str, Any], Any]]]) -> dict[str, Any]:
    """Each variant's figures into `result[variant]`, in order; returns what each variant made (for comparing them).
    A variant that fails records its error and keeps the others; the summary is written after each variant, so a
    run cut short keeps the variants done."""
    made: dict[str, Any] = {}
    for variant, run in variants.items():
        try:
            result[variant], made[variant] = run()
        except Exception as exc:  # keep the other variants' figures
            log.exception("%s variant %s failed", phase, variant)
            result[variant] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
        reset_peak()
        log.info("%s %s: %s", phase, variant, result[variant])
        b.summary[phase] = result
        (b.out / "summary.json").write_text(json.dumps(b.summary, indent=2) + "\n")
    return made


def graphs_variant(b: Bench, graph: bool) -> tuple[dict[str, Any], dict[int, tuple[torch.Tensor, np.ndarray]]]:
    from animagent.artifacts import Reference
    from animagent.backends.painter_sdxl import SDXLPainter

    config = b.config("default", f"gpu.graph_painter={str(graph).lower()}")
    off = gpu.lever_off(config, "graph_painter")
    if off is not None and not b.tiny:
        return {"lever_off": off}, {}
    reset_peak()
    mark = b.recorder.mark()
    painter = SDXLPainter(config, b.root)
    result: dict[str, Any] = {"lever_off": off, "load_s": round(b.recorder.load_seconds(mark), 2)}
    latents: list[torch.Tensor] = []  # each draw's denoised latents, as the painter decodes them
    decode = painter._decode
    painter._decode = lambda pipe, x: (latents.append(x.float().cpu()), decode(pipe, x))[1]
    width, height = config.painter.width, config.painter.height
    shot = b.script.shots()[0]
    sheet = keyframe_image(b, (width, height))
    refs = [Reference(image="sheet.png", scale=config.painter.character_scale, box=p.box, layers="all")
            for p in shot.characters]
    refs.append(Reference(image="sheet.png", scale=config.painter.setting_scale, layers="style"))
    prompt = shot_prompt(b.script, shot)
    outputs: dict[int, tuple[torch.Tensor, np.ndarray]] = {}
    try:
        for n in (1, config.draw.candidates):
            def draw() -> list[Image.Image]:
                latents.clear()
                return painter.draw(prompt, refs, [sheet] * len(refs), width, height, seeds=list(range(n)))

            result[f"batch{n}_first_call_s"] = round(wall(draw), 3)  # the adapters load; the graphs capture
            runs = []
            for _ in range(GRAPH_CALLS):
                sync()
                began = time.perf_counter()
                images = draw()
                runs.append(round(time.perf_counter() - began, 3))
            result[f"batch{n}_s"] = spread(runs)
            result[f"batch{n}_per_image_s"] = round(statistics.median(runs) / n, 3)
            outputs[n] = (latents[0], np.stack([np.asarray(image) for image in images]))
        result["graphs_captured"] = painter._graphs.captured if painter._graphs is not None else 0
    finally:
        painter.close()
    result.update(peak())
    return result, outputs


def phase_fp8(b: Bench) -> dict[str, Any]:
    """gpu.fp8_animator: one SVD clip at the default profile's size and steps, FP8 (torchao) and then fp16, with
    gpu.compile_animator as the profile has it. Per variant: the load (quantizing included), the first clip apart
    (it compiles; run at 2 steps, the same shapes), FP8_CLIPS timed clips (median and spread), peak memory. Then
    how far the FP8 clip is from fp16's for the same seed (mean and largest pixel difference). A variant that fails
    keeps the other; a lever this machine cannot run is recorded, not timed."""
    result: dict[str, Any] = {"clips": FP8_CLIPS}
    # FP8 first: the lever is the figure wanted, and a lease cut short keeps it
    clips = lever_variants(b, "fp8", result, {"fp8": lambda: fp8_variant(b, fp8=True),
                                              "fp16": lambda: fp8_variant(b, fp8=False)})
    if clips.get("fp16") is not None and clips.get("fp8") is not None:
        diff = np.abs(clips["fp16"].astype(np.int16) - clips["fp8"].astype(np.int16))
        result["fp8_vs_fp16"] = {"mean_abs_diff": round(float(diff.mean()), 3), "max_abs_diff": int(diff.max())}
    return result


def fp8_variant(b: Bench, fp8: bool) -> tuple[dict[str, Any], np.ndarray | None]:
    import torch._dynamo

    from animagent.backends.animator_svd import SVDAnimator

    lever = f"gpu.fp8_animator={str(fp8).lower()}"
    config = b.config("default", lever)
    off = gpu.lever_off(config, "fp8_animator")
    if off is not None and not b.tiny:
        return {"lever_off": off}, None
    torch._dynamo.reset()  # each variant compiles afresh: the first clip's time is its own
    reset_peak()
    mark = b.recorder.mark()
    animator = SVDAnimator(config, b.root)
    result: dict[str, Any] = {"lever_off": off, "compile_animator": config.gpu.compile_animator,
                              "load_s": round(b.recorder.load_seconds(mark), 2)}
    image = keyframe_image(b, (config.painter.width, config.painter.height))

    def clip() -> list[Image.Image]:
        return animator.animate(image, "", "moderate", 1.0, seed=1)

    try:
        animator._config = b.config("default", lever, "animator.steps=2")
        result["first_clip_2_steps_s"] = round(wall(clip), 2)  # compiles
        animator._config = config
        runs = []
        for _ in range(FP8_CLIPS):
            sync()
            began = time.perf_counter()
            frames = clip()
            runs.append(round(time.perf_counter() - began, 3))
        result["clip_s"] = spread(runs)
    finally:
        animator.close()
    result.update(peak())
    return result, np.stack([np.asarray(frame) for frame in frames])


# --- summary ------------------------------------------------------------------------------------------------


def derive(summary: dict[str, Any]) -> dict[str, Any]:
    """The issue's figures from the phases that ran: keyframe, clip, TFLOP/s, ratio, shares, targets."""
    out: dict[str, Any] = {}
    ref, film, naive = summary.get("reference", {}), summary.get("pipeline", {}), summary.get("naive", {})
    config = summary["config"]
    levers = summary.get("levers", {})
    if "keyframe_s" in levers.get("sdxl", {}):
        out["keyframe_s"] = levers["sdxl"]["keyframe_s"]  # one image, as the painter draws it
        out["keyframe_compiled_s"] = levers["sdxl"].get("keyframe_compiled_s")
    if "clip_s" in levers.get("svd", {}):
        out["clip_s"] = levers["svd"]["clip_s"]  # one clip, eager: the lever's baseline (shipped: clip_compiled_s)
        out["clip_compiled_s"] = levers["svd"].get("clip_compiled_s")
    for variant in ("eager", "graph"):  # the graphs phase: keyframes_eager_batch1_s, ...
        figures = summary.get("graphs", {}).get(variant, {})
        out.update({f"keyframes_{variant}_{k}": v["median"] for k, v in figures.items() if isinstance(v, dict)})
    for variant in ("fp16", "fp8"):
        if "clip_s" in summary.get("fp8", {}).get(variant, {}):
            out[f"clip_{variant}_s"] = summary["fp8"][variant]["clip_s"]["median"]
    if "stages" in film:
        draws = film["stages"]["draw"]["calls"].get("draw", [])
        clips = [c for stage in film["stages"].values() for c in stage["calls"].get("animate", [])]  # render pass
        if len(draws) > 1:
            out["draw_call_s"] = statistics.median(draws[1:])  # config draw.candidates images in one batch
        if len(clips) > 1:
            out.setdefault("clip_s", statistics.median(clips[1:]))
        out["film_s"] = film["wall_s"]
        out["film_outside_kernels_share"] = film["outside_kernels_share"]
        out["film_load_s"] = film["load_s"]
        out["film_peak_reserved_gb"] = film["peak_reserved_gb"]
        out["film_call_s"] = {kind: round(sum(sum(s["calls"].get(kind, [])) for s in film["stages"].values()), 1)
                              for kind in CALLS}
    if "sdxl_unet_step_tflop" in ref:
        keyframe_tflop = config["painter_steps"] * ref["sdxl_unet_step_tflop"] + ref["sdxl_vae_decode_tflop"]
        clip_tflop = config["animator_steps"] * ref["svd_unet_step_tflop"] + ref["svd_vae_decode_tflop"]
        out["keyframe_tflop"], out["clip_tflop"] = round(keyframe_tflop, 1), round(clip_tflop, 1)
        out["sdxl_unet_tflop_s"] = round(ref["sdxl_unet_step_tflop"] / ref["sdxl_unet_step_ms"] * 1e3, 1)
        out["svd_unet_tflop_s"] = round(ref["svd_unet_step_tflop"] / ref["svd_unet_step_ms"] * 1e3, 1)
        if "keyframe_s" in out:
            out["keyframe_tflop_s"] = round(keyframe_tflop / out["keyframe_s"], 1)
        if "clip_s" in out:
            out["clip_tflop_s"] = round(clip_tflop / out["clip_s"], 1)
    if "wall_s" in naive and "film_s" in out:
        out["naive_s"] = naive["wall_s"]
        out["film_speedup"] = round(naive["wall_s"] / out["film_s"], 2)
    if "wall_s" in summary.get("fast", {}):
        out["fast_film_s"] = summary["fast"]["wall_s"]  # fewer steps and candidates: not the default's quality
        if "wall_s" in naive:
            out["fast_speedup_vs_default_naive"] = round(naive["wall_s"] / out["fast_film_s"], 2)
    if "peak_reserved_gb" in summary.get("lowvram", {}):
        out["lowvram_peak_gb"] = summary["lowvram"]["peak_reserved_gb"]
    checks = {
        "keyframe_s": lambda v: v <= TARGETS["keyframe_s"], "clip_s": lambda v: v <= TARGETS["clip_s"],
        "film_speedup": lambda v: v >= TARGETS["film_speedup"],
        "film_outside_kernels_share": lambda v: v <= TARGETS["outside_kernels_share"],
        "lowvram_peak_gb": lambda v: v <= TARGETS["lowvram_peak_gb"],
    }
    out["targets_met"] = {k: check(out[k]) for k, check in checks.items() if k in out}
    return out


def environment() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    def v(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "packages": {n: v(n) for n in ("torch", "diffusers", "transformers", "accelerate", "xgrammar", "av",
                                       "safetensors", "tokenizers", "pillow", "numpy", "torchao")},
        "cpu_count": os.cpu_count(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / GB, 1), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(), sms=props.multi_processor_count)
    return info


def first_shots(script: Script, n: int) -> Script:
    """The script cut to its first `n` shots in film order; scenes left empty go."""
    if not 1 <= n <= len(script.shots()):
        raise SystemExit(f"--shots {n}: the script has {len(script.shots())} shots; give 1 to {len(script.shots())}")
    scenes, left = [], n
    for scene in script.scenes:
        if left == 0:
            break
        scenes.append(scene.model_copy(update={"shots": scene.shots[:left]}))
        left -= len(scenes[-1].shots)
    return Script.model_validate(script.model_copy(update={"scenes": tuple(scenes)}).model_dump())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, required=True, help="weights root (make_fullsize.py --root)")
    parser.add_argument("--out", type=Path, required=True, help="folder for summary.json, the log and run folders")
    parser.add_argument("--script", type=Path, default=Path(__file__).with_name("bench_script.json"))
    parser.add_argument("--shots", type=int, default=None,
                        help="keep the script's first N shots (every character and setting stays: the cast is the "
                             "whole film's), for a film and naive pair that fits one lease")
    parser.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated, from: {', '.join(PHASES)}")
    parser.add_argument("--tiny", action="store_true", help="tiny models: check the code paths, not the speed")
    parser.add_argument("--director-variants", default="eager,compiled",
                        help=f"the director phase's variants, from: {', '.join(DIRECTOR_VARIANTS)} (see DIRECTOR_VARIANTS)")
    parser.add_argument("--director-calls", type=int, default=DIRECTOR_CALLS,
                        help="timed calls of each kind per director variant (>= 10 for figures; fewer to time a compile)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        handlers=[logging.FileHandler(args.out / "bench.log"), logging.StreamHandler()])
    phases = [p for p in args.phases.split(",") if p]
    unknown = set(phases) - set(PHASES)
    if unknown:
        raise SystemExit(f"unknown phases {sorted(unknown)}; choose from {PHASES}")
    root = args.weights.resolve()
    if args.tiny and not (root / "tiny").is_dir():
        from animagent.weights import make_tiny

        make_tiny(root)

    if not args.tiny:  # random weights cannot match the registry's pinned sha256; sizes are still checked
        import animagent.weights

        animagent.weights.verify_hashes = lambda root, name: log.info("sha256 of %s not checked (random weights)", name)
    recorder = Recorder()
    instrument(recorder)
    script = Script.model_validate_json(args.script.read_text())
    if args.shots is not None:
        script = first_shots(script, args.shots)
    bench = Bench(root=root, out=args.out.resolve(), script=script,
                  tiny=args.tiny, recorder=recorder, summary={},
                  director_variants=[v for v in args.director_variants.split(",") if v],
                  director_calls=args.director_calls)
    default = bench.config("default")
    bench.summary.update(
        environment=environment(), tiny=args.tiny, script=str(args.script), shots=len(bench.script.shots()),
        config={"painter_steps": default.painter.steps, "animator_steps": default.animator.steps,
                "candidates": {"cast": default.cast.candidates, "draw": default.draw.candidates,
                               "animate": default.animator.candidates},
                "keyframe_size": [default.painter.width, default.painter.height],
                "clip_size": [default.animator.width, default.animator.height],
                "frames": default.animator.frames, "dtype": default.dtype},
        phase_seconds={},
    )
    runners = {"reference": phase_reference, "pipeline": phase_pipeline, "naive": phase_naive,
               "director": phase_director, "lowvram": phase_lowvram, "levers": phase_levers, "fast": phase_fast,
               "attention": phase_attention, "graphs": phase_graphs, "fp8": phase_fp8, "wan": phase_wan}
    for phase in phases:  # in the order given
        log.info("phase %s", phase)
        began = time.perf_counter()
        try:
            bench.summary[phase] = runners[phase](bench)
        except Exception as exc:  # keep the other phases' figures
            log.exception("phase %s failed", phase)
            bench.summary[phase] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
        reset_peak()
        bench.summary["phase_seconds"][phase] = round(time.perf_counter() - began, 1)
        bench.summary["derived"] = derive(bench.summary)
        (bench.out / "summary.json").write_text(json.dumps(bench.summary, indent=2) + "\n")
    print(json.dumps(bench.summary))


if __name__ == "__main__":
    main()
