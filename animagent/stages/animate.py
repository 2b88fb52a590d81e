"""Stage 5, animate: one clip per shot from its keyframe — the director chooses the motion, the animator renders
`animator.candidates` clips, they are scored, and the director picks among the best `animator.top_k`.

Shot by shot as the keyframes are accepted, then two passes over the shots:
  1. `choose_motion` (director, step `motion/<shot>`), right after the shot's keyframe is accepted (the director is
     loaded for the review then): with the keyframe in view, the director picks the shot's motion class (task
     `motion`; the script's planned motion is its hint). The animator's own table (motion.py) maps the class to its
     settings, recorded in motion.json (SVD: motion_bucket_id, noise_aug_strength, fps). `submit` then hands the
     shot's candidate renders to the animator: one `render_clip` task per seed (Models.submit), seeds from (run
     seed, shot, candidate, take), as long as the shot (its length fitted to its speech when there is a
     `Narration`, else the script's). With cluster.kind ray they start at once on the GPU workers, so shot t
     renders while shot t + 1 is drawn; with kind local they run when taken in `render`, after the draw pass, so
     the animator still loads alone.
  2. `render` (animator, step `animate/<shot>`): the candidates are taken in film order; each clip is encoded on one
     worker thread while the next is taken, and the step is recorded once all are written.
  3. `choose_clips` (CLIP, DINOv2, director, step `choose/<shot>`): each candidate is scored with scoring.py's
     formulas — VBench subject consistency on DINOv2 frame features and background consistency on CLIP frame
     features, motion magnitude, and the largest frame-change z-score (a spike above scoring.SPIKE_Z is a
     distortion: a flash, melt or jump). Candidates rank by (no spike, moves unless "still" was chosen, mean of
     the two consistencies), best first; the director sees `animator.frames_shown` frames of each of the top-k
     (task `clip_pick`) and picks one; a candidate a person picked on the review page (picks.json, in the step
     key) is used instead. The choice and every score go to `clips/<shot>/review.json` (ClipReview).
     Each candidate's scores are a task too (`score_candidate`).
Clips are stored at the animator's own frame count and fps; assembly retimes them to each shot's duration.
This module owns these steps and the ranking rule; the animators render, the encoders embed (from the context).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from animagent import scoring
from animagent.artifacts import (
    Clip,
    ClipCandidate,
    ClipCandidates,
    ClipReview,
    Keyframe,
    Motion,
    MotionChoice,
    Narration,
    Script,
    Shot,
)
from animagent.config import Config
from animagent.runfolder import RunFolder
from animagent.stages import Context, Step, ask_pick
from animagent.tasks import MotionDecision

if TYPE_CHECKING:
    from PIL import Image

    from animagent.backends import Embedder, ImageEncoder
    from animagent.models import Models, Pending

RULE = "no spike, then moves (unless the motion is still), then mean of subject and background consistency"


def choose_motion(ctx: Context, script: Script, keyframe: Keyframe) -> MotionChoice:
    """The motion of the shot whose keyframe was just accepted (director, step `motion/<shot>`)."""
    run, config = ctx.run, ctx.config
    shot = script.shot(keyframe.shot)
    json_rel = f"clips/{shot.id}/motion.json"
    seed = ctx.seed("motion", shot.id)
    step = ctx.step(f"motion/{shot.id}", keyframe=run.sha(keyframe.image), description=shot.description,
                    planned=shot.motion, kind=config.animator.kind, director=config.director_key(),
                    models=ctx.models.ids("director"), seed=seed)
    if step.todo:
        reply = ctx.models.get("director").ask(
            "motion", {"description": shot.description, "planned": shot.motion}, MotionDecision,
            images=[run.read_image(keyframe.image)], seed=seed,
        )
        run.write_model(json_rel, MotionChoice(
            shot=shot.id, planned=shot.motion, motion=reply.motion, reason=reply.reason.strip(),
            parameters=ctx.models.motion(reply.motion),
        ))
        step.record([json_rel])
    return run.read_model(json_rel, MotionChoice)


@dataclass
class Submitted:
    """One shot's candidate clips, handed to the animator (`submit`) and not yet written (`render`)."""

    shot: Shot
    motion: MotionChoice
    seeds: list[int]
    step: Step
    renders: list[Pending[tuple[list[Image.Image], list[str]]]]  # one per seed; none when the step is done


