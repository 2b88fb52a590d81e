"""The ViStoryBench runner: render every story of the ViStory dataset and lay the shots out for its evaluator.

Input, the published dataset (huggingface.co/datasets/ViStoryBench/ViStoryBench, read by the benchmark's
`vistorybench/dataset_loader/dataset_load.py`): DATASET_DIR is the `ViStory` folder, holding one folder per story
named by its number (`01`, `02`, ...), each with `story.json` and `image/<character key>/*.jpg` reference images.
`story.json` has `Story_type` {en, ch}, `Characters` {key: {name_en, prompt_en, tag, ...}} and `Shots`, a list of
{index, Setting Description, Plot Correspondence, Shot Perspective Design, Characters Appearing (newer copies:
On-Stage Characters), Static Shot Description}, each text given as {en, ch}. English is used.

Output, what the evaluator's `vistorybench/dataset_loader/read_outputs.py` reads:
`OUT/outputs/animagent/base/en/<YYYYMMDD-HHMMSS>/<story id>/shots/shot_XX.png`, one keyframe per benchmark shot in
shot order (the evaluator natsorts the files and takes shot `index` i from position i-1). Run folders, one per
story, are in `OUT/runs/<story id>` and are reused by a second call (every stage step is keyed).

Each story becomes a Script directly, one shot per benchmark shot, handed to the run as its plan
(`prepare_run(script_path=...)`, as `animagent run --script` does): the plan stage is skipped because the
evaluator scores shot i against the benchmark's shot i, so the shot list must not be re-planned. The director
only picks the style class (the plan stage's `style` task). Each character's first reference image (sorted by
name, as the benchmark's loader does) replaces its painted cast sheet for the draw stage; until the cast library
(issue 4) exists, references are copied into the run folder as `references/<character id>.png`. Layout boxes are
not in the dataset: the characters of a shot stand in equal columns, left to right in the listed order.
This module owns the conversion and the output layout; rendering is the studio's stages.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from pathlib import Path

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from animagent.artifacts import (
    Box,
    Camera,
    Cast,
    Character,
    CharacterSheet,
    Keyframe,
    Placement,
    Scene,
    Script,
    Setting,
    Shot,
    Style,
    slugify,
)
from animagent.config import Config, load_config
from animagent.errors import InputError
from animagent.runfolder import RunFolder, derive_seed
from animagent.studio import Studio

log = logging.getLogger(__name__)

METHOD, MODE, LANGUAGE = "animagent", "base", "en"  # the evaluator's --method, mode and --language folders
REFERENCE_SUFFIXES = (".jpg", ".jpeg", ".png")
MOTION = "gentle"  # the dataset describes static shots; clips get the animator's calm setting


class _Text(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    en: str


class _Names(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    en: list[str]


class VistoryCharacter(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    name_en: str
    prompt_en: str
    tag: str = ""


class VistoryShot(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    index: int = Field(ge=1)
    setting: _Text = Field(validation_alias="Setting Description")
    plot: _Text = Field(validation_alias="Plot Correspondence")
    perspective: _Text = Field(validation_alias="Shot Perspective Design")
    characters: _Names = Field(validation_alias=AliasChoices("Characters Appearing", "On-Stage Characters"))
    static: _Text = Field(validation_alias="Static Shot Description")


class VistoryStory(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    story_type: _Text = Field(validation_alias="Story_type")
    characters: dict[str, VistoryCharacter] = Field(validation_alias="Characters")
    shots: list[VistoryShot] = Field(validation_alias="Shots", min_length=1)


def story_ids(dataset_dir: Path) -> list[str]:
    """The story folders of a ViStory dataset folder, in numeric order."""
    if not dataset_dir.is_dir():
        raise InputError(f"dataset folder not found: {dataset_dir}")
    ids = sorted((p.name for p in dataset_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=int)
    if not ids:
        hint = f"; did you mean {dataset_dir / 'ViStory'}?" if (dataset_dir / "ViStory").is_dir() else ""
        raise InputError(f"{dataset_dir} holds no numbered story folders (01, 02, ...){hint}")
    return ids


def read_story(story_dir: Path) -> VistoryStory:
    path = story_dir / "story.json"
    if not path.is_file():
        raise InputError(f"{story_dir} has no story.json")
    try:
        # utf-8-sig: the benchmark's own loader reads it so (some files start with a byte-order mark)
        return VistoryStory.model_validate_json(path.read_text(encoding="utf-8-sig"))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise InputError(f"{path} is not a ViStoryBench story: {where}: {err['msg']}") from None


def story_text(story: VistoryStory) -> str:
    """The story as prose for the director: its type and each shot's plot, in order."""
    return f"{story.story_type.en}.\n\n" + "\n".join(shot.plot.en.strip() for shot in story.shots) + "\n"


