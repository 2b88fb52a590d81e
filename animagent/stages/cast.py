"""Stage 2, cast: a reference sheet per character (full body, plain background) and per setting (no people).

Sheets are what the draw stage hands to IP-Adapter, so every character looks the same in every shot. Two
passes, stage-major: the painter draws `cast.candidates` images per item in one batch (step `cast/<kind>/<id>`),
then the director picks one of each item's candidates by index (step `pick/<kind>/<id>`; with one candidate
there is nothing to ask). A character whose name matches a cast library entry (castlib.py) is not drawn: the
entry's images are copied into the run in its `cast/characters/<id>` step, the first one as the sheet.
`remember` embeds every sheet's chosen image and alternates into the run's memory (step `memory`); the studio
calls it with the sheets the shots are drawn with. This module owns the sheet prompts and these steps; the
painter draws, the director picks, the embedder embeds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from animagent import castlib
from animagent.artifacts import Candidates, Cast, Character, CharacterSheet, Script, Setting, SettingSheet
from animagent.backends.director import Director
from animagent.config import Config
from animagent.memory import SIDECAR, Item, Memory
from animagent.runfolder import RunFolder, derive_seed, step_key
from animagent.stages import Progress, ask_pick

if TYPE_CHECKING:
    from animagent.backends.embedder import ClipEmbedder
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
    script: Script,
    run: RunFolder,
    painter: Callable[[], SDXLPainter],
    director: Callable[[], Director],
    config: Config,
    painter_models: list,
    director_models: list,
    progress: Progress,
) -> Cast:
    library = castlib.library_root(config.cast.library)
    jobs = [("characters", c.id, character_prompt(script, c), _purpose_of_character(c), castlib.find(c.name, library))
            for c in script.characters]
    jobs += [("settings", s.id, setting_prompt(script, s), _purpose_of_setting(s), None) for s in script.settings]
    total = 2 * len(jobs)

    # 1. candidates: the painter draws every item's (a library character is copied instead)
    for n, (kind, item_id, prompt, _, entry) in enumerate(jobs):
        progress("cast", n, total)
        if entry is not None:
            _copy_library_character(script.character(item_id), entry, library, run)
        else:
            _draw_candidates(kind, item_id, prompt, run, painter, config, painter_models)

    # 2. picks: the director chooses among each drawn item's candidates
    for n, (kind, item_id, _, purpose, entry) in enumerate(jobs):
        progress("cast", len(jobs) + n, total)
        if entry is None:
            _pick(kind, item_id, purpose, run, director, config, director_models)
    progress("cast", total, total)
    return Cast(
        characters=tuple(run.read_model(f"cast/characters/{c.id}.json", CharacterSheet) for c in script.characters),
        settings=tuple(run.read_model(f"cast/settings/{s.id}.json", SettingSheet) for s in script.settings),
    )


def remember(
    sheets: Cast, run: RunFolder, embedder: Callable[[], ClipEmbedder], config: Config, models: list
) -> Callable[[], Memory]:
    """Embed each character's chosen image and alternates into memory (step `memory`); return a loader of it.

    A library character's images are all its own references (view `sheet`); a drawn character's other
    candidates are `alternate` views. The loader reads memory only when a review step actually runs."""
    items = []
    for sheet in sheets.characters:
        items.append(Item(sheet.character, sheet.image, "sheet"))
        view = "sheet" if sheet.source == "library" else "alternate"
        items += [Item(sheet.character, image, view) for image in sheet.alternates]
    step = "memory"
    key = step_key(step=step, embedder=config.embedder.clip, models=models,
                   items=[(item.character, item.image, run.sha(item.image), item.view) for item in items])
    if not run.done(step, key):
        started = time.perf_counter()
        vectors = embedder().images([run.read_image(item.image) for item in items])
        Memory.build(run, config.embedder.clip, items, vectors)
        run.record(step, key, [SIDECAR], time.perf_counter() - started)
    loaded: list[Memory] = []

    def load() -> Memory:
        if not loaded:
            loaded.append(Memory.load(run))
        return loaded[0]

    return load


def _draw_candidates(
    kind: str, item_id: str, prompt: str, run: RunFolder, painter: Callable[[], SDXLPainter], config: Config,
    models: list,
) -> None:
    folder = f"cast/{kind}/{item_id}"
    seeds = [derive_seed(config.seed, "cast", kind, item_id, str(i)) for i in range(config.cast.candidates)]
    step = f"cast/{kind}/{item_id}"
    key = step_key(step=step, prompt=prompt, seeds=seeds, painter=config.painter, models=models,
                   size=[config.cast.width, config.cast.height])
    if run.done(step, key):
        return
    started = time.perf_counter()
    images = painter().sketch(prompt, config.cast.width, config.cast.height, seeds)
    rels = [f"{folder}/{i}.png" for i in range(len(images))]
    for rel, image in zip(rels, images):
        run.write_image(rel, image)
    run.write_model(f"{folder}/candidates.json",
                    Candidates(item=item_id, prompt=prompt, seeds=tuple(seeds), images=tuple(rels)))
    run.record(step, key, [*rels, f"{folder}/candidates.json"], time.perf_counter() - started,
               notes=painter().take_ladder())


def _pick(
    kind: str, item_id: str, purpose: str, run: RunFolder, director: Callable[[], Director], config: Config,
    models: list,
) -> None:
    candidates_rel = f"cast/{kind}/{item_id}/candidates.json"
    candidates = run.read_model(candidates_rel, Candidates)
    count = len(candidates.images)
    seed = derive_seed(config.seed, "pick", kind, item_id)
    step, sheet_rel = f"pick/{kind}/{item_id}", f"cast/{kind}/{item_id}.json"
    key = step_key(step=step, candidates=run.sha(candidates_rel), images=[run.sha(i) for i in candidates.images],
                   purpose=purpose, director=config.director_key(), models=models, seed=seed)
    if run.done(step, key):
        return
    started = time.perf_counter()
    pick = ask_pick(director, "pick", count, {"purpose": purpose}, [run.read_image(rel) for rel in candidates.images],
                    seed)
    chosen = candidates.images[pick.chosen]
    alternates = tuple(rel for i, rel in enumerate(candidates.images) if i != pick.chosen)
    common = {"image": chosen, "prompt": candidates.prompt, "seed": candidates.seeds[pick.chosen],
              "alternates": alternates, "pick": pick}
    if kind == "characters":
        run.write_model(sheet_rel, CharacterSheet(character=item_id, **common))
    else:
        run.write_model(sheet_rel, SettingSheet(setting=item_id, **common))
    run.record(step, key, [sheet_rel], time.perf_counter() - started)


def _copy_library_character(character: Character, entry: castlib.LibraryEntry, library: Path, run: RunFolder) -> None:
    folder, sheet_rel = f"cast/characters/{character.id}", f"cast/characters/{character.id}.json"
    step = f"cast/characters/{character.id}"
    key = step_key(step=step, library=entry.model_dump(mode="json"))
    if run.done(step, key):
        return
    started = time.perf_counter()
    rels = [f"{folder}/library-{n}.png" for n in range(len(entry.images))]
    for rel, path in zip(rels, castlib.image_paths(entry, library)):
        run.write_bytes(rel, path.read_bytes())
    run.write_model(sheet_rel, CharacterSheet(
        character=character.id, image=rels[0], prompt=f"cast library: {entry.name}", seed=0,
        alternates=tuple(rels[1:]), source="library", appearance=entry.description,
    ))
    run.record(step, key, [*rels, sheet_rel], time.perf_counter() - started)


def _purpose_of_character(character: Character) -> str:
    return (f"the reference sheet of {character.name}: {character.appearance}. One character, full body, "
            "plain white background.")


def _purpose_of_setting(setting: Setting) -> str:
    return f"the reference view of a place, {setting.name}: {setting.description}. No people or animals."
