"""The Scorecard artifact: what `eval` measured, per shot, per character and for the whole film.

Frozen pydantic models saved as `scorecard.json` in the run folder, with the ids (registry name, Hub repo,
revision, flavor) of every encoder that produced a number, since scores are only comparable between runs
scored by the same encoders. The formulas are in scoring.py; stages/evaluate.py fills this in.
This module owns the shape only; it does not compute or read files.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from animagent.artifacts import Artifact, RelPath, Slug, StyleClass

# still: the clip barely moves (motion below scoring.STILL_MOTION); spike: one frame-to-frame change stands out
# (z-score above scoring.SPIKE_Z), a flash, melt or jump.
Flag = Literal["still", "spike"]
Unit = Annotated[float, Field(ge=0.0, le=1.0)]


class Encoder(Artifact):
    role: Literal["clip", "dino", "segmenter", "style"] = Field(
        description="clip: CLIP-T, background consistency, image-image; dino: subject consistency; "
        "segmenter: masks for identity crops; style: the director that classified keyframe styles (CSSC)"
    )
    name: str = Field(description="registry name (animagent/weights.py) or director kind")
    repo_id: str
    revision: str
    flavor: Literal["real", "tiny"]


class ShotScore(Artifact):
    shot: Slug
    keyframe: RelPath
    clip: RelPath
    clip_t: float = Field(ge=0.0, le=100.0, description="max(100·cos(keyframe, shot description), 0) on CLIP")
    subject_consistency: Unit = Field(description="VBench formula on the clip's DINOv2 frame features")
    background_consistency: Unit = Field(description="VBench formula on the clip's CLIP frame features")
    motion: Unit = Field(description="mean absolute frame-to-frame pixel change / 255")
    max_change_z: float = Field(description="largest z-score of the clip's frame-to-frame changes")
    style_class: StyleClass | None = Field(None, description="the director's style class for the keyframe")
    flags: tuple[Flag, ...] = ()


class CharacterScore(Artifact):
    character: Slug
    name: str
    shots: tuple[Slug, ...] = Field(description="the shots the character is placed in, in film order")
    identity: float | None = Field(
        None, description="mean pairwise cosine of its crops across shots (CSFD-style); None below 2 shots"
    )
    reference: float | None = Field(None, description="mean cosine of its crops to its cast sheet")


class FilmScore(Artifact):
    clip_t: float = Field(description="mean keyframe CLIP-T (DreamFactory's average key-frames CLIP score ×100)")
    subject_consistency: Unit
    background_consistency: Unit
    motion: Unit
    identity: float | None = Field(None, description="mean of the characters' identity scores")
    cssc: Unit | None = Field(None, description="share of keyframes in the majority style class; None unscored")
    keyframe_similarity: tuple[float, ...] = Field(
        (), description="cosine of consecutive keyframes' CLIP features (Anim-Director's image-image similarity)"
    )
    keyframe_similarity_mean: float | None = None


class Scorecard(Artifact):
    title: str
    identity_encoder: Literal["clip", "dino"]
    masked_crops: bool = Field(description="identity crops were SAM-masked to the character")
    shots: tuple[ShotScore, ...] = Field(min_length=1)
    characters: tuple[CharacterScore, ...]
    film: FilmScore
    encoders: tuple[Encoder, ...]
