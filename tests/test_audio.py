"""animagent.audio: loudness to one target, the peak cap, fades, fitting and WAV round trips."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from animagent.audio import PEAK, fade, fit, loudness, normalize, read_wav, samples_for, trim, write_wav

SR = 24000


def noise(seconds: float, scale: float, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).normal(0, scale, round(seconds * SR))).astype(np.float32)


@pytest.mark.parametrize("scale", [0.005, 0.05, 0.2])
def test_normalize_reaches_the_target_whatever_the_level(scale: float) -> None:
    out = normalize(noise(2.0, scale), SR, -16.0)
    assert loudness(out, SR) == pytest.approx(-16.0, abs=0.1)
    assert out.dtype == np.float32


def test_clips_shorter_than_a_gating_block_are_measured_too() -> None:
    out = normalize(noise(0.15, 0.02), SR, -20.0)
    assert len(out) == round(0.15 * SR)
    assert loudness(out, SR) == pytest.approx(-20.0, abs=0.3)


def test_peaks_are_kept_below_minus_one_dbfs() -> None:
    clicks = np.zeros(SR, np.float32)
    clicks[::2400] = 0.05  # very peaky: -16 LUFS would need peaks far above full scale
    out = normalize(clicks, SR, -16.0)
    assert np.abs(out).max() == pytest.approx(PEAK, rel=1e-5)
    assert loudness(out, SR) < -16.0


def test_silence_stays_silence() -> None:
    assert loudness(np.zeros(SR, np.float32), SR) == -math.inf
    assert not np.any(normalize(np.zeros(SR, np.float32), SR, -16.0))
    assert len(normalize(np.zeros(0, np.float32), SR, -16.0)) == 0


def test_fade_starts_and_ends_at_zero_and_keeps_the_middle() -> None:
    out = fade(np.ones(SR, np.float32), SR, 0.01)
    assert out[0] < 0.01 and out[-1] < 0.01
    assert np.all(out[240:-240] == 1.0)
    assert np.all(np.diff(out[:240]) > 0)
    assert len(fade(np.ones(3, np.float32), SR)) == 3


def test_fit_pads_with_silence_and_refuses_longer_audio() -> None:
    out = fit(np.ones(10, np.float32), 25)
    assert len(out) == 25 and out[:10].sum() == 10 and not out[10:].any()
    with pytest.raises(ValueError, match="11 samples do not fit in 10"):
        fit(np.ones(11, np.float32), 10)


def test_samples_for_frames_at_any_frame_rate() -> None:
    assert samples_for(24, 24, SR) == SR
    assert samples_for(3, 7, SR) == round(3 * SR / 7)
    assert samples_for(5, 8, SR) == 15000


def test_wav_round_trip_is_exact_to_16_bits_and_byte_identical(tmp_path: Path) -> None:
    samples = noise(0.5, 0.3)
    write_wav(tmp_path / "a.wav", samples, SR)
    write_wav(tmp_path / "b.wav", samples, SR)
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    back, rate = read_wav(tmp_path / "a.wav")
    assert rate == SR and len(back) == len(samples)
    assert np.abs(back - np.clip(samples, -1, 1)).max() <= 1 / 32767


def test_trim_drops_near_silent_ends_and_keeps_a_margin() -> None:
    speech = np.concatenate([np.full(2400, 1e-4), noise(0.5, 0.2), np.full(4800, -1e-4)]).astype(np.float32)
    out = trim(speech, SR, below_db=-40.0, keep_s=0.01)
    assert len(speech) - len(out) == pytest.approx(2400 + 4800 - 2 * 240, abs=20)
    assert len(trim(np.zeros(100, np.float32), SR)) == 0
    loud = noise(0.2, 0.2)
    assert np.array_equal(trim(loud, SR), loud)
