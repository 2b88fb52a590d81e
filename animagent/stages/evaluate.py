"""Stage 7, evaluate: the seeds' metrics on a finished run → `scorecard.json` and a self-contained `report.html`.

Per shot: CLIP-T of the keyframe against the shot description, VBench subject consistency (DINOv2 frame
features) and background consistency (CLIP frame features) of the clip, its motion and its largest change
z-score. Per character: cross-scene identity, the mean pairwise cosine of its crops (its layout box on each
keyframe, SAM-masked when `eval.masked_crops`) and their mean cosine to its cast sheet. Film: the means,
Anim-Director's image-image similarity of consecutive keyframes, and DreamFactory's CSSC (the director classifies
each keyframe's style). The formulas are scoring.py's, shared with the pipeline.
The measurements are tasks (Models.map): the keyframes' CLIP features, each shot's clip measures and identity
crops, each placed character's identity. With cluster.kind ray they run on the GPU workers and come back in film
order, so the scorecard and the report are the same bytes; the style classes stay with the driver's director.
This module owns the measurement and the eval step; the report's layout is report.py's. Encoders come from the
context only when the step runs, so a finished step loads no model.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from animagent import scoring
from animagent.artifacts import Box, Cast, Clip, Keyframe, Script
from animagent.config import Config
from animagent.crops import box_pixels, character_mask, masked_crop
from animagent.models import Role, director_identity, role_models
from animagent.report import Measured, render_report
from animagent.scorecard import CharacterScore, Encoder, FilmScore, Flag, Scorecard, ShotScore
from animagent.stages import Context
from animagent.tasks import KeyframeStyle
from animagent.weights import spec

if TYPE_CHECKING:
    from PIL import Image

    from animagent.models import Models

log = logging.getLogger(__name__)

SCORECARD, REPORT = "scorecard.json", "report.html"


class EvalSettings(BaseModel):
    """What `eval` measures with, resolved from the config (`eval`, `embedder`, `segmenter`); every field enters
    the eval step key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    clip: str = Field("clip_vit_l", description="registry name of the CLIP model: CLIP-T, background, image-image")
    dino: str = Field("dinov2_base", description="registry name of the DINOv2 model: subject consistency")
    identity_encoder: Literal["clip", "dino"] = Field(
        "clip", description="encoder of the character crops (DreamFactory's CSFD used CLIP)"
    )
    segmenter: str | None = Field(
        "sam_vit_h", description="registry name of SAM for masking identity crops; null: plain box crops"
    )

    @classmethod
    def from_config(cls, config: Config) -> EvalSettings:
        masked = config.eval.masked_crops
        return cls(
            clip=config.embedder.clip, dino=config.embedder.dino, identity_encoder=config.eval.identity_encoder,
            segmenter=(role_models(config, "segmenter") or ["segment_anything"])[0] if masked else None,
        )


def evaluate(ctx: Context, script: Script, cast: Cast, keyframes: list[Keyframe], clips: list[Clip]) -> Scorecard:
    """Score the run (or read the scorecard of an identical earlier evaluation) and write the report."""
    run, config = ctx.run, ctx.config
    if [k.shot for k in keyframes] != [c.shot for c in clips]:
        raise ValueError("keyframes and clips must list the same shots in the same order")
    settings = EvalSettings.from_config(config)
    encoders = _encoders(config, settings)
    step = ctx.step(
        "eval", script=script, settings=settings.model_dump(), encoders=encoders,
        sheets=[run.sha(s.image) for s in cast.characters],
        keyframes=[run.sha(k.image) for k in keyframes], clips=[run.sha(c.video) for c in clips],
        director=config.director_key(),
    )
    ctx.progress("eval", 0, 1)
    if step.todo:
        measured = _measure(ctx, script, cast, keyframes, clips, settings, encoders)
        run.write_model(SCORECARD, measured.card)
        run.write_text(REPORT, render_report(script, measured))
        step.record([SCORECARD, REPORT])
        log.info("evaluated %d shots", len(keyframes))
    ctx.progress("eval", 1, 1)
    return run.read_model(SCORECARD, Scorecard)


