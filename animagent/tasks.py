"""Director tasks: for each decision the director takes, the pydantic model its reply must fit.

A task is (prompt template `animagent/prompts/<task>.md`, output model). Some output models are built per
story so that the schema itself carries the story's facts: the script's characters and settings are enums
of the ids planned earlier, durations an enum of allowed seconds, and presence of each character a required
key (a box or null) — a reply can only reference what exists and can never name anything twice; a pick's
index is bounded by the number of candidates shown. Tasks: refine, style, script (plan); pick (cast images),
clip_pick (top-k clips), verdict (a keyframe candidate), base and context (DreamFactory's keyframe iteration),
motion (a shot's clip), keyframe_style (CSSC), voice (the narrator's and characters' voices, each shot's speaker).
This module owns the output shapes; prompts are data files and the retry loop is in backends/director.py.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from animagent.artifacts import Camera, Distortion, Motion, StyleClass
from animagent.config import LimitsConfig


class TaskOutput(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- refine: the story, retold for the screen, with its cast and places ----------------------------------


class CharacterDraft(TaskOutput):
    name: str = Field(max_length=40, description="the character's name")
    appearance: str = Field(
        max_length=300, description="fixed look: species or build, age, hair, clothes, colours; no actions"
    )


class SettingDraft(TaskOutput):
    name: str = Field(max_length=40, description="short name of the place")
    description: str = Field(max_length=300, description="what the place looks like; no people")


def refine_output(limits: LimitsConfig) -> type[TaskOutput]:
    return create_model(
        "RefinedStory",
        __base__=TaskOutput,
        title=(str, Field(max_length=80, description="film title")),
        story=(str, Field(max_length=3000, description="the story retold as clear visual scenes")),
        characters=(list[CharacterDraft], Field(min_length=1, max_length=limits.max_characters)),
        settings=(list[SettingDraft], Field(min_length=1, max_length=limits.max_settings)),
    )


# --- style: one of DreamFactory's seven classes plus a free description ---------------------------------


class StyleDecision(TaskOutput):
    style_class: StyleClass
    description: str = Field(max_length=200, description="palette, line, lighting and texture in a few words")


# --- script: scenes and shots over the planned cast and settings -----------------------------------------

def _opposite_corners(corners: list[int]) -> list[int]:
    if corners[0] == corners[2] or corners[1] == corners[3]:
        raise ValueError(f"corners {corners} enclose no area: x and y must differ between the two corners")
    return corners


Corners = Annotated[
    list[Annotated[int, Field(ge=0, le=1000)]],
    Field(min_length=4, max_length=4, description="two opposite corners x, y, x, y on a 0-1000 grid"),
    AfterValidator(_opposite_corners),
]


def script_output(character_ids: list[str], setting_ids: list[str], limits: LimitsConfig) -> type[TaskOutput]:
    """The script schema for one story: every character id is a required key holding its box or null."""
    presence = create_model(
        "Presence",
        __base__=TaskOutput,
        **{
            f"c{i}": (Corners | None, Field(alias=cid, description=f"where {cid} stands in the frame, or null"))
            for i, cid in enumerate(character_ids)
        },
    )
    seconds = tuple(range(limits.min_shot_seconds, limits.max_shot_seconds + 1))
    shot = create_model(
        "ShotDraft",
        __base__=TaskOutput,
        narration=(str, Field(max_length=300, description="one or two sentences read as a subtitle")),
        description=(str, Field(max_length=300, description="what the frame shows: action, pose, framing")),
        characters=(presence, ...),
        camera=(Camera, ...),
        motion=(Motion, ...),
        duration_s=(Literal[seconds], ...),  # type: ignore[valid-type]
    )
    scene = create_model(
        "SceneDraft",
        __base__=TaskOutput,
        setting=(Literal[tuple(setting_ids)], ...),  # type: ignore[valid-type]
        shots=(list[shot], Field(min_length=1, max_length=limits.max_shots_per_scene)),  # type: ignore[valid-type]
    )
    return create_model(
        "ScriptDraft",
        __base__=TaskOutput,
        scenes=(list[scene], Field(min_length=1, max_length=limits.max_scenes)),  # type: ignore[valid-type]
    )


# --- pick: the best of N images (cast candidates; the top-k clips, shown as frames) ----------------------


def pick_output(count: int) -> type[TaskOutput]:
    """The reply to a choice among `count` candidates: an index that can only name one of them.

    The reason comes first so the model states it before committing to a number."""
    return create_model(
        "ImagePick",
        __base__=TaskOutput,
        reason=(str, Field(max_length=200, description="why the chosen one is best, in a sentence")),
        choice=(int, Field(ge=0, le=count - 1, description=f"the chosen candidate, 0 to {count - 1}")),
    )


# --- verdict: a keyframe candidate reviewed (Anim-Director's self-reflection) ----------------------------


def verdict_output(character_ids: list[str], max_x: int | float, max_y: int | float) -> type[TaskOutput]:
    """The verdict schema for one shot: every present character id is a required key holding where it is and
    whether it is on-model, or null when it is not in the image. Box corners are bounded by the grounding frame
    (`max_x`, `max_y`: the sent image's pixels for Qwen2.5-VL, 1000 for Qwen3-VL, 1.0 for LLaVA-OneVision's
    fractions; Director.grounding) and have its type: integers, or numbers for a float frame."""
    number = float if isinstance(max_x, float) else int
    x = Annotated[number, Field(ge=0, le=max_x)]
    y = Annotated[number, Field(ge=0, le=max_y)]
    located = create_model(
        "Located",
        __base__=TaskOutput,
        bbox_2d=(tuple[x, y, x, y], Field(description="x1, y1, x2, y2 of the character in the first image")),
        on_model=(bool, Field(description="true when it matches its reference sheet")),
    )
    present = create_model(
        "PresentCharacters",
        __base__=TaskOutput,
        **{
            f"c{i}": (located | None, Field(alias=cid, description=f"{cid} in the first image, or null if absent"))
            for i, cid in enumerate(character_ids)
        },
    )
    return create_model(
        "KeyframeVerdict",
        __base__=TaskOutput,
        alignment=(int, Field(ge=0, le=4, description="0: unrelated to the shot text ... 4: shows all of it")),
        characters=(present, ...),
        distortions=(list[Distortion], Field(max_length=len(get_args(Distortion)))),
    )


# --- keyframe iteration (DreamFactory): base and context descriptions ---------------------------------------


class KeyframeDescription(TaskOutput):
    description: str = Field(max_length=300, description="a few sentences a painter can follow")


# --- motion: the closed motion class of a shot's clip, chosen with the keyframe in view ---------------------


class MotionDecision(TaskOutput):
    reason: str = Field(max_length=200, description="what moves in the shot and how much")
    motion: Motion


# --- style class of a keyframe (DreamFactory's CSSC metric) -------------------------------------------------


class KeyframeStyle(TaskOutput):
    style_class: StyleClass


# --- voice: a voice for the narrator and each character, and who speaks each shot's narration ---------------


def voice_output(
    voice_ids: list[str], character_ids: list[str], shots: list[tuple[str, list[str]]]
) -> type[TaskOutput]:
    """The casting schema for one story: every voice is an enum of the voice model's ids, every character id a
    required key, and each shot's speaker one of "narrator" and the characters present in that shot."""
    voice = Literal[tuple(voice_ids)]  # type: ignore[valid-type]
    characters = create_model(
        "CharacterVoices",
        __base__=TaskOutput,
        **{f"c{i}": (voice, Field(alias=cid, description=f"the voice {cid} speaks in"))
           for i, cid in enumerate(character_ids)},
    )
    speakers = create_model(
        "ShotSpeakers",
        __base__=TaskOutput,
        **{
            f"s{i}": (
                Literal[("narrator", *present)],  # type: ignore[valid-type]
                Field(alias=sid, description=f"who speaks shot {sid}"),
            )
            for i, (sid, present) in enumerate(shots)
        },
    )
    return create_model(
        "VoiceCasting",
        __base__=TaskOutput,
        narrator=(voice, Field(description="the voice that tells the story")),
        characters=(characters, ...),
        speakers=(speakers, ...),
    )
