"""Director tasks: for each decision the director takes, the pydantic model its reply must fit.

A task is (prompt template `animagent/prompts/<task>.md`, output model). Some output models are built per
story so that the schema itself carries the story's facts: the script's characters and settings are enums
of the ids planned earlier, durations an enum of allowed seconds, and presence of each character a required
key (a box or null) — a reply can only reference what exists and can never name anything twice.
This module owns the output shapes; prompts are data files and the retry loop is in backends/director.py.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from animagent.artifacts import Camera, Motion, StyleClass
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
