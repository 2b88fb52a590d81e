"""Stage 5, animate: one clip per shot, image-to-video from its keyframe, motion from the shot's motion class.

The shot's closed-set motion maps to animator parameters through the animator's one table (MOTION_TABLE).
Clips are stored at the animator's own frame count and conditioning fps; assembly retimes them to each
shot's duration. This module owns the clip steps; the animator renders.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Callable

from animagent.artifacts import Clip, Keyframe, Script, Takes
from animagent.config import Config
from animagent.runfolder import RunFolder, derive_seed, step_key
from animagent.stages import Progress

if TYPE_CHECKING:
    from animagent.backends.animator_svd import SVDAnimator


def animate(
    script: Script,
    keyframes: list[Keyframe],
    run: RunFolder,
    animator: Callable[[], SVDAnimator],
    config: Config,
    models: list,
    takes: Takes,
    progress: Progress,
) -> list[Clip]:
    from animagent.backends.animator_svd import MOTION_TABLE

    clips = []
    for n, keyframe in enumerate(keyframes):
        progress("animate", n, len(keyframes))
        shot = script.shot(keyframe.shot)
        video_rel, json_rel = f"clips/{shot.id}.mp4", f"clips/{shot.id}.json"
        motion = MOTION_TABLE[shot.motion]
        seed = derive_seed(config.seed, "animate", shot.id, take=takes.animate.get(shot.id, 0))
        step = f"animate/{shot.id}"
        key = step_key(
            step=step, keyframe=run.sha(keyframe.image), motion=dataclasses.asdict(motion), seed=seed,
            animator=config.animator, crf=config.assemble.crf, preset=config.assemble.preset, models=models,
        )
        if not run.done(step, key):
            import numpy as np

            from animagent import video

            started = time.perf_counter()
            frames = animator().animate(run.read_image(keyframe.image), motion, seed)
            with run.writing(video_rel) as tmp:
                video.write_video([np.asarray(f.convert("RGB")) for f in frames], tmp, fps=motion.fps,
                                  crf=config.assemble.crf, preset=config.assemble.preset)
            run.write_model(json_rel, Clip(shot=shot.id, video=video_rel, frames=len(frames), fps=motion.fps, seed=seed))
            run.record(step, key, [video_rel, json_rel], time.perf_counter() - started)
        clips.append(run.read_model(json_rel, Clip))
    progress("animate", len(keyframes), len(keyframes))
    return clips
