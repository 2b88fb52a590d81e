"""Typed artifacts that cross stage boundaries: the script, the cast, candidates, keyframes with their verdicts,
clips with their reviews, and the film.

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
# A visible flaw the director may report in a keyframe: a closed set, so verdicts can be counted and compared.
Distortion = Literal[
    "extra limbs", "malformed hands", "malformed face", "merged bodies", "garbled text", "melted shapes"
]

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
    voice: str | None = Field(None, max_length=40, description="the voice id this character speaks in; None: not cast")


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
    speaker: Slug | None = Field(None, description="the character who speaks the narration; None: the narrator")

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
    narrator_voice: str | None = Field(
        None, max_length=40, description="the voice id of the narrator; None: voices are not cast yet"
    )

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
            if shot.speaker is not None and shot.speaker not in characters:
                raise ValueError(f"shot {shot.id} is spoken by '{shot.speaker}', not one of {sorted(characters)}")
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


class ShotSpeech(Artifact):
    """One shot's sound: its narration spoken from the shot's first frame, then silence to the shot's end."""

    shot: Slug
    audio: RelPath = Field(description="16-bit mono WAV lasting exactly `frames` at the film's fps")
    voice: str = Field(description="the voice id that spoke it")
    speech_s: float = Field(ge=0.0, description="seconds of speech from the shot's start; 0: nothing to say")
    frames: int = Field(ge=1, description="the shot's length: its planned seconds, or its speech plus the pause")
    fps: int = Field(ge=1)
    sample_rate: int = Field(ge=1)

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps


class Narration(Artifact):
    """Every shot's speech, in film order: the lengths the animator and assemble fit the shots to."""

    sample_rate: int = Field(ge=1)
    shots: tuple[ShotSpeech, ...] = Field(min_length=1)

    def shot(self, shot_id: str) -> ShotSpeech:
        for speech in self.shots:
            if speech.shot == shot_id:
                return speech
        raise KeyError(shot_id)


class Pick(Artifact):
    """A choice among candidates: the winning index, who decided, and the director's stated reason."""

    chosen: int = Field(ge=0)
    candidates: int = Field(ge=1)
    by: Literal["director", "only candidate"]
    reason: str = ""

    @model_validator(mode="after")
    def _in_range(self) -> Pick:
        if self.chosen >= self.candidates:
            raise ValueError(f"chosen {self.chosen} is not one of {self.candidates} candidates")
        return self


class Reference(Artifact):
    """An image a keyframe was conditioned on through IP-Adapter: how strongly, where, and through which layers."""

    image: RelPath
    scale: float = Field(ge=0.0, le=1.0)
    box: Box | None = Field(None, description="the IP-Adapter mask; None = the whole frame")
    layers: Literal["all", "style"] = Field(description="style: InstantStyle's style block only")


class Candidates(Artifact):
    """Images drawn for one item (a character, a setting or a shot) from one prompt, one seed each."""

    item: Slug
    prompt: str
    prompt_2: str | None = Field(None, description="SDXL's second text encoder's prompt; None = the same prompt")
    seeds: tuple[int, ...] = Field(min_length=1)
    images: tuple[RelPath, ...] = Field(min_length=1)
    references: tuple[Reference, ...] = ()

    @model_validator(mode="after")
    def _one_seed_per_image(self) -> Candidates:
        if len(self.seeds) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.seeds)} seeds")
        return self


class CharacterSheet(Artifact):
    character: Slug
    image: RelPath
    prompt: str
    seed: int
    alternates: tuple[RelPath, ...] = Field((), description="the other candidates (or library images), in memory")
    pick: Pick | None = None
    source: Literal["drawn", "library"] = "drawn"
    appearance: str | None = Field(None, description="a library entry's description; replaces the script's in prompts")


class SettingSheet(Artifact):
    setting: Slug
    image: RelPath
    prompt: str
    seed: int
    alternates: tuple[RelPath, ...] = ()
    pick: Pick | None = None


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
    verdict: RelPath | None = Field(None, description="the review that chose this keyframe (a Verdict)")
    base_description: str | None = Field(
        None, description="DreamFactory's base description: what every later keyframe keeps (first shot only)"
    )
    context_description: str | None = Field(
        None, description="DreamFactory's context description of this keyframe, for drawing the next shot"
    )


