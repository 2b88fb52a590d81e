"""Stage 2, cast: a reference sheet per character (full body, plain background) and per setting (no people).

Sheets are what the draw stage hands to IP-Adapter, so every character looks the same in every shot. Two
passes, stage-major: the painter draws `cast.candidates` images per item in one batch (step `cast/<kind>/<id>`; a
task each, `sketch`, which Models.map may hand to the cluster's GPU workers),
then the director picks one of each item's candidates by index (step `pick/<kind>/<id>`; with one candidate
there is nothing to ask). A character whose name matches a cast library entry (castlib.py) is not drawn: the
entry's images are copied into the run in its `cast/characters/<id>` step, the first one as the sheet.
`remember` embeds every sheet's chosen image and alternates into the run's memory (step `memory`); the studio
calls it with the sheets the shots are drawn with. This module owns the sheet prompts and these steps; the
painter draws, the director picks, the embedder embeds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from animagent import castlib
from animagent.artifacts import Candidates, Cast, Character, CharacterSheet, Script, Setting, SettingSheet
from animagent.memory import SIDECAR, Item, Memory
from animagent.runfolder import RunFolder
from animagent.stages import Context, Step, ask_pick

if TYPE_CHECKING:
    from PIL.Image import Image

    from animagent.models import Models


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


def cast(ctx: Context, script: Script) -> Cast:
    library = castlib.library_root(ctx.config.cast.library)
    jobs = [("characters", c.id, character_prompt(script, c), _purpose_of_character(c), castlib.find(c.name, library))
            for c in script.characters]
    jobs += [("settings", s.id, setting_prompt(script, s), _purpose_of_setting(s), None) for s in script.settings]
    total = 2 * len(jobs)

    # 1. candidates: the painter draws every item's (a library character is copied instead), one task per item
    #    (Models.map: here one by one as consumed, on a cluster all at once on the GPU workers)
    steps = {(kind, item_id): _sketch_step(ctx, kind, item_id, prompt)
             for kind, item_id, prompt, _, entry in jobs if entry is None}
    size = (ctx.config.cast.width, ctx.config.cast.height)
    sketches = ctx.models.map(sketch, [(prompt, *size, steps[kind, item_id][1]) for kind, item_id, prompt, _, entry
                                       in jobs if entry is None and steps[kind, item_id][0].todo])
    for n, (kind, item_id, prompt, _, entry) in enumerate(jobs):
        ctx.progress("cast", n, total)
        if entry is not None:
            _copy_library_character(ctx, script.character(item_id), entry, library)
        else:
            _draw_candidates(ctx, kind, item_id, prompt, *steps[kind, item_id], sketches)

    # 2. picks: the director chooses among each drawn item's candidates
    for n, (kind, item_id, _, purpose, entry) in enumerate(jobs):
        ctx.progress("cast", len(jobs) + n, total)
        if entry is None:
            _pick(ctx, kind, item_id, purpose)
    ctx.progress("cast", total, total)
    return read_cast(ctx.run, script)


def read_cast(run: RunFolder, script: Script) -> Cast:
    """The chosen sheets of a cast stage that has run."""
    return Cast(
        characters=tuple(run.read_model(f"cast/characters/{c.id}.json", CharacterSheet) for c in script.characters),
        settings=tuple(run.read_model(f"cast/settings/{s.id}.json", SettingSheet) for s in script.settings),
    )


def remember(ctx: Context, cast: Cast) -> None:
    """Embed each character's chosen image and alternates into the run's memory (step `memory`), which the review
    scores identity against (Memory.load). A library character's images are all its own references (view
    `sheet`); a drawn character's other candidates are `alternate` views."""
    run, config = ctx.run, ctx.config
    items = []
    for sheet in cast.characters:
        items.append(Item(sheet.character, sheet.image, "sheet"))
        view = "sheet" if sheet.source == "library" else "alternate"
        items += [Item(sheet.character, image, view) for image in sheet.alternates]
    step = ctx.step("memory", embedder=config.embedder.clip, models=ctx.models.ids("embedder"),
                    items=[(item.character, item.image, run.sha(item.image), item.view) for item in items])
    if step.todo:
        vectors = ctx.models.get("embedder").images([run.read_image(item.image) for item in items])
        Memory.build(run, config.embedder.clip, items, vectors)
        step.record([SIDECAR])