def to_script(story_id: str, story: VistoryStory, style: Style, config: Config) -> tuple[Script, dict[str, str]]:
    """The Script with one shot `shot_XX` per benchmark shot, and the map character key -> character id."""
    ids: dict[str, str] = {}
    for n, key in enumerate(story.characters, start=1):
        base = slugify(story.characters[key].name_en or key, fallback=f"c{n}")
        candidate, k = base, 2
        while candidate in ids.values():
            candidate, k = f"{base}-{k}", k + 1
        ids[key] = candidate
    characters = tuple(
        Character(id=ids[key], name=_cut(c.name_en or key, 80, f"story {story_id} name"),
                  appearance=_cut(c.prompt_en or c.name_en or key, 600, f"story {story_id} {key}"))
        for key, c in story.characters.items()
    )
    setting_ids: dict[str, str] = {}
    for shot in story.shots:
        setting_ids.setdefault(shot.setting.en.strip(), f"setting{len(setting_ids) + 1:02d}")
    settings = tuple(
        Setting(id=sid, name=_cut(text or sid, 80, "setting name"), description=_cut(text or sid, 600, "setting"))
        for text, sid in setting_ids.items()
    )
    scenes: list[list[Shot]] = []
    for shot in story.shots:
        present = []
        for key in shot.characters.en:
            if key not in ids:
                log.warning("story %s shot %d names '%s', who is not among its characters; left out",
                            story_id, shot.index, key)
            elif ids[key] not in present:
                present.append(ids[key])
        setting = setting_ids[shot.setting.en.strip()]
        converted = Shot(
            id=f"shot_{shot.index:02d}",
            narration=_cut(shot.plot.en.strip() or "...", 600, f"story {story_id} shot {shot.index} plot"),
            description=_cut(f"{shot.perspective.en.strip()}. {shot.static.en.strip()}", 600,
                             f"story {story_id} shot {shot.index} description"),
            characters=tuple(Placement(character=cid, box=box) for cid, box in zip(present, _columns(len(present)))),
            setting=setting,
            camera=camera(shot.perspective.en),
            motion=MOTION,
            duration_s=config.limits.min_shot_seconds,
        )
        if scenes and scenes[-1][-1].setting == setting:
            scenes[-1].append(converted)
        else:
            scenes.append([converted])
    script = Script(
        title=_cut(f"ViStory {story_id}: {story.story_type.en}", 200, "title"),
        story=story_text(story),
        style=style,
        characters=characters,
        settings=settings,
        scenes=tuple(Scene(id=f"scene{n:02d}", shots=tuple(shots)) for n, shots in enumerate(scenes, start=1)),
    )
    return script, ids


def camera(perspective: str) -> Camera:
    """The benchmark's free-text shot perspective mapped onto the closed camera set (first match wins)."""
    text = perspective.lower()
    for words, choice in (
        (("over the shoulder", "over-the-shoulder"), "over the shoulder"),
        (("close",), "close-up"),
        (("low angle", "low-angle", "worm"), "low angle"),
        (("high angle", "high-angle", "bird", "overhead", "top-down", "aerial"), "high angle"),
        (("wide", "long shot", "full shot", "establishing", "panoram"), "wide shot"),
    ):
        if any(word in text for word in words):
            return choice  # type: ignore[return-value]
    return "medium shot"


