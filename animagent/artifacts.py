"""Typed artifacts that cross stage boundaries: the script, the cast, keyframes, clips and the film.

Every artifact is a frozen pydantic model saved as JSON in the run folder. Media are referenced by paths
relative to the run folder; cross-references use slug ids (`mira`, `s02_k1`). Boxes are fractions of the
frame (0..1), so a script is independent of the resolution it is rendered at.
This module owns the shapes and their invariants; it does not read or write files.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

SLUG_MAX = 40
Slug = Annotated[str, StringConstraints(pattern=rf"^[a-z0-9][a-z0-9_-]{{0,{SLUG_MAX - 1}}}$")]
RelPath = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$", max_length=240)]

# DreamFactory's seven style classes (also the label set of the CSSC metric).
StyleClass = Literal["anime", "illustration", "origami", "oil painting", "realism", "cyberpunk", "ink wash"]
# The closed motion set the director picks from; animate maps each to animator parameters (one table).
Motion = Literal["still", "gentle", "moderate", "lively", "intense"]
Camera = Literal["wide shot", "medium shot", "close-up", "low angle", "high angle", "over the shoulder"]

_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


def slugify(text: str, fallback: str, max_len: int = 24) -> str:
    """ASCII slug for ids that reach the file system: lowercase, [a-z0-9_-], capped, never reserved or empty."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:max_len].strip("-")
    if not slug or slug in _WINDOWS_RESERVED:
        return fallback
    return slug


class Artifact(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Box(Artifact):
    """A rectangle as fractions of the frame: (x0, y0) top-left, (x1, y1) bottom-right."""

    x0: float = Field(ge=0.0, le=1.0)
    y0: float = Field(ge=0.0, le=1.0)
    x1: float = Field(ge=0.0, le=1.0)
    y1: float = Field(ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _positive_area(self) -> Box:
        if self.x1 <= self.x0 or self.y1 <= self.y0:
            raise ValueError(f"box needs x0 < x1 and y0 < y1, got ({self.x0}, {self.y0}, {self.x1}, {self.y1})")
        return self

    def to_pixels(self, width: int, height: int) -> tuple[int, int, int, int]:
        return (round(self.x0 * width), round(self.y0 * height), round(self.x1 * width), round(self.y1 * height))


class Character(Artifact):
    id: Slug
    name: str = Field(min_length=1, max_length=80)
    appearance: str = Field(min_length=1, max_length=600, description="fixed appearance text used in every prompt")


class Setting(Artifact):
    id: Slug
    name: str = Field(min_length=1, max_length=80)
    description: str = Field(min_length=1, max_length=600)


class Placement(Artifact):
    character: Slug
    box: Box


class Shot(Artifact):
    id: Slug
    narration: str = Field(min_length=1, max_length=600)
    description: str = Field(min_length=1, max_length=600)
    characters: tuple[Placement, ...] = ()
    setting: Slug
    camera: Camera
    motion: Motion
    duration_s: int = Field(ge=1, le=30)

    @model_validator(mode="after")
    def _unique_characters(self) -> Shot:
        ids = [p.character for p in self.characters]
        if len(ids) != len(set(ids)):
            raise ValueError(f"shot {self.id} lists a character twice: {ids}")
        return self


class Scene(Artifact):
    id: Slug
    shots: tuple[Shot, ...] = Field(min_length=1)


class Style(Artifact):
    style_class: StyleClass
    description: str = Field(min_length=1, max_length=600)


class Script(Artifact):
    title: str = Field(min_length=1, max_length=200)
    story: str = Field(min_length=1, description="the refined story")
    style: Style
    characters: tuple[Character, ...] = Field(min_length=1)
    settings: tuple[Setting, ...] = Field(min_length=1)
    scenes: tuple[Scene, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _references(self) -> Script:
        for kind, ids in (
            ("character", [c.id for c in self.characters]),
            ("setting", [s.id for s in self.settings]),
            ("scene", [s.id for s in self.scenes]),
            ("shot", [s.id for s in self.shots()]),
        ):
            if len(ids) != len(set(ids)):
                raise ValueError(f"{kind} ids must be unique, got {ids}")
        characters = {c.id for c in self.characters}
        settings = {s.id for s in self.settings}
        for shot in self.shots():
            if shot.setting not in settings:
                raise ValueError(f"shot {shot.id} names setting '{shot.setting}', not one of {sorted(settings)}")
            for placement in shot.characters:
                if placement.character not in characters:
                    raise ValueError(
                        f"shot {shot.id} names character '{placement.character}', not one of {sorted(characters)}"
                    )
        return self

    def shots(self) -> list[Shot]:
        return [shot for scene in self.scenes for shot in scene.shots]

    def shot(self, shot_id: str) -> Shot:
        for shot in self.shots():
            if shot.id == shot_id:
                return shot
        raise KeyError(shot_id)

    def character(self, character_id: str) -> Character:
        return next(c for c in self.characters if c.id == character_id)

    def setting(self, setting_id: str) -> Setting:
        return next(s for s in self.settings if s.id == setting_id)


class CharacterSheet(Artifact):
    character: Slug
    image: RelPath
    prompt: str
    seed: int


class SettingSheet(Artifact):
    setting: Slug
    image: RelPath
    prompt: str
    seed: int


class Cast(Artifact):
    characters: tuple[CharacterSheet, ...]
    settings: tuple[SettingSheet, ...]

    def character(self, character_id: str) -> CharacterSheet:
        return next(s for s in self.characters if s.character == character_id)

    def setting(self, setting_id: str) -> SettingSheet:
        return next(s for s in self.settings if s.setting == setting_id)


class Keyframe(Artifact):
    shot: Slug
    image: RelPath
    prompt: str
    seed: int


class Clip(Artifact):
    shot: Slug
    video: RelPath
    frames: int = Field(ge=1)
    fps: int = Field(ge=1)
    seed: int


class Film(Artifact):
    run_dir: str
    video: RelPath
    subtitles: RelPath
    storyboard: RelPath
    shots: int
    frames: int
    fps: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps


class Takes(Artifact):
    """How many times `animagent rerender` asked for a fresh take of a shot's keyframe or clip.

    Take 0 is the first render; each new take derives a new seed for that shot alone."""

    draw: dict[str, int] = {}
    animate: dict[str, int] = {}