def _measure(
    ctx: Context,
    script: Script,
    cast: Cast,
    keyframes: list[Keyframe],
    clips: list[Clip],
    settings: EvalSettings,
    encoders: tuple[Encoder, ...],
) -> Measured:
    run = ctx.run
    images = [run.read_image(k.image) for k in keyframes]
    # CLIP: keyframes against shot descriptions, consecutive keyframes
    [(features, texts)] = ctx.models.map(keyframe_features,
                                         [(images, [script.shot(k.shot).description for k in keyframes])])
    clip_ts = scoring.clip_t(features, texts)
    similarity = scoring.consecutive_similarity(features)  # empty for a one-shot film
    # CSSC: the director classifies each keyframe's style (in the driver, as every director call)
    styles = [ctx.models.get("director").ask("keyframe_style", {}, KeyframeStyle, images=[image],
                                             seed=ctx.config.seed).style_class for image in images]
    # per shot: its clip's background (CLIP), subject (DINOv2), motion, spikes and middle frame; each character's
    # identity crop on its keyframe
    masked = settings.segmenter is not None
    measured = ctx.models.map(measure_shot, [
        (run.path(c.video).read_bytes(), image, [p.box for p in script.shot(k.shot).characters], masked)
        for k, c, image in zip(keyframes, clips, images)])
    shots, posters = [], []
    crops: dict[str, list[tuple[str, Image.Image]]] = {}
    for i, (keyframe, clip_artifact, (m, poster, shot_crops)) in enumerate(zip(keyframes, clips, measured)):
        flags: list[Flag] = [name for name, on in (("still", m.still), ("spike", m.spike)) if on]
        shots.append(ShotScore(
            shot=keyframe.shot, keyframe=keyframe.image, clip=clip_artifact.video, clip_t=float(clip_ts[i]),
            subject_consistency=m.subject_consistency, background_consistency=m.background_consistency,
            motion=m.motion, max_change_z=m.max_change_z, style_class=styles[i], flags=tuple(flags),
        ))
        posters.append(poster)
        for placement, crop in zip(script.shot(keyframe.shot).characters, shot_crops):
            crops.setdefault(placement.character, []).append((keyframe.shot, crop))
    # identity: each placed character's crops across shots, and against its cast sheet
    identity: Role = "embedder" if settings.identity_encoder == "clip" else "dino"
    sheets = {s.character: run.read_image(s.image) for s in cast.characters}
    placed = [c.id for c in script.characters if c.id in crops]
    scores = dict(zip(placed, ctx.models.map(character_identity, [
        (identity, [crop for _, crop in crops[c]], sheets[c]) for c in placed])))
    characters = [
        CharacterScore(character=c.id, name=c.name, shots=tuple(shot for shot, _ in crops.get(c.id, [])),
                       identity=scores[c.id][0] if c.id in scores else None,
                       reference=scores[c.id][1] if c.id in scores else None)
        for c in script.characters
    ]

    scored_identity = [c.identity for c in characters if c.identity is not None]
    film = FilmScore(
        clip_t=float(np.mean(clip_ts)),
        subject_consistency=float(np.mean([s.subject_consistency for s in shots])),
        background_consistency=float(np.mean([s.background_consistency for s in shots])),
        motion=float(np.mean([s.motion for s in shots])),
        identity=float(np.mean(scored_identity)) if scored_identity else None,
        cssc=scoring.majority_share(styles),
        keyframe_similarity=tuple(float(v) for v in similarity),
        keyframe_similarity_mean=float(np.mean(similarity)) if len(similarity) else None,
    )
    card = Scorecard(
        title=script.title, identity_encoder=settings.identity_encoder, masked_crops=masked,
        shots=tuple(shots), characters=tuple(characters), film=film, encoders=encoders,
    )
    return Measured(card=card, keyframes=images, posters=posters, crops=crops, sheets=sheets)


# --- the measurement tasks (Models.map: here in order, or on the cluster's GPU workers with cluster.kind ray) ---


def keyframe_features(models: Models, images: list[Image.Image], descriptions: list[str]
                      ) -> tuple[np.ndarray, np.ndarray]:
    """A task: CLIP features of every keyframe and of its shot's description, each in one batch."""
    clip = models.get("embedder")
    return clip.images(images), clip.texts(descriptions)


def measure_shot(models: Models, mp4: bytes, keyframe: Image.Image, boxes: list[Box], masked: bool
                 ) -> tuple[scoring.ClipMeasures, Image.Image, list[Image.Image]]:
    """A task: one shot's clip measures (subject: DINOv2, background: CLIP, motion, spikes), the clip's middle frame
    and each box's identity crop on the keyframe (crops.character_mask with SAM when `masked`, the same crop the
    review's identity gate scores; else the plain box padded to a square). The clip travels as its mp4 bytes
    (a worker shares no disk with the driver) and is decoded here, one clip's frames in memory at a time."""
    from PIL import Image

    from animagent import video

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clip.mp4"
        path.write_bytes(mp4)
        frames = video.read_frames(path)
    frame_images = [Image.fromarray(f) for f in frames]
    measures = scoring.clip_measures(frames, models.get("dino").images(frame_images),
                                     models.get("embedder").images(frame_images))
    segmenter = models.get("segmenter") if masked else None
    crops = []
    for box in boxes:
        if segmenter is not None:
            mask, _, pixels = character_mask(keyframe, box, segmenter)
        else:
            pixels = box_pixels(box, keyframe.width, keyframe.height)
            mask = np.ones((keyframe.height, keyframe.width), dtype=bool)
        crops.append(masked_crop(keyframe, mask, pixels))
    return measures, frame_images[len(frame_images) // 2], crops


def character_identity(models: Models, encoder: Role, crops: list[Image.Image], sheet: Image.Image
                       ) -> tuple[float | None, float]:
    """A task: a character's cross-scene identity (mean pairwise cosine of its crops; None for one crop) and the
    mean cosine of its crops to its cast sheet."""
    identity = models.get(encoder)
    features = identity.images(crops)
    reference = float(np.mean(scoring.cosine_matrix(features, identity.images([sheet]))))
    return (scoring.mean_pairwise_cosine(features) if len(crops) > 1 else None), reference


def _encoders(config: Config, settings: EvalSettings) -> tuple[Encoder, ...]:
    flavor = config.weights.flavor
    entries = [("clip", settings.clip), ("dino", settings.dino)]
    if settings.segmenter is not None and settings.segmenter != "segment_anything":
        entries.append(("segmenter", settings.segmenter))
    encoders = [Encoder(role=role, name=name, repo_id=spec(name).repo_id, revision=spec(name).revision, flavor=flavor)
                for role, name in entries]
    if settings.segmenter == "segment_anything":  # an official .pth checkpoint, identified by its file name
        encoders.append(Encoder(role="segmenter", name="segment_anything", repo_id="facebookresearch/segment-anything",
                                revision=Path(str(config.segmenter.checkpoint)).name, flavor=flavor))
    repo_id, revision = director_identity(config)
    encoders.append(Encoder(role="style", name=f"director:{config.director.kind}", repo_id=repo_id, revision=revision,
                            flavor=flavor))
    return tuple(encoders)


