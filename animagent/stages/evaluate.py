"""Stage 7, evaluate: the seeds' metrics on a finished run → `scorecard.json` and a self-contained `report.html`.

Per shot: CLIP-T of the keyframe against the shot description, VBench subject consistency (DINOv2 frame
features) and background consistency (CLIP frame features) of the clip, its motion and its largest change
z-score. Per character: cross-scene identity, the mean pairwise cosine of its crops (its layout box on each
keyframe, SAM-masked when `eval.masked_crops`) and their mean cosine to its cast sheet. Film: the means,
Anim-Director's image-image similarity of consecutive keyframes, and DreamFactory's CSSC (the director classifies
each keyframe's style). The formulas are scoring.py's, shared with the pipeline.
This module owns the measurement and the eval step; the report's layout is report.py's. Encoders come from the
context only when the step runs, so a finished step loads no model.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from animagent import scoring
from animagent.artifacts import Cast, Clip, Keyframe, Script
from animagent.config import Config
from animagent.crops import box_pixels, character_mask, masked_crop
from animagent.models import director_identity, role_models
from animagent.report import Measured, render_report
from animagent.scorecard import CharacterScore, Encoder, FilmScore, Flag, Scorecard, ShotScore
from animagent.stages import Context
from animagent.tasks import KeyframeStyle
from animagent.weights import spec

if TYPE_CHECKING:
    from PIL import Image

    from animagent.backends import Segmenter

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
    from PIL import Image

    from animagent import video

    run, clip, dino = ctx.run, ctx.models.get("embedder"), ctx.models.get("dino")
    images = [run.read_image(k.image) for k in keyframes]
    # CLIP: keyframes against shot descriptions, consecutive keyframes
    keyframe_features = clip.images(images)
    clip_ts = scoring.clip_t(keyframe_features, clip.texts([script.shot(k.shot).description for k in keyframes]))
    similarity = scoring.consecutive_similarity(keyframe_features)  # empty for a one-shot film
    # CSSC: the director classifies each keyframe's style
    styles = [ctx.models.get("director").ask("keyframe_style", {}, KeyframeStyle, images=[image],
                                             seed=ctx.config.seed).style_class for image in images]
    # per clip, one clip's frames in memory at a time: background (CLIP), subject (DINOv2), motion, spikes
    shots, posters = [], []
    for i, (keyframe, clip_artifact) in enumerate(zip(keyframes, clips)):
        frames = video.read_frames(run.path(clip_artifact.video))
        frame_images = [Image.fromarray(f) for f in frames]
        m = scoring.clip_measures(frames, dino.images(frame_images), clip.images(frame_images))
        flags: list[Flag] = [name for name, on in (("still", m.still), ("spike", m.spike)) if on]
        shots.append(ShotScore(
            shot=keyframe.shot, keyframe=keyframe.image, clip=clip_artifact.video, clip_t=float(clip_ts[i]),
            subject_consistency=m.subject_consistency, background_consistency=m.background_consistency,
            motion=m.motion, max_change_z=m.max_change_z, style_class=styles[i], flags=tuple(flags),
        ))
        posters.append(frame_images[len(frame_images) // 2])
    # identity: each character's crops across shots, and against its cast sheet
    identity = clip if settings.identity_encoder == "clip" else dino
    segmenter = ctx.models.get("segmenter") if settings.segmenter is not None else None
    crops = _character_crops(script, keyframes, images, segmenter)
    sheets = {s.character: run.read_image(s.image) for s in cast.characters}
    characters = []
    for character in script.characters:
        placed = crops.get(character.id, [])
        pairwise = reference = None
        if placed:
            features = identity.images([crop for _, crop in placed])
            reference = float(np.mean(scoring.cosine_matrix(features, identity.images([sheets[character.id]]))))
            pairwise = scoring.mean_pairwise_cosine(features) if len(placed) > 1 else None
        characters.append(CharacterScore(character=character.id, name=character.name,
                                         shots=tuple(shot for shot, _ in placed), identity=pairwise,
                                         reference=reference))

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
        title=script.title, identity_encoder=settings.identity_encoder, masked_crops=segmenter is not None,
        shots=tuple(shots), characters=tuple(characters), film=film, encoders=encoders,
    )
    return Measured(card=card, keyframes=images, posters=posters, crops=crops, sheets=sheets)


def _character_crops(
    script: Script, keyframes: list[Keyframe], images: list[Image.Image], segmenter: Segmenter | None
) -> dict[str, list[tuple[str, Image.Image]]]:
    """Per character, in film order: (shot, its identity crop) — the same crop the review's identity gate
    scores (crops.character_mask / masked_crop), or the plain box padded to a square without a segmenter."""
    crops: dict[str, list[tuple[str, Image.Image]]] = {}
    for keyframe, image in zip(keyframes, images):
        for placement in script.shot(keyframe.shot).characters:
            if segmenter is not None:
                mask, _, pixels = character_mask(image, placement.box, segmenter)
            else:
                pixels = box_pixels(placement.box, image.width, image.height)
                mask = np.ones((image.height, image.width), dtype=bool)
            crops.setdefault(placement.character, []).append((keyframe.shot, masked_crop(image, mask, pixels)))
    return crops


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


