"""Audio samples: loudness normalisation, fades, fitting to a length, and 16-bit PCM WAV files.

Samples are float32 mono numpy arrays in [-1, 1]. Loudness is ITU-R BS.1770-4 integrated loudness (EBU R128's
measure, in LUFS) from pyloudnorm: K-weighting, 400 ms blocks, the absolute and relative gates. A clip shorter
than one block is measured repeated to one block's length (the loudness of a repeated sound is its own). After
the gain, a clip whose peak would pass `PEAK` is turned down until it does not (a lower loudness rather than
clipping; no limiter). WAV files are written with the standard library's `wave` (16-bit PCM, mono), so they are
byte-identical for identical samples. This module owns the arithmetic on samples; PyAV encoding lives in
video.py and speech in the speak stage.
"""

from __future__ import annotations

import math
import wave
from pathlib import Path

import numpy as np

PEAK = 10 ** (-1 / 20)  # -1 dBFS: headroom for the AAC encoder's overshoot
BLOCK_S = 0.4  # BS.1770's gating block
FADE_S = 0.01  # fades at the ends of every clip: no click where a clip starts or ends mid-waveform


def loudness(samples: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness in LUFS; -inf for silence."""
    import pyloudnorm

    if not np.any(samples):
        return -math.inf
    block = math.ceil(BLOCK_S * sample_rate) + 1
    if len(samples) < block:
        samples = np.tile(samples, -(-block // len(samples)))
    return float(pyloudnorm.Meter(sample_rate).integrated_loudness(samples.astype(np.float64)))


def normalize(samples: np.ndarray, sample_rate: int, target_lufs: float) -> np.ndarray:
    """`samples` scaled to `target_lufs` (or below, where the peak would pass -1 dBFS); silence is returned as is."""
    measured = loudness(samples, sample_rate)
    if not math.isfinite(measured):
        return samples.astype(np.float32)
    gain = 10 ** ((target_lufs - measured) / 20)
    peak = float(np.max(np.abs(samples))) * gain
    if peak > PEAK:
        gain *= PEAK / peak
    return (samples * gain).astype(np.float32)


def trim(samples: np.ndarray, sample_rate: int, below_db: float = -40.0, keep_s: float = FADE_S) -> np.ndarray:
    """`samples` without the near-silence at either end (samples more than `below_db` under the clip's peak),
    keeping `keep_s` of it on each side: a TTS model's lead-in and tail, so speech starts where its cue does."""
    peak = float(np.max(np.abs(samples))) if len(samples) else 0.0
    if peak == 0.0:
        return samples[:0].astype(np.float32)
    loud = np.flatnonzero(np.abs(samples) >= peak * 10 ** (below_db / 20))
    keep = round(keep_s * sample_rate)
    return samples[max(0, loud[0] - keep) : loud[-1] + 1 + keep].astype(np.float32)


def fade(samples: np.ndarray, sample_rate: int, seconds: float = FADE_S) -> np.ndarray:
    """Raised-cosine fade-in and fade-out of `seconds` (shortened to half the clip for a very short one)."""
    n = min(round(seconds * sample_rate), len(samples) // 2)
    if n == 0:
        return samples.astype(np.float32)
    ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)).astype(np.float32)
    out = samples.astype(np.float32).copy()
    out[:n] *= ramp
    out[-n:] *= ramp[::-1]
    return out


def fit(samples: np.ndarray, length: int) -> np.ndarray:
    """`samples` followed by silence up to `length`; ValueError when they are longer."""
    if len(samples) > length:
        raise ValueError(f"{len(samples)} samples do not fit in {length}")
    return np.concatenate([samples.astype(np.float32), np.zeros(length - len(samples), dtype=np.float32)])


def samples_for(frames: int, fps: int, sample_rate: int) -> int:
    """Samples as long as `frames` video frames (rounded: off by at most half a sample per shot)."""
    return round(frames * sample_rate / fps)


def write_wav(path: Path, samples: np.ndarray, sample_rate: int) -> None:
    pcm = np.round(np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.tobytes())


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """(float32 samples, sample rate) of a 16-bit PCM mono WAV such as `write_wav` writes."""
    with wave.open(str(path), "rb") as wav:
        if wav.getnchannels() != 1 or wav.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16-bit mono PCM, got {wav.getnchannels()} channel(s) of "
                             f"{8 * wav.getsampwidth()} bits")
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        return (data.astype(np.float32) / 32767).astype(np.float32), wav.getframerate()
