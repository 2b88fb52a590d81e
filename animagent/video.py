"""Video files: H.264 MP4 encode and decode, retiming, and the film with its narration and soft subtitles.

This module owns everything done with PyAV:
- `write_video` encodes RGB frames to an H.264 (libx264) yuv420p MP4, BT.709 tagged, with `+faststart`.
- `write_film` encodes several shots into one MP4 with a mov_text subtitle track (one cue per shot), optionally
  an AAC audio track (each shot's samples laid over exactly its frames), and writes an SRT sidecar with the
  same cues.
- `read_frames`, `read_audio`, `probe` and `read_subtitles` read those files back; `retime` picks frames for a
  length.

Frames are uint8 HxWx3 RGB numpy arrays. yuv420p needs even dimensions, so a frame with an odd width or
height is padded by one column on the right and/or one row at the bottom, replicating the edge pixels;
files read back at the padded size.

Output is byte-deterministic: the same frames (and cues) give the same file bytes on the same build of
PyAV/FFmpeg, whatever the time or the number of CPU cores. That takes the `bitexact` flags (no encoder
string, no creation time), a fixed x264 thread count (x264 writes its thread count into the stream and
auto threads depend on the core count) and a bit-exact RGB->YUV conversion. FFmpeg's native AAC encoder is
deterministic with `bitexact`; the MP4 edit list trims its priming and padding, so the audio stream lasts
exactly its samples.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import ColorPrimaries, ColorRange, Colorspace, ColorTrc, Interpolation

log = logging.getLogger(__name__)

# Fixed so bytes do not depend on the machine's core count; frame threads are x264's own default mode.
_SMALL_FRAME = 128
_X264_THREADS = 4
_AAC_FRAME = 1024  # samples per AAC frame
_AAC_BIT_RATE = 96_000  # mono speech at 24 kHz: transparent enough, small
# Subtitle timestamps are whole milliseconds (SRT's resolution).
_MS = Fraction(1, 1000)
# FFmpeg's mov_text encoder refuses to open without an ASS header; it turns it into the track's sample
# description (font, colours, box). The cue packets themselves are built by hand (see `_mov_text_packet`).
_ASS_HEADER = (
    "[Script Info]\n"
    "ScriptType: v4.00+\n"
    "PlayResX: 384\n"
    "PlayResY: 288\n"
    "\n"
    "[V4+ Styles]\n"
    "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, "
    "Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, "
    "Alignment, MarginL, MarginR, MarginV, Encoding\n"
    "Style: Default,Arial,16,&Hffffff,&Hffffff,&H0,&H0,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,0\n"
    "\n"
    "[Events]\n"
    "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n"
).encode()
_SRT_TIMES = re.compile(
    r"(\d+):(\d\d):(\d\d)[,.](\d{3})\s*-->\s*(\d+):(\d\d):(\d\d)[,.](\d{3})"
)


@dataclass(frozen=True)
class FilmShot:
    frames: Sequence[np.ndarray]  # already retimed, all the film's size
    narration: str
    # float32 mono samples at the film's sample rate, spoken from the shot's first frame; at most the shot's
    # length (the rest is silence). None: the film has no audio track (then no shot has audio).
    audio: np.ndarray | None = None
    # seconds of speech from the shot's start: the cue ends there. None or 0: the cue lasts the whole shot.
    speech_s: float | None = None


@dataclass(frozen=True)
class VideoInfo:
    frames: int
    fps: float
    width: int
    height: int
    duration_s: float
    codec: str
    pix_fmt: str
    subtitle_streams: int
    audio_codec: str | None = None  # None: no audio stream
    audio_sample_rate: int | None = None
    audio_duration_s: float | None = None


@dataclass(frozen=True)
class Cue:
    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True)
class _MsCue:
    start_ms: int
    end_ms: int
    text: str


def write_video(
    frames: Sequence[np.ndarray], path: Path, fps: int, crf: int = 18, preset: str = "medium"
) -> None:
    """Encode `frames` to an H.264 MP4 at `path` (the parent folder must exist)."""
    _check_frames(frames, "frames")
    _encode(path, [frames], [], fps, crf, preset)


def write_film(
    shots: Sequence[FilmShot],
    video_path: Path,
    srt_path: Path,
    fps: int,
    crf: int = 18,
    preset: str = "medium",
    sample_rate: int = 24000,
) -> None:
    """Encode all shots in order into one MP4 with a mov_text track (and an AAC track when the shots carry
    audio), and write the same cues as SRT.

    Each shot gets one cue, its narration with line breaks turned into spaces, shown from the shot's first
    frame until its speech ends (`speech_s`), or until its last frame ends when it has no speech. A shot's
    audio is faded in and out over 10 ms and padded with silence to its frames' length rounded to a sample, so
    audio and video end together (to half a sample per shot).
    """
    from animagent import audio

    if not shots:
        raise ValueError("write_film needs at least one shot")
    film_shape = _check_frames(shots[0].frames, "shot 0")
    with_audio = shots[0].audio is not None
    cues, tracks = [], []
    first = 0
    for i, shot in enumerate(shots):
        shape = _check_frames(shot.frames, f"shot {i}")
        if shape != film_shape:
            raise ValueError(f"shot {i}: frames are {shape}, shot 0 frames are {film_shape}")
        text = _cue_text(shot.narration)
        if not text:
            raise ValueError(f"shot {i} has a blank narration; a cue needs text")
        last = first + len(shot.frames)
        end_ms = _frame_ms(last, fps)
        if shot.speech_s:
            end_ms = min(end_ms, _frame_ms(first, fps) + round(shot.speech_s * 1000))
        cues.append(_MsCue(_frame_ms(first, fps), end_ms, text))
        if (shot.audio is not None) != with_audio:
            raise ValueError(f"shot {i} {'has' if shot.audio is not None else 'lacks'} audio, shot 0 does not")
        if shot.audio is not None:
            length = audio.samples_for(len(shot.frames), fps, sample_rate)
            if len(shot.audio) > length:
                raise ValueError(f"shot {i}: {len(shot.audio)} audio samples are longer than its "
                                 f"{len(shot.frames)} frames ({length} samples at {sample_rate} Hz)")
            tracks.append(audio.fit(audio.fade(shot.audio, sample_rate), length))
        first = last
    _encode(video_path, [shot.frames for shot in shots], cues, fps, crf, preset,
            tracks if with_audio else None, sample_rate)
    # Bytes, not write_text: the same file on every platform (no newline translation).
    srt_path.write_bytes(_srt(cues).encode("utf-8"))
    log.debug("wrote %s (%d cues)", srt_path, len(cues))


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """(float32 mono samples, sample rate) of the first audio stream of `path`, as the decoder gives them (an
    AAC decoder may add up to one frame of padding at the end)."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        samples = [frame.to_ndarray().reshape(-1) for frame in container.decode(stream)]
        return np.concatenate(samples).astype(np.float32), stream.rate


