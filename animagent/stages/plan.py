"""Stage 1, plan: story text → validated Script (Anim-Director's refinement + script; DreamFactory's phases).

Three director tasks in order — refine (retelling, cast, places), style (one of seven classes), script
(scenes → shots over the planned ids). Ids are assigned here, never by the director: names are slugified
and de-duplicated before they reach the file system. This module owns story validation, the mapping
from the director's drafts to the Script artifact and the plan step (`script.json`, the user's to edit).
"""

from __future__ import annotations

from pathlib import Path

from animagent.artifacts import Box, Character, Placement, Scene, Script, Setting, Shot, Style, slugify
from animagent.backends import Director
from animagent.config import MAX_DIRECTOR_IMAGES, Config, LimitsConfig
from animagent.errors import InputError
from animagent.models import model_ids
from animagent.runfolder import derive_seed, step_key
from animagent.stages import Context, Step
from animagent.tasks import StyleDecision, refine_output, script_output

SCRIPT = "script.json"


def plan(ctx: Context, story: str) -> Script:
    """The script (step `plan`). Once planned with this key, whatever script.json holds is the script: the user may
    have edited it, and the steps after it follow the edit."""
    key = plan_key(ctx.config, story)
    record = ctx.run.manifest.steps.get("plan")
    if record is not None and record.key == key and ctx.run.exists(SCRIPT):
        return check_script(ctx.run.read_model(SCRIPT, Script), ctx.config.limits)
    ctx.progress("plan", 0, 1)
    step = Step(ctx, "plan", key)
    script = draft_script(story, ctx.models.get("director"), ctx.config)
    ctx.run.write_model(SCRIPT, script)
    step.record([SCRIPT])
    ctx.progress("plan", 1, 1)
    return script


def plan_key(config: Config, story: str) -> str:
    return step_key(step="plan", story=story, director=config.director_key(), limits=config.limits,
                    seed=config.seed, models=model_ids(config, config.director.weights))


def read_story(path: Path, limits: LimitsConfig) -> str:
    """The story text, or InputError naming what is wrong with the file."""
    if not path.is_file():
        raise InputError(f"story {path} is a directory; give a text file" if path.is_dir()
                         else f"story file not found: {path}")
    size = path.stat().st_size
    if size > limits.max_story_bytes:
        raise InputError(
            f"story {path} is {size} bytes; the limit is {limits.max_story_bytes} (limits.max_story_bytes)"
        )
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"story {path} is not UTF-8 text (byte {exc.start} is invalid)") from None
    if any(ch in text for ch in "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0e\x0f\x7f"):
        raise InputError(f"story {path} holds binary control characters; give a plain text file")
    if not text.strip():
        raise InputError(f"story {path} is empty")
    return text


def check_script(script: Script, limits: LimitsConfig) -> Script:
    """A script from the user (--script or an edited script.json) is held to the limits a planned one is, and must
    fit what the director can look at: a shot's review shows it the keyframe plus one reference per character."""
    for shot in script.shots():
        if len(shot.characters) + 1 > MAX_DIRECTOR_IMAGES:
            raise InputError(
                f"shot {shot.id} places {len(shot.characters)} characters; at most {MAX_DIRECTOR_IMAGES - 1} "
                "fit one director question (the keyframe and one reference each)"
            )
    for what, count, most in (("characters", len(script.characters), limits.max_characters),
                              ("settings", len(script.settings), limits.max_settings),
                              ("scenes", len(script.scenes), limits.max_scenes)):
        if count > most:
            raise InputError(f"the script has {count} {what}; limits.max_{what} is {most} "
                             f"(raise it with --set limits.max_{what}=N)")
    for scene in script.scenes:
        if len(scene.shots) > limits.max_shots_per_scene:
            raise InputError(f"scene {scene.id} of the script has {len(scene.shots)} shots; "
                             f"limits.max_shots_per_scene is {limits.max_shots_per_scene}")
    for shot in script.shots():
        if not limits.min_shot_seconds <= shot.duration_s <= limits.max_shot_seconds:
            raise InputError(f"shot {shot.id} lasts {shot.duration_s} s; limits.min_shot_seconds and "
                             f"max_shot_seconds allow {limits.min_shot_seconds} to {limits.max_shot_seconds} s")
    return script


def draft_script(story: str, director: Director, config: Config) -> Script:
    limits = config.limits
    seed = config.seed

    refined = director.ask(
        "refine",
        {"story": story, "max_characters": str(limits.max_characters), "max_settings": str(limits.max_settings)},
        refine_output(limits),
        seed=derive_seed(seed, "refine"),
    )
    style = director.ask("style", {"story": refined.story}, StyleDecision, seed=derive_seed(seed, "style"))

    characters = tuple(
        Character(id=cid, name=name, appearance=draft.appearance.strip() or name)
        for cid, draft in zip(_unique_ids([c.name for c in refined.characters], "c"), refined.characters)
        for name in [draft.name.strip() or cid]
    )
    settings = tuple(
        Setting(id=sid, name=name, description=draft.description.strip() or name)
        for sid, draft in zip(_unique_ids([s.name for s in refined.settings], "place"), refined.settings)
        for name in [draft.name.strip() or sid]
    )
    draft = director.ask(
        "script",
        {
            "story": refined.story,
            "style": f"{style.style_class} style ({style.description})",
            "characters": "\n".join(f"- {c.id}: {c.name}, {c.appearance}" for c in characters),
            "settings": "\n".join(f"- {s.id}: {s.name}, {s.description}" for s in settings),
            "max_scenes": str(limits.max_scenes),
            "max_shots": str(limits.max_shots_per_scene),
            "min_seconds": str(limits.min_shot_seconds),
            "max_seconds": str(limits.max_shot_seconds),
        },
        script_output([c.id for c in characters], [s.id for s in settings], limits),
        seed=derive_seed(seed, "script"),
    )

    scenes = []
    for n, scene in enumerate(draft.scenes, start=1):
        shots = []
        for k, shot in enumerate(scene.shots, start=1):
            placements = tuple(
                Placement(character=c.id, box=_box(corners))
                for i, c in enumerate(characters)
                if (corners := getattr(shot.characters, f"c{i}")) is not None
            )
            shots.append(
                Shot(
                    id=f"s{n:02d}_k{k}",
                    narration=shot.narration.strip() or "...",
                    description=shot.description.strip() or "...",
                    characters=placements,
                    setting=scene.setting,
                    camera=shot.camera,
                    motion=shot.motion,
                    duration_s=shot.duration_s,
                )
            )
        scenes.append(Scene(id=f"s{n:02d}", shots=tuple(shots)))

    return Script(
        title=refined.title.strip() or "Untitled",
        story=refined.story.strip() or story.strip(),
        style=Style(style_class=style.style_class, description=style.description.strip() or style.style_class),
        characters=characters,
        settings=settings,
        scenes=tuple(scenes),
    )


def _unique_ids(names: list[str], prefix: str) -> list[str]:
    ids: list[str] = []
    for i, name in enumerate(names, start=1):
        base = slugify(name, fallback=f"{prefix}{i}")
        candidate, n = base, 2
        while candidate in ids:
            candidate, n = f"{base}-{n}", n + 1
        ids.append(candidate)
    return ids


def _box(corners: list[int]) -> Box:
    x_a, y_a, x_b, y_b = (v / 1000 for v in corners)
    return Box(x0=min(x_a, x_b), y0=min(y_a, y_b), x1=max(x_a, x_b), y1=max(y_a, y_b))
