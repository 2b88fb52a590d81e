"""animagent.video: encode/decode round trips, retime, the film with soft subtitles, deterministic bytes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import av
import numpy as np
import pytest

from animagent.video import (
    Cue,
    FilmShot,
    probe,
    read_audio,
    read_frames,
    read_subtitles,
    retime,
    write_film,
    write_video,
)

W, H = 64, 48
FPS = 8


def flat(rgb: tuple[int, int, int], width: int = W, height: int = H) -> np.ndarray:
    return np.full((height, width, 3), rgb, dtype=np.uint8)


def clip(n: int, seed: int = 0, width: int = W, height: int = H) -> list[np.ndarray]:
    """n smooth, moving frames (noise would be unrealistic and slow to encode)."""
    y, x = np.mgrid[0:height, 0:width]
    frames = []
    for i in range(n):
        r = (x * 4 + i * 8 + seed * 50) % 256
        g = (y * 5 + seed * 30) % 256
        b = ((x + y) * 2 + i * 4) % 256
        frames.append(np.stack([r, g, b], axis=-1).astype(np.uint8))
    return frames


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# Shot lengths 5, 3, 8 at 8 fps: cues [0, 0.625), [0.625, 1.0), [1.0, 2.0).
NARRATIONS = [
    "Mira steps into the forest, lantern in hand.",
    "Ünder the old oak — 橡树 — a fox waits 🦊 {not a tag} \\N",
    "They walk on,\ntogether.\r\n",
]
CUE_TEXTS = [NARRATIONS[0], NARRATIONS[1], "They walk on, together."]
CUE_TIMES = [(0.0, 0.625), (0.625, 1.0), (1.0, 2.0)]


@pytest.fixture
def film(tmp_path: Path) -> tuple[Path, Path, list[FilmShot]]:
    shots = [FilmShot(clip(n, seed=k), text) for k, (n, text) in enumerate(zip((5, 3, 8), NARRATIONS))]
    video, srt = tmp_path / "film.mp4", tmp_path / "film.srt"
    write_film(shots, video, srt, fps=FPS)
    return video, srt, shots


def test_write_read_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    colour = (200, 40, 90)  # saturated: a BT.601/709 mismatch would move it by far more than a few levels
    write_video([flat(colour)] * 6, path, fps=FPS)

    info = probe(path)
    assert (info.frames, info.width, info.height) == (6, W, H)
    assert (info.codec, info.pix_fmt, info.subtitle_streams) == ("h264", "yuv420p", 0)
    assert info.fps == FPS
    assert info.duration_s == pytest.approx(6 / FPS)

    frames = read_frames(path)
    assert len(frames) == 6
    for frame in frames:
        assert frame.shape == (H, W, 3) and frame.dtype == np.uint8
        assert np.abs(frame.astype(int) - colour).max() <= 3


def test_stream_is_tagged_bt709(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    write_video(clip(2), path, fps=FPS)
    with av.open(str(path)) as container:
        ctx = container.streams.video[0].codec_context
        assert (ctx.colorspace, ctx.color_primaries, ctx.color_trc, ctx.color_range) == (1, 1, 1, 1)


def test_moving_frames_survive(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    frames = clip(10)
    write_video(frames, path, fps=FPS)
    decoded = read_frames(path)
    assert len(decoded) == 10
    # crf 18 on smooth content: a small mean error, and frames stay in order.
    for original, back in zip(frames, decoded):
        assert np.abs(back.astype(int) - original).mean() < 4


def test_odd_size_is_padded_by_edge_replication(tmp_path: Path) -> None:
    path = tmp_path / "odd.mp4"
    frame = flat((10, 10, 10), width=65, height=49)
    frame[:, -1] = (240, 240, 240)  # last column and row bright: the pad must copy them
    frame[-1, :] = (240, 240, 240)
    write_video([frame] * 2, path, fps=FPS)

    info = probe(path)
    assert (info.width, info.height, info.frames) == (66, 50, 2)
    back = read_frames(path)[0].astype(int)
    assert np.abs(back[:, :-2][:-2] - 10).max() <= 6  # interior away from the edge (chroma/deblock bleed)
    assert np.abs(back[:, -1] - 240).max() <= 6  # padded column
    assert np.abs(back[-1, :] - 240).max() <= 6  # padded row


def test_write_video_is_byte_deterministic(tmp_path: Path) -> None:
    frames = clip(12)
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    write_video(frames, a, fps=FPS)
    write_video(frames, b, fps=FPS)
    assert sha256(a) == sha256(b)
    assert b"Lavf" not in a.read_bytes()  # bitexact: no muxer version string


def test_writes_mp4_whatever_the_suffix(tmp_path: Path) -> None:
    # Atomic writers use names such as film.mp4.tmp; the container must not be guessed from the suffix.
    path = tmp_path / "clip.mp4.tmp"
    write_video(clip(3), path, fps=FPS)
    assert probe(path).frames == 3


def test_needs_existing_parent_and_creates_only_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "run" / "video"
    folder.mkdir(parents=True)
    write_video(clip(2), folder / "clip.mp4", fps=FPS)
    assert [p.name for p in folder.iterdir()] == ["clip.mp4"]
    with pytest.raises(FileNotFoundError):
        write_video(clip(2), tmp_path / "missing" / "clip.mp4", fps=FPS)


def test_bad_frames_raise_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no frames"):
        write_video([], tmp_path / "x.mp4", fps=FPS)
    with pytest.raises(ValueError, match="frame 1"):
        write_video([flat((0, 0, 0)), flat((0, 0, 0), width=32)], tmp_path / "x.mp4", fps=FPS)
    with pytest.raises(ValueError, match="frame 0"):
        write_video([flat((0, 0, 0)).astype(np.float32)], tmp_path / "x.mp4", fps=FPS)
    with pytest.raises(ValueError, match="shot 1"):
        write_film(
            [FilmShot(clip(2), "a"), FilmShot(clip(2, width=32), "b")],
            tmp_path / "f.mp4",
            tmp_path / "f.srt",
            fps=FPS,
        )
    with pytest.raises(ValueError, match="blank narration"):
        write_film([FilmShot(clip(2), " \n ")], tmp_path / "f.mp4", tmp_path / "f.srt", fps=FPS)


def test_retime_down_up_and_same() -> None:
    frames = [np.full((2, 2, 3), i, dtype=np.uint8) for i in range(10)]

    def ids(out: list[np.ndarray]) -> list[int]:
        return [int(f[0, 0, 0]) for f in out]

    assert ids(retime(frames, 10)) == list(range(10))
    assert ids(retime(frames, 5)) == [0, 2, 4, 6, 8]
    assert ids(retime(frames, 4)) == [0, 2, 5, 7]
    assert ids(retime(frames, 1)) == [0]
    assert ids(retime(frames, 25)) == [i * 10 // 25 for i in range(25)]
    assert ids(retime(frames, 20)) == [i // 2 for i in range(20)]
    assert ids(retime(frames[:1], 3)) == [0, 0, 0]
    assert retime(frames, 3)[1] is frames[3]  # frames are picked, not copied
    with pytest.raises(ValueError):
        retime(frames, 0)
    with pytest.raises(ValueError):
        retime([], 3)


def test_film_frames_and_streams(film: tuple[Path, Path, list[FilmShot]]) -> None:
    video, _, shots = film
    info = probe(video)
    assert info.frames == sum(len(s.frames) for s in shots) == 16
    assert (info.codec, info.pix_fmt, info.subtitle_streams) == ("h264", "yuv420p", 1)
    assert info.duration_s == pytest.approx(2.0)
    with av.open(str(video)) as container:
        assert container.streams.subtitles[0].codec_context.name == "mov_text"
    # Shots and frames are in order: each decoded frame is nearest to the input frame at its index.
    originals = [frame.astype(int) for shot in shots for frame in shot.frames]
    for i, back in enumerate(read_frames(video)):
        assert int(np.argmin([np.abs(back - original).mean() for original in originals])) == i


@pytest.mark.parametrize("which", ["mp4", "srt"])
def test_film_cues(film: tuple[Path, Path, list[FilmShot]], which: str) -> None:
    video, srt, _ = film
    cues = read_subtitles(video if which == "mp4" else srt)
    assert cues == [Cue(start, end, text) for (start, end), text in zip(CUE_TIMES, CUE_TEXTS)]


def test_srt_sidecar_text(film: tuple[Path, Path, list[FilmShot]]) -> None:
    _, srt, _ = film
    assert srt.read_bytes().decode("utf-8") == (
        f"1\n00:00:00,000 --> 00:00:00,625\n{CUE_TEXTS[0]}\n\n"
        f"2\n00:00:00,625 --> 00:00:01,000\n{CUE_TEXTS[1]}\n\n"
        f"3\n00:00:01,000 --> 00:00:02,000\n{CUE_TEXTS[2]}\n\n"
    )
    # FFmpeg's own SRT demuxer reads the same three cues.
    with av.open(str(srt)) as container:
        packets = [p for p in container.demux(subtitles=0) if p.size]
        assert [bytes(p).decode() for p in packets] == CUE_TEXTS


def test_film_cue_times_round_to_milliseconds(tmp_path: Path) -> None:
    video, srt = tmp_path / "f.mp4", tmp_path / "f.srt"
    write_film([FilmShot(clip(1), "a"), FilmShot(clip(2), "b")], video, srt, fps=24)
    expected = [Cue(0.0, 0.042, "a"), Cue(0.042, 0.125, "b")]  # 1/24 s = 41.67 ms, 3/24 s = 125 ms
    assert read_subtitles(video) == expected
    assert read_subtitles(srt) == expected


def test_write_film_is_byte_deterministic(tmp_path: Path, film: tuple[Path, Path, list[FilmShot]]) -> None:
    video, srt, shots = film
    video2, srt2 = tmp_path / "again.mp4", tmp_path / "again.srt"
    write_film(shots, video2, srt2, fps=FPS)
    assert sha256(video) == sha256(video2)
    assert sha256(srt) == sha256(srt2)


def test_read_srt_from_other_tools(tmp_path: Path) -> None:
    path = tmp_path / "other.srt"
    path.write_bytes("\ufeff1\r\n00:01:02,003 --> 01:00:00.500\r\nline one\r\nline two\r\n\r\n".encode())
    assert read_subtitles(path) == [Cue(62.003, 3600.5, "line one line two")]


# --- the narration track -------------------------------------------------------------------------------------

SR = 24000


def tone(seconds: float, freq: float = 440.0, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(round(seconds * SR)) / SR
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def voiced_film(tmp_path: Path, speech=(0.3, 0.0, 0.9), frames=(5, 3, 8)) -> tuple[Path, Path, list[FilmShot]]:
    """Shots of 5, 3 and 8 frames at 8 fps; shot k speaks a tone of speech[k] seconds (0: a silent shot)."""
    shots = [
        FilmShot(clip(n, seed=k), text, audio=tone(s) if s else np.zeros(0, np.float32), speech_s=s or None)
        for k, (n, text, s) in enumerate(zip(frames, NARRATIONS, speech))
    ]
    video, srt = tmp_path / "film.mp4", tmp_path / "film.srt"
    write_film(shots, video, srt, fps=FPS, sample_rate=SR)
    return video, srt, shots


def test_film_audio_track_lasts_as_long_as_the_video(tmp_path: Path) -> None:
    video, _, _ = voiced_film(tmp_path)
    info = probe(video)
    assert (info.audio_codec, info.audio_sample_rate, info.subtitle_streams) == ("aac", SR, 1)
    assert abs(info.audio_duration_s - info.duration_s) <= 1 / FPS
    assert info.audio_duration_s == pytest.approx(2.0, abs=1e-3)
    assert probe(tmp_path / "film.mp4").frames == 16


def test_speech_lies_over_its_shot_and_cues_end_with_it(tmp_path: Path) -> None:
    video, srt, _ = voiced_film(tmp_path)
    samples, rate = read_audio(video)
    assert rate == SR

    def rms(start_s: float, end_s: float) -> float:
        return float(np.sqrt(np.mean(samples[round(start_s * SR) : round(end_s * SR)] ** 2)))

    # shot 0 speaks 0-0.3 s, shot 1 (0.625-1.0 s) is silent, shot 2 speaks 1.0-1.9 s
    assert rms(0.02, 0.28) > 0.15 and rms(1.02, 1.88) > 0.15
    assert rms(0.35, 0.6) < 0.01 and rms(0.65, 0.98) < 0.01 and rms(1.95, 2.0) < 0.01
    expected = [Cue(0.0, 0.3, CUE_TEXTS[0]), Cue(0.625, 1.0, CUE_TEXTS[1]), Cue(1.0, 1.9, CUE_TEXTS[2])]
    assert read_subtitles(video) == expected
    assert read_subtitles(srt) == expected


def test_shot_audio_is_faded_at_both_ends(tmp_path: Path) -> None:
    """A shot whose speech fills it to the last sample still starts and ends at zero: no click at the cut."""
    loud = np.full(round(5 / FPS * SR), 0.5, np.float32)  # a DC step would click without fades
    video, srt = tmp_path / "f.mp4", tmp_path / "f.srt"
    write_film([FilmShot(clip(5), "a", audio=loud), FilmShot(clip(3), "b", audio=loud[:100])], video, srt,
               fps=FPS, sample_rate=SR)
    samples, _ = read_audio(video)
    boundary = round(5 / FPS * SR)
    assert np.abs(samples[boundary - 8 : boundary + 8]).max() < 0.1
    assert np.abs(samples[:8]).max() < 0.1


def test_write_film_with_audio_is_byte_deterministic(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, _, _ = voiced_film(tmp_path / "a")
    b, _, _ = voiced_film(tmp_path / "b")
    assert sha256(a) == sha256(b)


def test_audio_must_fit_its_shot_and_be_on_every_shot(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="longer than its 2 frames"):
        write_film([FilmShot(clip(2), "a", audio=tone(0.5))], tmp_path / "f.mp4", tmp_path / "f.srt", fps=FPS,
                   sample_rate=SR)
    with pytest.raises(ValueError, match="shot 1 lacks audio"):
        write_film([FilmShot(clip(2), "a", audio=tone(0.1)), FilmShot(clip(2), "b")], tmp_path / "f.mp4",
                   tmp_path / "f.srt", fps=FPS, sample_rate=SR)