class CharacterCheck(Artifact):
    """One character in one review round: where it was found, its mask, its identity score and the decision."""

    character: Slug
    seen: bool = Field(description="the director gave a box for it")
    on_model: bool | None = Field(description="the director's judgment against its sheet; None when not seen")
    director_box: Box | None = Field(description="the director's grounding box; None when absent or empty")
    box: Box = Field(description="the box that was segmented: the director's, else the layout box")
    box_source: Literal["director", "layout"]
    mask: RelPath
    mask_source: Literal["sam", "box"] = Field(description="box: SAM found nothing inside the box")
    identity: float = Field(ge=-1.0, le=1.0, description="best cosine of the masked crop to its memory entries")
    nearest: Slug = Field(description="the character of the nearest memory entry")
    passed: bool = Field(description="identity >= review.identity_threshold")


class ReviewRound(Artifact):
    round: int = Field(ge=0)
    image: RelPath
    alignment: int = Field(ge=0, le=4, description="the director's text alignment")
    distortions: tuple[Distortion, ...]
    characters: tuple[CharacterCheck, ...]
    repaired: tuple[Slug, ...] = Field(description="characters inpainted after this round, giving the next image")


class CandidateReview(Artifact):
    candidate: int = Field(ge=0)
    seed: int
    rounds: tuple[ReviewRound, ...] = Field(min_length=1)
    identity_passed: bool = Field(description="every character of the last round passed")
    verdict_score: int = Field(description="last round: alignment - distortions - characters judged off-model")
    identity: float | None = Field(description="last round's lowest identity; None in a shot without characters")
    clip_t: float = Field(ge=0.0, le=100.0, description="CLIP-T of the final image against the shot description")


class Verdict(Artifact):
    """The review of one shot's keyframe candidates: every round, score, box, mask and the choice."""

    shot: Slug
    threshold: float
    max_rounds: int
    candidates: tuple[CandidateReview, ...] = Field(min_length=1)
    ranking: tuple[int, ...] = Field(description="candidate indices, best first")
    chosen: int
    rule: str = Field(description="the ranking rule, in words")


class Clip(Artifact):
    shot: Slug
    video: RelPath
    frames: int = Field(ge=1)
    fps: int = Field(ge=1)
    seed: int
    review: RelPath | None = Field(None, description="how this clip was chosen (a ClipReview)")


class MotionChoice(Artifact):
    shot: Slug
    planned: Motion = Field(description="the script's motion")
    motion: Motion = Field(description="the director's choice, having seen the keyframe")
    reason: str
    parameters: dict[str, float | int | str] = Field(description="the animator's settings for this motion")


class ClipCandidates(Artifact):
    """The clips rendered for one shot, one seed each; a later step scores them and picks one."""

    shot: Slug
    motion: Motion
    clips: tuple[Clip, ...] = Field(min_length=1)


class ClipCandidate(Artifact):
    index: int = Field(ge=0)
    video: RelPath
    seed: int
    subject_consistency: float
    background_consistency: float
    motion: float = Field(description="mean frame-to-frame change (0 = still)")
    max_change_z: float
    spike: bool = Field(description="a frame-to-frame change above the spike z-score (a flash, melt or jump)")
    moves: bool = Field(description="it moves, or the chosen motion is still")


class ClipReview(Artifact):
    """How one shot's clip was chosen: candidates and their scores, the ranking, what the director saw and chose."""

    shot: Slug
    motion: Motion
    candidates: tuple[ClipCandidate, ...] = Field(min_length=1)
    ranking: tuple[int, ...]
    shown: tuple[int, ...] = Field(description="the top-k candidates the director chose among, in the order shown")
    pick: Pick
    chosen: int
    rule: str


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


class Picks(Artifact):
    """The candidates a person chose on the review page (`animagent studio`), by shot: a keyframe candidate index
    overrides the review's ranking, a clip candidate index overrides the director's pick."""

    keyframes: dict[Slug, Annotated[int, Field(ge=0)]] = {}
    clips: dict[Slug, Annotated[int, Field(ge=0)]] = {}