def submit(ctx: Context, script: Script, keyframe: Keyframe, motion: MotionChoice,
           narration: Narration | None = None) -> Submitted:
    """Hand the shot's candidate renders to the animator (a `render_clip` task each, Models.submit): with
    cluster.kind ray they start on the GPU workers now, while the next shot is drawn; with kind local each runs
    when `render` takes it. Nothing is submitted when the shot's step is already done."""
    run, config = ctx.run, ctx.config
    shot = script.shot(keyframe.shot)
    take = ctx.takes.animate.get(shot.id, 0)
    seeds = [ctx.seed("animate", shot.id, str(i), take=take) for i in range(config.animator.candidates)]
    duration_s = narration.shot(shot.id).duration_s if narration is not None else shot.duration_s
    step = ctx.step(
        f"animate/{shot.id}", keyframe=run.sha(keyframe.image), prompt=keyframe.prompt, duration_s=duration_s,
        motion=motion.parameters, seeds=seeds, animator=ctx.models.settings("animator"),
        crf=config.assemble.crf, preset=config.assemble.preset, models=ctx.models.ids("animator"),
    )
    if not step.todo:
        return Submitted(shot, motion, seeds, step, [])
    image = run.read_image(keyframe.image)
    calls = [(image, keyframe.prompt, motion.motion, duration_s, seed) for seed in seeds]
    return Submitted(shot, motion, seeds, step, ctx.models.submit(render_clip, calls))


def render(ctx: Context, submitted: list[Submitted]) -> list[ClipCandidates]:
    """Each shot's candidate clips, taken in film order as they finish and written to clips/<shot>/candidates/
    (step `animate/<shot>`)."""
    run, config = ctx.run, ctx.config
    rendered = []
    for n, shot_renders in enumerate(submitted):
        ctx.progress("animate", n, len(submitted))
        shot, motion, step = shot_renders.shot, shot_renders.motion, shot_renders.step
        folder, json_rel = f"clips/{shot.id}/candidates", f"clips/{shot.id}/candidates.json"
        if step.todo:
            step.started = time.perf_counter()  # the shot's own share of the stage's time, renders included
            fps = motion.parameters["fps"]
            clips, ladder = [], []
            # Candidate i is encoded on the CPU while candidate i + 1 renders: PyAV releases the GIL while
            # x264 and swscale work. Waiting for the previous encode before taking the next keeps at most two
            # candidates' frames in memory.
            with ThreadPoolExecutor(max_workers=1) as encoder:
                encoding = None
                for i, (seed, pending) in enumerate(zip(shot_renders.seeds, shot_renders.renders)):
                    frames, rungs = pending.result()
                    ladder += [f"candidate {i}: {rung}" for rung in rungs]
                    rel = f"{folder}/{i}.mp4"
                    if encoding is not None:
                        encoding.result()
                    encoding = encoder.submit(write_clip, run, rel, frames, fps, config)
                    clips.append(Clip(shot=shot.id, video=rel, frames=len(frames), fps=fps, seed=seed))
                encoding.result()  # every clip is in place before the step can be recorded
            run.write_model(json_rel, ClipCandidates(shot=shot.id, motion=motion.motion, clips=tuple(clips)))
            step.record([*(c.video for c in clips), json_rel], notes=ladder)
        rendered.append(run.read_model(json_rel, ClipCandidates))
    ctx.progress("animate", len(submitted), len(submitted))
    return rendered


def render_clip(models: Models, image: Image.Image, prompt: str, motion: Motion, duration_s: float,
                seed: int) -> tuple[list[Image.Image], list[str]]:
    """A task (Models.submit): one candidate's frames, and the out-of-memory rungs its render took."""
    animator = models.get("animator")
    return animator.animate(image, prompt, motion, duration_s, seed), animator.take_ladder()


def write_clip(run: RunFolder, rel: str, frames: list[Image.Image], fps: int, config: Config) -> None:
    """Encode one candidate's frames to `rel` (atomically, like every run-folder write)."""
    from animagent import video

    with run.writing(rel) as tmp:
        video.write_video([np.asarray(f.convert("RGB")) for f in frames], tmp, fps=fps, crf=config.assemble.crf,
                          preset=config.assemble.preset)