def _sketch_step(ctx: Context, kind: str, item_id: str, prompt: str) -> tuple[Step, list[int]]:
    config = ctx.config
    seeds = [ctx.seed("cast", kind, item_id, str(i)) for i in range(config.cast.candidates)]
    step = ctx.step(f"cast/{kind}/{item_id}", prompt=prompt, seeds=seeds, painter=config.painter,
                    models=ctx.models.ids("painter"), size=[config.cast.width, config.cast.height])
    return step, seeds


def sketch(models: Models, prompt: str, width: int, height: int, seeds: list[int]) -> tuple[list[Image], list[str]]:
    """A task (Models.map): one item's candidate sheets, and the out-of-memory rungs the painter took."""
    painter = models.get("painter")
    return painter.sketch(prompt, width, height, seeds), painter.take_ladder()


def _draw_candidates(ctx: Context, kind: str, item_id: str, prompt: str, step: Step, seeds: list[int],
                     sketches: Iterator[tuple[list[Image], list[str]]]) -> None:
    """Write the next of `sketches` as this item's candidates, when its step is to do."""
    if not step.todo:
        return
    run = ctx.run
    folder = f"cast/{kind}/{item_id}"
    step.started = time.perf_counter()  # the item's own share of the stage's time, its sketches included
    images, ladder = next(sketches)
    rels = [f"{folder}/{i}.png" for i in range(len(images))]
    for rel, image in zip(rels, images):
        run.write_image(rel, image)
    run.write_model(f"{folder}/candidates.json",
                    Candidates(item=item_id, prompt=prompt, seeds=tuple(seeds), images=tuple(rels)))
    step.record([*rels, f"{folder}/candidates.json"], notes=ladder)


def _pick(ctx: Context, kind: str, item_id: str, purpose: str) -> None:
    run = ctx.run
    candidates_rel = f"cast/{kind}/{item_id}/candidates.json"
    candidates = run.read_model(candidates_rel, Candidates)
    count = len(candidates.images)
    seed = ctx.seed("pick", kind, item_id)
    sheet_rel = f"cast/{kind}/{item_id}.json"
    step = ctx.step(f"pick/{kind}/{item_id}", candidates=run.sha(candidates_rel),
                    images=[run.sha(i) for i in candidates.images], purpose=purpose,
                    director=ctx.config.director_key(), models=ctx.models.ids("director"), seed=seed)
    if not step.todo:
        return
    pick = ask_pick(ctx, "pick", count, {"purpose": purpose}, [run.read_image(rel) for rel in candidates.images],
                    seed)
    chosen = candidates.images[pick.chosen]
    alternates = tuple(rel for i, rel in enumerate(candidates.images) if i != pick.chosen)
    common = {"image": chosen, "prompt": candidates.prompt, "seed": candidates.seeds[pick.chosen],
              "alternates": alternates, "pick": pick}
    if kind == "characters":
        run.write_model(sheet_rel, CharacterSheet(character=item_id, **common))
    else:
        run.write_model(sheet_rel, SettingSheet(setting=item_id, **common))
    step.record([sheet_rel])


def _copy_library_character(ctx: Context, character: Character, entry: castlib.LibraryEntry, library: Path) -> None:
    run = ctx.run
    folder, sheet_rel = f"cast/characters/{character.id}", f"cast/characters/{character.id}.json"
    # The entry's voice is the speak stage's (recorded on first casting): it changes nothing drawn here.
    step = ctx.step(f"cast/characters/{character.id}", library=entry.model_dump(mode="json", exclude={"voice"}))
    if not step.todo:
        return
    rels = [f"{folder}/library-{n}.png" for n in range(len(entry.images))]
    for rel, path in zip(rels, castlib.image_paths(entry, library)):
        run.write_bytes(rel, path.read_bytes())
    run.write_model(sheet_rel, CharacterSheet(
        character=character.id, image=rels[0], prompt=f"cast library: {entry.name}", seed=0,
        alternates=tuple(rels[1:]), source="library", appearance=entry.description,
    ))
    step.record([*rels, sheet_rel])


def _purpose_of_character(character: Character) -> str:
    return (f"the reference sheet of {character.name}: {character.appearance}. One character, full body, "
            "plain white background.")


def _purpose_of_setting(setting: Setting) -> str:
    return f"the reference view of a place, {setting.name}: {setting.description}. No people or animals."
