"""Stage 2, cast: one reference sheet per character (full body, plain background) and per setting (no people).

Sheets are what the draw stage hands to IP-Adapter, so every character looks the same in every shot. This
module owns the sheet prompts and their steps in the run folder; the painter draws.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

from animagent.artifacts import Cast, Character, CharacterSheet, Script, Setting, SettingSheet
from animagent.config import Config
from animagent.runfolder import RunFolder, derive_seed, step_key
from animagent.stages import Progress

if TYPE_CHECKING:
    from animagent.backends.painter_sdxl import SDXLPainter


def character_prompt(script: Script, character: Character) -> str:
    return (
        f"{script.style.style_class} style, {script.style.description}. Character sheet of {character.name}: "
        f"{character.appearance}. Full body, standing, facing the viewer, plain white background."
    )


def setting_prompt(script: Script, setting: Setting) -> str:
    return (
        f"{script.style.style_class} style, {script.style.description}. {setting.name}: {setting.description}. "
        "Establishing view, empty scene, no people."
    )


def cast(
    script: Script, run: RunFolder, painter: Callable[[], SDXLPainter], config: Config, models: list, progress: Progress
) -> Cast:
    jobs = [("characters", c.id, character_prompt(script, c)) for c in script.characters]
    jobs += [("settings", s.id, setting_prompt(script, s)) for s in script.settings]
    sheets: dict[str, list] = {"characters": [], "settings": []}
    for n, (kind, item_id, prompt) in enumerate(jobs):
        progress("cast", n, len(jobs))
        image_rel, json_rel = f"cast/{kind}/{item_id}.png", f"cast/{kind}/{item_id}.json"
        seed = derive_seed(config.seed, "cast", kind, item_id)
        step = f"cast/{kind}/{item_id}"
        key = step_key(step=step, prompt=prompt, seed=seed, painter=config.painter, size=config.cast, models=models)
        if not run.done(step, key):
            started = time.perf_counter()
            image = painter().sketch(prompt, config.cast.width, config.cast.height, seed)
            run.write_image(image_rel, image)
            if kind == "characters":
                sheet = CharacterSheet(character=item_id, image=image_rel, prompt=prompt, seed=seed)
            else:
                sheet = SettingSheet(setting=item_id, image=image_rel, prompt=prompt, seed=seed)
            run.write_model(json_rel, sheet)
            run.record(step, key, [image_rel, json_rel], time.perf_counter() - started)
        sheets[kind].append(run.read_model(json_rel, CharacterSheet if kind == "characters" else SettingSheet))
    progress("cast", len(jobs), len(jobs))
    return Cast(characters=tuple(sheets["characters"]), settings=tuple(sheets["settings"]))
