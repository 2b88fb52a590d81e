"""Kokoro-82M's real-time factor with random weights: the tiny build and the full-size model (the real config).

Both are kokoro's own `KModel`, built by animagent/tiny/kokoro.py's `random_model` (no checkpoint is read). A
random duration head makes every phoneme last about max_dur/2 frames (0.6 s at the real max_dur of 50), which
would make the audio some eight times longer than speech; its bias is therefore set so that a phoneme token lasts
3 frames (75 ms, a real speaking pace), and the audio is as long as real speech of the same text. The vocoder's
cost follows the audio's length, the text models' the phonemes'; the voice pack is random.

Input: the phonemes of three narrations (what misaki's espeak-ng G2P gives for them, captured so this script
needs no G2P), spoken one by one, as the speak stage does. RTF = wall seconds / audio seconds (below 1 is faster
than real time), after one warm-up run of each. `--g2p` also times the G2P (CPU, needs misaki).

Usage: python scripts/bench_voice.py [--device cpu|cuda] [--repeats N] [--g2p]
Prints one JSON summary.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time

import torch

from animagent.tiny.kokoro import REAL_CONFIG, REAL_VOCAB, VOICE_SHAPE, random_model, tiny_config

NARRATIONS = (
    "Mira climbs the hill, as she does every night.",
    "Tobin shelters the flame — «merci», says Mira.",
    "The storm breaks over the lighthouse tree, and for a long moment the lantern is the only light on the coast.",
)
PHONEMES = (
    "mˈiəɹə klˈImz ðə hˈɪl, æz ʃi dˈʌz ˈɛvɹi nˈIt.",
    "tˈɑbɪn ʃˈɛltəɹz ðə flˈAm — mɛɹsˈi, sˈɛz mˈiəɹə.",
    "ðə stˈɔɹm bɹˈAks ˌOvəɹ ðə lˈIthWs tɹˈi, ænd fəɹɹə lˈɔŋ mˈOmənt ðə lˈæntəɹn ɪz ðɪ ˈOnli lˈIt ɔnðə kˈOst.",
)
FRAMES_PER_TOKEN = 3


def bench(config: dict, device: str, repeats: int) -> dict:
    torch.manual_seed(0)
    model = random_model(config)
    bias = -math.log(config["max_dur"] / FRAMES_PER_TOKEN - 1)  # sigmoid(bias) * max_dur = FRAMES_PER_TOKEN
    with torch.no_grad():
        model.predictor.duration_proj.linear_layer.weight.mul_(0.01)
        model.predictor.duration_proj.linear_layer.bias.fill_(bias)
    model = model.to(device).eval()
    pack = (torch.randn(VOICE_SHAPE, generator=torch.Generator().manual_seed(0)) * 0.15).to(device)

    def once() -> tuple[float, float]:
        audio_s = 0.0
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for phonemes in PHONEMES:
            audio_s += model(phonemes, pack[len(phonemes) - 1], 1.0).numel() / 24000
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - started, audio_s

    once()  # warm-up
    runs = [once() for _ in range(repeats)]
    wall = statistics.median(r[0] for r in runs)
    audio_s = runs[0][1]
    return {
        "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "audio_s": round(audio_s, 2),
        "wall_s_median": round(wall, 3),
        "rtf": round(wall / audio_s, 4),
        "runs": repeats,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--g2p", action="store_true")
    args = parser.parse_args()
    summary = {
        "device": torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu",
        "torch_threads": torch.get_num_threads(),
        "tiny": bench(tiny_config(), args.device, args.repeats),
        "full_size": bench(REAL_CONFIG, args.device, args.repeats),
    }
    if args.g2p:
        from misaki.espeak import EspeakFallback
        from misaki.token import MToken

        g2p = EspeakFallback(british=False)
        started = time.perf_counter()
        phonemes = [g2p(MToken(text=t, tag="", whitespace=""))[0] for t in NARRATIONS]
        summary["g2p_s"] = round(time.perf_counter() - started, 4)
        phonemes = ["".join(p for p in ps if p in REAL_VOCAB) for ps in phonemes]  # as the backend keeps them
        summary["g2p_matches_captured"] = phonemes == list(PHONEMES)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
