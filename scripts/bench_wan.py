"""Wan2.2-TI2V-5B at full size with random weights on one GPU: clips through the product's WanAnimator.

Builds the Diffusers repo layout from `scripts/wan_ti2v_5b_configs.json` (the configs diffusers' conversion
script writes for TI2V-5B; sources inside the file) with random weights: the transformer and UMT5-XXL in bf16
(the Hub holds the transformer in fp32: same shapes, half the bytes to write and read), the VAE in fp32, the
tiny builder's T5 tokenizer (token ids stay in range; the pipeline pads every prompt to 512 tokens anyway). Then
it loads `WanAnimator` with the `wan` profile and renders, from one 1280×704 keyframe:

    clips     a 3 s and a 5 s shot (73 and 121 frames) at the profile's steps and guidance (the model card's)
    offload   `animator.cpu_offload` (what a 24 GB card runs): the 5 s shot with few steps, then again with the
              VAE tiled, for the peak memory, the per-step time and the decode

Per step: the transformer's forwards timed between CUDA events (two per step: classifier-free guidance).
Decode: the animator's VAE decode, host wall time with the device synchronised. Peaks: torch's allocated and
reserved maxima over each clip. `--tiny` runs the same code on the tiny model on a CPU (numbers mean nothing).

Usage: python scripts/bench_wan.py --weights ROOT --out DIR [--phases build,clips,offload] [--tiny]
Writes DIR/summary.json after every phase and prints it at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from animagent.config import Config, load_config
from animagent.weights import model_dir

log = logging.getLogger("bench_wan")
GB = 1024**3
CONFIGS = Path(__file__).with_name("wan_ti2v_5b_configs.json")
PROMPT = ("anime style, wide shot, a girl in a red coat and a grey fox walk through the forest at dawn, "
          "soft light through the trees")


def build(folder: Path, configs: dict[str, Any], device: str = "cuda") -> dict[str, Any]:
    """The repo of `configs` with random weights, initialised on `device` (see the module docstring)."""
    import diffusers
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    from animagent.tiny.diffusion import _write_json
    from animagent.tiny.wan import _pieces, _write_tokenizer

    seconds = {}
    began = time.perf_counter()
    with torch.device(device):
        transformer = WanTransformer3DModel.from_config(configs["transformer"]).to(torch.bfloat16)
    transformer.save_pretrained(folder / "transformer", max_shard_size="5GB")
    del transformer
    seconds["transformer_s"] = time.perf_counter() - began
    began = time.perf_counter()
    torch.set_default_dtype(torch.bfloat16)
    with torch.device(device):
        encoder = UMT5EncoderModel(UMT5Config(**configs["text_encoder"]))
    torch.set_default_dtype(torch.float32)
    encoder.save_pretrained(folder / "text_encoder", max_shard_size="5GB")
    del encoder
    seconds["text_encoder_s"] = time.perf_counter() - began
    began = time.perf_counter()
    vae_config = {k: v for k, v in configs["vae"].items() if k != "clip_output"}
    with torch.device(device):
        vae = AutoencoderKLWan.from_config(vae_config)
    vae.save_pretrained(folder / "vae")
    del vae
    seconds["vae_s"] = time.perf_counter() - began
    _write_tokenizer(folder / "tokenizer", _pieces())
    UniPCMultistepScheduler(**configs["scheduler"]).save_pretrained(folder / "scheduler")
    _write_json(folder / "model_index.json", {
        **configs["pipeline"], "_diffusers_version": diffusers.__version__, "boundary_ratio": None,
        "scheduler": ["diffusers", "UniPCMultistepScheduler"],
        "text_encoder": ["transformers", "UMT5EncoderModel"], "tokenizer": ["transformers", "T5TokenizerFast"],
        "transformer": ["diffusers", "WanTransformer3DModel"], "transformer_2": [None, None],
        "vae": ["diffusers", "AutoencoderKLWan"],
    })
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return {**{k: round(v, 1) for k, v in seconds.items()}, "bytes": size}


class StepTimer:
    """CUDA-event times of every transformer forward (host clock on a CPU)."""

    def __init__(self, transformer: torch.nn.Module):
        self.times: list[float] = []
        self._open: Any = None
        transformer.register_forward_pre_hook(self._start)
        transformer.register_forward_hook(self._stop)

    def _start(self, *_: object) -> None:
        if torch.cuda.is_available():
            self._open = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self._open[0].record()
        else:
            self._open = time.perf_counter()

    def _stop(self, *_: object) -> None:
        if torch.cuda.is_available():
            self._open[1].record()
            self._open[1].synchronize()
            self.times.append(self._open[0].elapsed_time(self._open[1]) / 1e3)
        else:
            self.times.append(time.perf_counter() - self._open)

    def take(self) -> list[float]:
        times, self.times = self.times, []
        return times


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def peaks() -> dict[str, float]:
    if not torch.cuda.is_available():
        return {}
    return {"peak_allocated_gb": round(torch.cuda.max_memory_allocated() / GB, 2),
            "peak_reserved_gb": round(torch.cuda.max_memory_reserved() / GB, 2)}


def clip(animator, timer: StepTimer, keyframe: Image.Image, duration_s: float, guided: bool) -> dict[str, Any]:
    decodes: list[float] = []
    decode = animator._decode

    def timed_decode(latents):
        sync()
        began = time.perf_counter()
        video = decode(latents)
        sync()
        decodes.append(time.perf_counter() - began)
        return video

    animator._decode = timed_decode
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    sync()
    began = time.perf_counter()
    frames = animator.animate(keyframe, PROMPT, "gentle", duration_s, seed=1)
    sync()
    total = time.perf_counter() - began
    animator._decode = decode
    forwards = timer.take()
    per = 2 if guided else 1
    steps = [sum(forwards[i:i + per]) for i in range(0, len(forwards), per)]
    return {
        "duration_s": duration_s, "frames": len(frames), "size": list(frames[0].size), "steps": len(steps),
        "clip_s": round(total, 2), "step_median_s": round(statistics.median(steps), 3),
        "step_first_s": round(steps[0], 3), "denoise_s": round(sum(steps), 2), "decode_s": round(sum(decodes), 2),
        "other_s": round(total - sum(steps) - sum(decodes), 2), "ladder": animator.take_ladder(), **peaks(),
    }


def load(config: Config, root: Path):
    from animagent.backends.animator_wan import WanAnimator

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    began = time.perf_counter()
    animator = WanAnimator(config, root)
    sync()
    return animator, {"load_s": round(time.perf_counter() - began, 1), **peaks()}


def environment() -> dict[str, Any]:
    from importlib.metadata import version

    info: dict[str, Any] = {"python": platform.python_version(), "packages": {
        n: version(n) for n in ("torch", "diffusers", "transformers", "accelerate", "tokenizers", "ftfy")}}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / GB, 1), cuda=torch.version.cuda)
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--phases", default="build,clips,offload")
    parser.add_argument("--offload-steps", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="the tiny model on a CPU: checks the code paths")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    root = args.weights.resolve()
    if args.tiny:
        overrides = ["animator.kind=wan", "animator.width=128",
                     "animator.height=96", "animator.steps=2"]
        config = load_config("tiny", overrides=[f"weights.root={root}", *overrides])
        durations = (0.3, 0.5)
    else:
        config = load_config("wan", overrides=[f"weights.root={root}", "device=cuda"])
        durations = (3.0, 5.0)
    folder = model_dir(root, config.animator.model, config.weights.flavor)
    summary: dict[str, Any] = {"environment": environment(), "config": config.animator.model_dump(
        exclude={"negative_prompt"}), "dtype": config.dtype}
    keyframe = Image.fromarray(np.random.default_rng(0).integers(
        0, 256, (config.animator.height, config.animator.width, 3), dtype=np.uint8))

    def save() -> None:
        (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")

    for phase in args.phases.split(","):
        began = time.perf_counter()
        try:
            if phase == "build":
                folder.mkdir(parents=True, exist_ok=True)
                if args.tiny:
                    from animagent.tiny.wan import build_wan

                    build_wan(folder)
                    summary["build"] = {}
                else:
                    summary["build"] = build(folder, json.loads(CONFIGS.read_text()))
            elif phase == "clips":
                animator, summary["load"] = load(config, root)
                timer = StepTimer(animator._pipe.transformer)
                summary["clips"] = []
                for duration in durations:
                    summary["clips"].append(clip(animator, timer, keyframe, duration, config.animator.guidance > 1))
                    save()
                animator.close()
            elif phase == "offload":
                offload = config.model_copy(update={"animator": config.animator.model_copy(
                    update={"cpu_offload": True, "steps": args.offload_steps})})
                animator, summary["offload_load"] = load(offload, root)
                timer = StepTimer(animator._pipe.transformer)
                summary["offload"] = [clip(animator, timer, keyframe, durations[-1], True)]
                save()
                animator._pipe.vae.enable_tiling()
                summary["offload"].append({"vae_tiling": True, **clip(animator, timer, keyframe, durations[-1], True)})
                animator.close()
            else:
                raise SystemExit(f"unknown phase {phase}")
        except Exception as exc:  # a failed phase is recorded and the next one still runs
            log.exception("phase %s failed", phase)
            summary.setdefault("errors", {})[phase] = f"{type(exc).__name__}: {exc}"[:2000]
        summary.setdefault("phase_seconds", {})[phase] = round(time.perf_counter() - began, 1)
        save()
        log.info("phase %s done in %.1f s", phase, summary["phase_seconds"][phase])
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