def run_vistory(
    dataset_dir: str | Path, out_dir: str | Path, profile: str = "default", overrides: list[str] | tuple[str, ...] = ()
) -> list[Path]:
    """Render every story in DATASET_DIR; returns each story's output folder in the evaluator's layout."""
    from animagent.runs import prepare_run

    dataset_dir, out_dir = Path(dataset_dir).resolve(), Path(out_dir).resolve()
    config = load_config(profile, overrides=overrides)
    stories = {sid: read_story(dataset_dir / sid) for sid in story_ids(dataset_dir)}
    styles = _styles(stories, config, out_dir / "logs")
    timestamp = time.strftime("%Y%m%d-%H%M%S")
    written = []
    for n, (sid, story) in enumerate(stories.items(), start=1):
        log.info("story %s (%d of %d): %d shots", sid, n, len(stories), len(story.shots))
        script, ids = to_script(sid, story, styles[sid], config)
        script_path = out_dir / "scripts" / f"{sid}.json"
        script_path.parent.mkdir(parents=True, exist_ok=True)
        script_path.write_text(script.model_dump_json(indent=2) + "\n", encoding="utf-8")
        run_dir = prepare_run(None, config, out_dir / "runs" / sid, script_path=script_path)
        ReferenceStudio(config, run_dir, dataset_dir / sid / "image", ids).run()
        run = RunFolder(run_dir)
        keyframes = [run.read_model(f"keyframes/{shot.id}.json", Keyframe) for shot in script.shots()]
        shots_dir = out_dir / "outputs" / METHOD / MODE / LANGUAGE / timestamp / sid / "shots"
        shots_dir.mkdir(parents=True, exist_ok=True)
        for keyframe in keyframes:
            shutil.copyfile(run.path(keyframe.image), shots_dir / f"{keyframe.shot}.png")
        written.append(shots_dir.parent)
    return written


class ReferenceStudio(Studio):
    """Studio.run() with the benchmark's reference images in place of the painted sheets of the characters it has
    images for (the settings stay painted)."""

    def __init__(self, config: Config, run_dir: Path, image_dir: Path, ids: dict[str, str]):
        super().__init__(config, run_dir)
        self.image_dir, self.ids = image_dir, ids

    def cast(self, script: Script) -> Cast:
        painted = super().cast(script)
        references = _write_references(self.run_folder, self.image_dir, self.ids)
        return Cast(characters=tuple(references.get(s.character, s) for s in painted.characters),
                    settings=painted.settings)


def _styles(stories: dict[str, VistoryStory], config: Config, log_dir: Path) -> dict[str, Style]:
    """One style class per story from the director's `style` task (the plan stage's), director loaded once."""
    from animagent.models import build
    from animagent.tasks import StyleDecision

    director = build("director", config, log_dir)
    try:
        styles = {}
        for sid, story in stories.items():
            decision = director.ask("style", {"story": story_text(story)}, StyleDecision,
                                    seed=derive_seed(config.seed, "vistory", sid, "style"))
            styles[sid] = Style(style_class=decision.style_class,
                                description=decision.description.strip() or decision.style_class)
        return styles
    finally:
        director.close()


def _write_references(run: RunFolder, image_dir: Path, ids: dict[str, str]) -> dict[str, CharacterSheet]:
    """Each character's first reference image (sorted by file name) as `references/<id>.png` and its sheet."""
    from PIL import Image

    sheets = {}
    for key, cid in ids.items():
        folder = image_dir / key
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in REFERENCE_SUFFIXES) if folder.is_dir() else []
        if not files:
            log.warning("no reference image for '%s' in %s; its painted cast sheet is used", key, folder)
            continue
        rel = f"references/{cid}.png"
        with Image.open(files[0]) as image:
            run.write_image(rel, image.convert("RGB"))
        sheets[cid] = CharacterSheet(character=cid, image=rel, prompt=f"ViStoryBench reference {files[0].name}", seed=0)
    return sheets


def _columns(count: int) -> list[Box]:
    """`count` equal side-by-side boxes over the lower 85% of the frame, with small gutters."""
    return [Box(x0=round(i / count + 0.02, 3), y0=0.15, x1=round((i + 1) / count - 0.02, 3), y1=0.95)
            for i in range(count)]


def _cut(text: str, limit: int, what: str) -> str:
    """`text` stripped, cut at a word boundary to `limit` characters (logged when it is cut)."""
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) <= limit:
        return text
    log.warning("%s is %d characters; cut to the limit of %d", what, len(text), limit)
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut or text[:limit]