def choose_clips(ctx: Context, script: Script, rendered: list[ClipCandidates]) -> list[Clip]:
    run, config = ctx.run, ctx.config
    chosen = []
    for n, candidates in enumerate(rendered):
        ctx.progress("choose", n, len(rendered))
        shot = script.shot(candidates.shot)
        video_rel, json_rel = f"clips/{shot.id}.mp4", f"clips/{shot.id}.json"
        review_rel = f"clips/{shot.id}/review.json"
        seed = ctx.seed("clip_pick", shot.id, take=ctx.takes.animate.get(shot.id, 0))
        picked = ctx.pick("clip", shot.id, len(candidates.clips))
        step = ctx.step(
            f"choose/{shot.id}", candidates=run.sha(f"clips/{shot.id}/candidates.json"),
            videos=[run.sha(c.video) for c in candidates.clips], description=shot.description,
            top_k=config.animator.top_k, frames_shown=config.animator.frames_shown, director=config.director_key(),
            models=ctx.models.ids("embedder", "dino", "director"), seed=seed, **picked,
        )
        if step.todo:
            from PIL import Image

            from animagent import video

            frames = [video.read_frames(run.path(c.video)) for c in candidates.clips]
            scored = list(ctx.models.map(score_candidate, [(i, c, f, candidates.motion)
                                                           for i, (c, f) in enumerate(zip(candidates.clips, frames))]))
            ranking = rank(scored)
            shown = ranking[: config.animator.top_k]
            pick = ask_pick(
                ctx, "clip_pick", len(shown),
                {"frames": str(config.animator.frames_shown), "description": shot.description,
                 "motion": candidates.motion},
                [Image.fromarray(frames[i][t]) for i in shown
                 for t in frame_indices(len(frames[i]), config.animator.frames_shown)],
                seed,
            )
            index = picked.get("picked", shown[pick.chosen])  # a person's pick on the review page wins
            winner = candidates.clips[index]
            run.write_model(review_rel, ClipReview(
                shot=shot.id, motion=candidates.motion, candidates=tuple(scored), ranking=tuple(ranking),
                shown=tuple(shown), pick=pick, chosen=index, rule=RULE,
            ))
            run.write_bytes(video_rel, run.path(winner.video).read_bytes())
            run.write_model(json_rel, winner.model_copy(update={"video": video_rel, "review": review_rel}))
            step.record([review_rel, video_rel, json_rel])
        chosen.append(run.read_model(json_rel, Clip))
    ctx.progress("choose", len(rendered), len(rendered))
    return chosen


def score_clip(
    index: int,
    clip: Clip,
    frames: list[np.ndarray],
    motion: Motion,
    embedder: Embedder,
    dino: ImageEncoder,
) -> ClipCandidate:
    """A candidate's scores: VBench subject (DINOv2) and background (CLIP) consistency, motion, spikes."""
    from PIL import Image

    images: list[Image.Image] = [Image.fromarray(f) for f in frames]
    m = scoring.clip_measures(frames, dino.images(images), embedder.images(images))
    return ClipCandidate(
        index=index, video=clip.video, seed=clip.seed, subject_consistency=m.subject_consistency,
        background_consistency=m.background_consistency, motion=m.motion, max_change_z=m.max_change_z,
        spike=m.spike, moves=motion == "still" or not m.still,
    )


def score_candidate(models: Models, index: int, clip: Clip, frames: list[np.ndarray], motion: Motion) -> ClipCandidate:
    """A task (Models.map): score_clip with the models' CLIP and DINOv2."""
    return score_clip(index, clip, frames, motion, models.get("embedder"), models.get("dino"))


def rank(candidates: list[ClipCandidate]) -> list[int]:
    """Candidate indices, best first, by RULE (a stable sort: equal candidates keep their order)."""
    return sorted(
        range(len(candidates)),
        key=lambda i: (not candidates[i].spike, candidates[i].moves,
                       (candidates[i].subject_consistency + candidates[i].background_consistency) / 2),
        reverse=True,
    )


def frame_indices(count: int, shown: int) -> list[int]:
    """`shown` frame indices spread evenly from the first to the last frame (the middle one when one is shown)."""
    if shown == 1:
        return [count // 2]
    return [round(j * (count - 1) / (shown - 1)) for j in range(shown)]