def read_frames(path: Path) -> list[np.ndarray]:
    """Decode every video frame of `path` to uint8 HxWx3 RGB."""
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def retime(frames: Sequence[np.ndarray], count: int) -> list[np.ndarray]:
    """Exactly `count` frames spread evenly over the clip: output frame i is input frame floor(i*len/count).

    Downsampling drops frames, upsampling repeats them; order is kept and frame 0 always comes first.
    """
    if not frames:
        raise ValueError("retime needs at least one frame")
    if count < 1:
        raise ValueError(f"retime count must be >= 1, got {count}")
    return [frames[i * len(frames) // count] for i in range(count)]


def probe(path: Path) -> VideoInfo:
    """Describe the first video stream of `path`; frames are counted by decoding, not from the header."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        ctx = stream.codec_context
        sound = container.streams.audio[0] if container.streams.audio else None
        return VideoInfo(
            frames=frames,
            fps=float(stream.average_rate),
            width=ctx.width,
            height=ctx.height,
            duration_s=float(stream.duration * stream.time_base),
            codec=ctx.name,
            pix_fmt=ctx.pix_fmt,
            subtitle_streams=len(container.streams.subtitles),
            audio_codec=sound.codec_context.name if sound else None,
            audio_sample_rate=sound.rate if sound else None,
            audio_duration_s=float(sound.duration * sound.time_base) if sound else None,
        )


def read_subtitles(path: Path) -> list[Cue]:
    """The cues of a `.srt` file, or of the first subtitle (mov_text) track of any other file (an MP4)."""
    if path.suffix.lower() == ".srt":
        return _read_srt(path)
    with av.open(str(path)) as container:
        if not container.streams.subtitles:
            raise ValueError(f"{path} has no subtitle stream")
        stream = container.streams.subtitles[0]
        cues = []
        for packet in container.demux(stream):
            # A mov_text sample is a 16-bit big-endian byte length, the UTF-8 text, then optional style
            # boxes. The muxer fills gaps (even zero-length ones) with empty samples; the demuxer ends
            # with a size-0 flush packet. Both carry no text and are skipped.
            data = bytes(packet)
            length = int.from_bytes(data[:2], "big") if len(data) >= 2 else 0
            if length == 0:
                continue
            start = packet.pts * packet.time_base
            end = start + packet.duration * packet.time_base
            cues.append(Cue(float(start), float(end), data[2 : 2 + length].decode()))
        return cues


def _check_frames(frames: Sequence[np.ndarray], what: str) -> tuple[int, ...]:
    """Raise ValueError unless `frames` are one or more same-size uint8 RGB arrays; return their shape."""
    if not frames:
        raise ValueError(f"{what}: no frames")
    shape = frames[0].shape
    if len(shape) != 3 or shape[2] != 3:
        raise ValueError(f"{what}: frames must be HxWx3 RGB, got shape {shape}")
    for i, frame in enumerate(frames):
        if frame.shape != shape or frame.dtype != np.uint8:
            raise ValueError(f"{what}: frame {i} is {frame.dtype} {frame.shape}, frame 0 is uint8 {shape}")
    return shape


def _encode(
    path: Path,
    clips: Sequence[Sequence[np.ndarray]],
    cues: Sequence[_MsCue],
    fps: int,
    crf: int,
    preset: str,
    tracks: Sequence[np.ndarray] | None = None,
    sample_rate: int = 24000,
) -> None:
    """Encode the clips back to back into one MP4; with cues, cue k is muxed just before clip k; with tracks,
    track k (float32 mono samples) is encoded as AAC right after clip k, so the muxer interleaves shot by shot."""
    height, width = clips[0][0].shape[:2]
    # format= explicitly, so a temporary name such as film.mp4.tmp still gets an MP4.
    with av.open(
        str(path), "w", format="mp4", container_options={"movflags": "+faststart", "fflags": "+bitexact"}
    ) as container:
        options = {"crf": str(crf), "preset": preset, "threads": str(_X264_THREADS), "flags": "+bitexact"}
        if min(width, height) < _SMALL_FRAME:
            # x264's macroblock-tree rate control reads uninitialised memory on tiny frames: identical input
            # gave 5 different outputs in 8 encodes at 64 px (1 in 16 at 128 px); without it, 6 of 6 matched.
            options["x264-params"] = "mbtree=0"
        video = container.add_stream("libx264", rate=fps, options=options)
        video.width = width + width % 2
        video.height = height + height % 2
        video.pix_fmt = "yuv420p"
        ctx = video.codec_context
        ctx.thread_type = "FRAME"
        # Tag what we convert to (BT.709, limited range) so players do not guess BT.601 and shift colours.
        ctx.colorspace = 1  # AVCOL_SPC_BT709 (PyAV exposes no AVColorSpace enum)
        ctx.color_primaries = ColorPrimaries.BT709
        ctx.color_trc = ColorTrc.BT709
        ctx.color_range = ColorRange.MPEG
        subtitles = None
        if cues:
            subtitles = container.add_stream("mov_text")
            subtitles.codec_context.subtitle_header = _ASS_HEADER
            subtitles.time_base = _MS
        sound = None
        if tracks is not None:
            sound = container.add_stream("aac", rate=sample_rate, options={"flags": "+bitexact"})
            sound.layout = "mono"
            sound.format = "fltp"
            sound.bit_rate = _AAC_BIT_RATE
        index = 0
        sample = 0
        for k, clip in enumerate(clips):
            if subtitles is not None:
                container.mux(_mov_text_packet(cues[k], subtitles))
            for rgb in clip:
                frame = _yuv_frame(rgb)
                frame.pts = index
                index += 1
                container.mux(video.encode(frame))
            if sound is not None:
                for start in range(0, len(tracks[k]), _AAC_FRAME):
                    chunk = np.ascontiguousarray(tracks[k][start : start + _AAC_FRAME]).reshape(1, -1)
                    piece = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                    piece.sample_rate = sample_rate
                    piece.time_base = Fraction(1, sample_rate)
                    piece.pts = sample
                    sample += chunk.shape[1]
                    container.mux(sound.encode(piece))
        container.mux(video.encode())
        if sound is not None:
            container.mux(sound.encode())
    log.debug("wrote %s (%d frames, %dx%d, %d fps)", path, index, video.width, video.height, fps)


def _yuv_frame(rgb: np.ndarray) -> av.VideoFrame:
    """RGB array -> BT.709 limited-range yuv420p frame, padded to even size by edge replication."""
    pad = ((0, rgb.shape[0] % 2), (0, rgb.shape[1] % 2), (0, 0))
    if any(after for _, after in pad):
        rgb = np.pad(rgb, pad, mode="edge")
    # BITEXACT|ACCURATE_RND: swscale's output then does not depend on which SIMD path the CPU takes.
    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
        format="yuv420p",
        dst_colorspace=Colorspace.ITU709,
        dst_color_range=ColorRange.MPEG,
        interpolation=Interpolation.BITEXACT | Interpolation.ACCURATE_RND,
    )


def _mov_text_packet(cue: _MsCue, stream: av.stream.Stream) -> av.Packet:
    """One mov_text sample: 16-bit big-endian byte length + UTF-8 text.

    Built by hand rather than with the mov_text encoder: the encoder parses its input as ASS, which would
    eat `{...}` and turn `\\N` into a line break, so arbitrary narration would not survive.
    """
    data = cue.text.encode()
    packet = av.Packet(len(data).to_bytes(2, "big") + data)
    packet.stream = stream
    packet.time_base = _MS
    packet.pts = cue.start_ms
    packet.dts = cue.start_ms
    packet.duration = cue.end_ms - cue.start_ms
    return packet


def _cue_text(narration: str) -> str:
    # Line breaks (any kind str.splitlines knows) become spaces: a cue is one line, which also keeps SRT
    # blocks unambiguous. Outer whitespace is dropped, as subtitle tools do.
    return " ".join(narration.splitlines()).strip()


def _frame_ms(index: int, fps: int) -> int:
    return round(index * 1000 / fps)


def _srt(cues: Sequence[_MsCue]) -> str:
    return "".join(
        f"{n}\n{_srt_time(cue.start_ms)} --> {_srt_time(cue.end_ms)}\n{cue.text}\n\n"
        for n, cue in enumerate(cues, start=1)
    )


def _srt_time(ms: int) -> str:
    seconds, ms = divmod(ms, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d},{ms:03d}"


def _read_srt(path: Path) -> list[Cue]:
    # utf-8-sig and \r\n handling so SRT files from other tools read too.
    text = path.read_text(encoding="utf-8-sig").replace("\r\n", "\n").replace("\r", "\n")
    return list(_srt_cues(text))


def _srt_cues(text: str) -> Iterator[Cue]:
    for block in re.split(r"\n[ \t]*\n", text.strip()):
        lines = block.split("\n")
        times = _SRT_TIMES.search(lines[1]) if len(lines) > 1 else None
        if times is None:
            raise ValueError(f"not an SRT cue: {block!r}")
        h1, m1, s1, ms1, h2, m2, s2, ms2 = (int(g) for g in times.groups())
        # Whole milliseconds first, then one division: the same floats as the MP4 reader gives.
        start_ms = ((h1 * 60 + m1) * 60 + s1) * 1000 + ms1
        end_ms = ((h2 * 60 + m2) * 60 + s2) * 1000 + ms2
        yield Cue(start_ms / 1000, end_ms / 1000, " ".join(lines[2:]))
