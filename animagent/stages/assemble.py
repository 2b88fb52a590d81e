"""Stage 6, assemble: clips + speech → film.mp4 (H.264, AAC narration, soft subtitles of each shot's narration),
film.srt, storyboard.png.

Each clip is retimed to its shot's length at the film's fps: with a `Narration` (assemble.voice), the length the
speak stage fitted to the shot's speech, whose speech/<shot>.wav is laid under exactly those frames and whose cue
ends with its speech; without one, round(duration_s × fps) frames, no audio track, and cues that last their shots.
The storyboard is a grid of keyframes, each labelled with its shot id and narration. This module owns splicing and
the storyboard layout; encoding lives in video.py, speech in the speak stage.
"""

from __future__ import annotations

from animagent import audio, fonts
from animagent.artifacts import Clip, Film, Keyframe, Narration, Script
from animagent.stages import Context

FILM, SUBTITLES, STORYBOARD = "film.mp4", "film.srt", "storyboard.png"


def assemble(
    ctx: Context, script: Script, keyframes: list[Keyframe], clips: list[Clip], narration: Narration | None = None
) -> Film:
    from animagent import video

    run, config = ctx.run, ctx.config
    fps = config.assemble.fps
    speech = [narration.shot(c.shot) for c in clips] if narration is not None else None
    counts = [s.frames for s in speech] if speech else [round(script.shot(c.shot).duration_s * fps) for c in clips]
    step = ctx.step(
        "assemble", assemble=config.assemble, clips=[run.sha(c.video) for c in clips],
        keyframes=[run.sha(k.image) for k in keyframes], narrations=[script.shot(c.shot).narration for c in clips],
        counts=counts, speech=[(run.sha(s.audio), s.speech_s) for s in speech] if speech else None,
    )
    ctx.progress("assemble", 0, 1)
    if step.todo:
        shots = [
            video.FilmShot(frames=video.retime(video.read_frames(run.path(clip.video)), count),
                           narration=script.shot(clip.shot).narration,
                           audio=audio.read_wav(run.path(speech[i].audio))[0] if speech else None,
                           speech_s=speech[i].speech_s if speech else None)
            for i, (clip, count) in enumerate(zip(clips, counts))
        ]
        with run.writing(FILM) as film_tmp, run.writing(SUBTITLES) as srt_tmp:
            video.write_film(shots, film_tmp, srt_tmp, fps=fps, crf=config.assemble.crf, preset=config.assemble.preset,
                             sample_rate=narration.sample_rate if narration is not None else 24000)
        images = [run.read_image(k.image) for k in keyframes]
        board = storyboard(script, images, keyframes, config.assemble.storyboard_tile)
        run.write_image(STORYBOARD, board)
        step.record([FILM, SUBTITLES, STORYBOARD])
    ctx.progress("assemble", 1, 1)
    return Film(run_dir=str(run.root), video=FILM, subtitles=SUBTITLES, storyboard=STORYBOARD,
                shots=len(clips), frames=sum(counts), fps=fps)


def storyboard(script: Script, images: list, keyframes: list[Keyframe], tile: int):
    """A grid (up to 4 columns) of keyframes, each over a caption with its shot id and narration, in fonts that
    cover Latin with accents, Cyrillic, Arabic and CJK (animagent/fonts)."""
    from PIL import Image, ImageDraw

    size = max(10, tile // 24)
    line_height = round(size * 1.3)
    captions = [[k.shot, *fonts.wrap(script.shot(k.shot).narration, tile - 12, size)[:4]] for k in keyframes]
    tile_h = round(tile * images[0].height / images[0].width)
    caption_h = line_height * max(len(c) for c in captions) + 8
    columns = min(4, len(images))
    rows = -(-len(images) // columns)
    board = Image.new("RGB", (columns * tile, rows * (tile_h + caption_h)), "white")
    pen = ImageDraw.Draw(board)
    for i, (image, caption) in enumerate(zip(images, captions)):
        x, y = (i % columns) * tile, (i // columns) * (tile_h + caption_h)
        board.paste(image.resize((tile, tile_h)), (x, y))
        for j, line in enumerate(caption):
            fonts.draw_text(pen, (x + 6, y + tile_h + 4 + j * line_height), line, size, "black")
    return board
