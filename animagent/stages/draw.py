"""Stage 3, draw: one keyframe per shot from the shot's text and its characters' and setting's sheets.

Anim-Director's visual-language prompting: the prompt carries the style, camera, shot description, each
present character's fixed appearance and the setting; IP-Adapter carries the sheets — one reference per
present character, masked to its layout box, and the setting's sheet over the whole frame at a lower scale.
This module owns the keyframe prompt and the references; the painter draws.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

from animagent.artifacts import Cast, Keyframe, Script, Shot, Takes
from animagent.config import Config
from animagent.runfolder import RunFolder, derive_seed, step_key
from animagent.stages import Progress

if TYPE_CHECKING:
    from animagent.backends.painter_sdxl import SDXLPainter


def keyframe_prompt(script: Script, shot: Shot) -> str:
    setting = script.setting(shot.setting)
    people = " ".join(
        f"{script.character(p.character).name}: {script.character(p.character).appearance}." for p in shot.characters
    )
    return (
        f"{script.style.style_class} style, {script.style.description}. {shot.camera}. {shot.description}. "
        f"{people} Setting: {setting.name}, {setting.description}."
    )


def draw(
    script: Script,
    cast: Cast,
    run: RunFolder,
    painter: Callable[[], SDXLPainter],
    config: Config,
    models: list,
    takes: Takes,
    progress: Progress,
) -> list[Keyframe]:
    shots = script.shots()
    keyframes = []
    for n, shot in enumerate(shots):
        progress("draw", n, len(shots))
        image_rel, json_rel = f"keyframes/{shot.id}.png", f"keyframes/{shot.id}.json"
        prompt = keyframe_prompt(script, shot)
        seed = derive_seed(config.seed, "draw", shot.id, take=takes.draw.get(shot.id, 0))
        sheets = [(cast.character(p.character).image, config.painter.character_scale, p.box) for p in shot.characters]
        sheets.append((cast.setting(shot.setting).image, config.painter.setting_scale, None))
        step = f"draw/{shot.id}"
        key = step_key(
            step=step, prompt=prompt, seed=seed, painter=config.painter, models=models,
            refs=[(run.sha(rel), scale, box) for rel, scale, box in sheets],
        )
        if not run.done(step, key):
            from animagent.backends.painter_sdxl import Reference

            started = time.perf_counter()
            refs = [Reference(image=run.read_image(rel), scale=scale, box=box) for rel, scale, box in sheets]
            image = painter().draw(prompt, refs, config.painter.width, config.painter.height, seed)
            run.write_image(image_rel, image)
            run.write_model(json_rel, Keyframe(shot=shot.id, image=image_rel, prompt=prompt, seed=seed))
            run.record(step, key, [image_rel, json_rel], time.perf_counter() - started)
        keyframes.append(run.read_model(json_rel, Keyframe))
    progress("draw", len(shots), len(shots))
    return keyframes
