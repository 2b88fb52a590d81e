"""Stage 4, draw: `draw.candidates` keyframe candidates of one shot, in one batch (review.py then picks one).

Anim-Director's visual-language prompting plus DreamFactory's keyframe iteration. SDXL reads two prompts, each
through its own text encoder and each cut at 77 tokens, so the text is split: the first prompt carries the style,
camera, shot description, each present character's fixed appearance and the setting; the second carries the
shot description again, then the base description of the film's first accepted keyframe and the context
description of the previous accepted keyframe (both written by the director in review). IP-Adapter carries the
sheets: each present character's sheet, masked to its layout box when two or more share the frame (alone, a
character's reference conditions the whole frame), and the setting's sheet through InstantStyle's style block.
One seed per candidate, derived from (run seed, shot, candidate, take). This module owns the keyframe prompts,
the references and the draw step; the painter draws.
"""

from __future__ import annotations

from animagent.artifacts import Candidates, Cast, Keyframe, Reference, Script, Shot
from animagent.config import Config
from animagent.stages import Context


def keyframe_prompt(script: Script, shot: Shot, cast: Cast) -> str:
    """The first text encoder's prompt. A library character's description replaces the script's appearance."""
    setting = script.setting(shot.setting)
    people = " ".join(
        f"{script.character(p.character).name}: "
        f"{cast.character(p.character).appearance or script.character(p.character).appearance}."
        for p in shot.characters
    )
    return (
        f"{script.style.style_class} style, {script.style.description}. {shot.camera}. {shot.description}. "
        f"{people} Setting: {setting.name}, {setting.description}."
    )


def continuity_prompt(shot: Shot, previous: list[Keyframe]) -> str:
    """The second text encoder's prompt: the shot, then what the accepted keyframes so far ask to keep."""
    parts = [f"{shot.description}."]
    if previous:
        parts.append(f"Keep: {previous[0].base_description}")
        parts.append(f"Previously: {previous[-1].context_description}")
    return " ".join(parts)


def references(shot: Shot, cast: Cast, config: Config) -> list[Reference]:
    """Each present character's sheet (masked to its box when two or more share the frame), then the setting's."""
    masked = len(shot.characters) >= 2
    refs = [
        Reference(image=cast.character(p.character).image, scale=config.painter.character_scale,
                  box=p.box if masked else None, layers="all")
        for p in shot.characters
    ]
    refs.append(Reference(image=cast.setting(shot.setting).image, scale=config.painter.setting_scale, layers="style"))
    return refs


def draw(ctx: Context, script: Script, cast: Cast, shot: Shot, previous: list[Keyframe]) -> Candidates:
    """The shot's candidates (step `draw/<shot>`), drawn after the keyframes of the shots before it."""
    run, config = ctx.run, ctx.config
    folder, json_rel = f"keyframes/{shot.id}/candidates", f"keyframes/{shot.id}/candidates.json"
    prompt, prompt_2 = keyframe_prompt(script, shot, cast), continuity_prompt(shot, previous)
    take = ctx.takes.draw.get(shot.id, 0)
    seeds = [ctx.seed("draw", shot.id, str(i), take=take) for i in range(config.draw.candidates)]
    refs = references(shot, cast, config)
    step = ctx.step(
        f"draw/{shot.id}", prompt=prompt, prompt_2=prompt_2, seeds=seeds, painter=config.painter,
        models=ctx.models.ids("painter"), refs=[(run.sha(ref.image), ref.scale, ref.box, ref.layers) for ref in refs],
    )
    if step.todo:
        painter = ctx.models.get("painter")
        images = painter.draw(prompt, refs, [run.read_image(r.image) for r in refs], config.painter.width,
                              config.painter.height, seeds, prompt_2=prompt_2)
        rels = [f"{folder}/{i}.png" for i in range(len(images))]
        for rel, image in zip(rels, images):
            run.write_image(rel, image)
        run.write_model(json_rel, Candidates(item=shot.id, prompt=prompt, prompt_2=prompt_2, seeds=tuple(seeds),
                                             images=tuple(rels), references=tuple(refs)))
        step.record([*rels, json_rel], notes=painter.take_ladder())
    return run.read_model(json_rel, Candidates)
