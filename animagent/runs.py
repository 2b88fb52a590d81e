"""The run commands: make a film, resume, rerender one shot, evaluate, verify — each on one run folder.

This module owns what a command does to a run folder before and after the recipe runs: creating or reopening it
(story.txt, config.yaml), the takes a rerender adds, and the re-hash of recorded outputs. The recipe itself is
`Studio.run()` (studio.py); what each stage computes lives in animagent/stages/.
A refused command changes nothing on disk: inputs, limits, the folder given as --out, weights and the director
server are all checked (`preflight`) before the first file is written. A folder is only ever made a run folder
when it is new, empty, or already a run folder; config.yaml never holds a secret (config.recorded).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from animagent import gpu
from animagent.artifacts import Film, Script, Takes, slugify
from animagent.config import Config, load_config, read_recorded, recorded
from animagent.errors import InputError
from animagent.runfolder import LOCK, MANIFEST, TMP_PREFIX, Manifest, RunFolder
from animagent.stages import Progress, no_progress, plan, speak
from animagent.stages.plan import SCRIPT, plan_key
from animagent.studio import CONFIG, STORY, TAKES, Studio, read_takes
from animagent.weights import ensure_present

# What a run folder holds before its config.yaml is written (a run killed while being made): reusable as --out.
_BEING_MADE = {STORY, SCRIPT, MANIFEST, LOCK, CONFIG, "logs"}


def preflight(config: Config) -> None:
    """What a run needs that can be checked in seconds, checked before any work and any file: every model's
    weights (hashed once for real ones), the compiler gpu.compile_animator needs, a reachable director server, and
    for cluster.kind ray an installed Ray and a cluster address that answers."""
    ensure_present(config)
    gpu.check_compile(config)
    if config.director.kind == "openai":
        from animagent.backends.director_openai import check_reachable  # httpx only: no model library

        check_reachable(config.director)
    if config.cluster.kind == "ray":
        from animagent import cluster  # Ray itself is imported inside, and only here

        cluster.check(config)


def _check_out(run_dir: Path) -> None:
    """--out must be a new folder, an empty one, or a run folder (also one killed while being made)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError(f"--out {run_dir} is a file; give a folder (a new or empty one, or a run folder)")
    if not run_dir.is_dir() or ((run_dir / CONFIG).is_file() and (run_dir / STORY).is_file()):
        return
    foreign = sorted(p.name for p in run_dir.iterdir() if p.name not in _BEING_MADE and not p.name.startswith(TMP_PREFIX))
    if foreign:
        listed = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise InputError(f"--out {run_dir} holds files that are not a run's ({listed}); give a new or empty folder, "
                         "or a run folder")


def prepare_run(story_path: Path | None, config: Config, out: Path | None, script_path: Path | None = None) -> Path:
    """Create (or reopen, for the same inputs) a run folder holding story.txt and config.yaml.

    With `script_path` the given script is the plan: its story becomes story.txt and planning is skipped.
    """
    script = None
    if script_path is not None:
        if not script_path.is_file():
            raise InputError(f"script {script_path} is a directory; give a script.json file" if script_path.is_dir()
                             else f"script file not found: {script_path}")
        script = plan.check_script(RunFolder(script_path.parent).read_model(script_path.name, Script), config.limits)
        story = script.story
    elif story_path is not None:
        story = plan.read_story(story_path, config.limits)
    else:
        raise InputError("give a story file, or --script with a script.json")
    name = (story_path or script_path).stem  # type: ignore[union-attr]
    run_dir = (out or Path("runs") / slugify(name, fallback="film")).resolve()
    _check_out(run_dir)
    run = RunFolder(run_dir)
    config_text = recorded(config)
    if run.exists(STORY):
        if run.path(STORY).read_text(encoding="utf-8") != story:
            raise InputError(f"{run_dir} holds a different story; choose another --out or `animagent resume {run_dir}`")
        if run.exists(CONFIG) and run.path(CONFIG).read_text(encoding="utf-8") != config_text:
            raise InputError(
                f"{run_dir} was made with another config; choose another --out or `animagent resume {run_dir}`"
            )
    preflight(config)
    with run.lock():
        if script is not None:
            if not (run.exists(SCRIPT) and run.manifest.steps.get("plan")):
                run.write_model(SCRIPT, script)
                run.record("plan", plan_key(config, story), [SCRIPT], 0.0)
            elif script not in (run.read_model(SCRIPT, Script), speak.uncast(run.read_model(SCRIPT, Script))):
                run.write_model(SCRIPT, script)  # a new --script for this run (not the same one, uncast)
        run.write_text(STORY, story)
        run.write_text(CONFIG, config_text)  # written last: a folder with config.yaml is a complete run folder
    return run_dir


def open_run(run_dir: Path) -> Config:
    """The resolved config a run folder was made with; InputError (one line, nothing created) for a path that is
    not a run folder, or whose config.yaml, story.txt or script.json no longer holds what a run can use."""
    if not run_dir.is_dir():
        raise InputError(f"{run_dir} is a file, not a run folder" if run_dir.exists() else f"no run folder at {run_dir}")
    run = RunFolder(run_dir)
    if not run.exists(CONFIG) or not run.exists(STORY):
        raise InputError(f"{run_dir} is not a run folder (no {CONFIG} or {STORY}); start one with `animagent run`")
    try:
        config = read_recorded(run.path(CONFIG).read_text(encoding="utf-8"), str(run.path(CONFIG)))
    except UnicodeDecodeError:
        raise InputError(f"{run.path(CONFIG)} is not UTF-8 text; it was edited or damaged") from None
    plan.read_story(run.path(STORY), config.limits)
    if run.exists(SCRIPT) and "plan" in run.manifest.steps:  # the user's to edit: held to the limits
        plan.check_script(run.read_model(SCRIPT, Script), config.limits)
    return config


def make_film(
    story_path: str | Path | None,
    profile: str = "default",
    out: str | Path | None = None,
    config_file: str | Path | None = None,
    overrides: tuple[str, ...] | list[str] = (),
    seed: int | None = None,
    script: str | Path | None = None,
    progress: Progress = no_progress,
) -> Film:
    """Render a story (or, with `script`, a given script.json) into a film in the run folder `out`."""
    config = load_config(profile, config_file, overrides, seed)
    run_dir = prepare_run(  # checks everything (preflight) before the folder is made
        Path(story_path) if story_path is not None else None,
        config,
        Path(out) if out is not None else None,
        Path(script) if script is not None else None,
    )
    return Studio(config, run_dir, progress).run()


def resume(run_dir: str | Path, progress: Progress = no_progress) -> Film:
    config = open_run(Path(run_dir))
    preflight(config)
    return Studio(config, Path(run_dir), progress).run()


def evaluate_run(run_dir: str | Path, progress: Progress = no_progress) -> Path:
    """Score a finished run (its steps are done, so only the encoders load); returns report.html's path."""
    config = open_run(Path(run_dir))
    studio = Studio(config, Path(run_dir), progress)
    if "assemble" not in studio.run_folder.manifest.steps:
        raise InputError(f"{run_dir} is not finished; finish it with `animagent resume {run_dir}` first")
    preflight(config)
    with studio.run_folder.lock():
        try:
            studio.evaluate(*studio.artifacts())
        finally:
            studio.close()
    from animagent.stages.evaluate import REPORT

    return studio.run_folder.path(REPORT)


def rerender(run_dir: str | Path, shot_id: str, start: str = "draw", progress: Progress = no_progress) -> Film:
    """A fresh take of one shot from `start` ("draw": keyframe and clip; "animate": clip only), re-assembled.

    A new keyframe has a new context description, which the next shot is drawn with (keyframe iteration), so
    "draw" also redraws the shots after it whose prompts change; "animate" touches this shot's clip only."""
    config = open_run(Path(run_dir))
    run = RunFolder(Path(run_dir))
    if not run.exists(SCRIPT):
        raise InputError(f"{run.root} has no script.json yet; finish planning with `animagent resume {run.root}`")
    shots = [s.id for s in run.read_model(SCRIPT, Script).shots()]
    if shot_id not in shots:
        raise InputError(f"no shot '{shot_id}' in {run.path(SCRIPT)}; shots: {', '.join(shots)}")
    if start not in ("draw", "animate"):
        raise InputError(f"--from must be draw or animate, got '{start}'")
    preflight(config)
    with run.lock():
        takes = read_takes(run)
        counts = {"draw": dict(takes.draw), "animate": dict(takes.animate)}
        counts[start][shot_id] = counts[start].get(shot_id, 0) + 1
        run.write_model(TAKES, Takes(**counts))
    return Studio(config, Path(run_dir), progress).run()  # its stages see the new take


@dataclass(frozen=True)
class Problem:
    path: str
    step: str
    what: str  # "missing" | "changed" | "not recorded" (path is then the step the recipe still needs)


def needed_steps(script: Script, config: Config) -> list[str]:
    """The steps whose outputs make up a finished film of `script`: the plan, each character's and setting's
    sheet, each shot's chosen keyframe (review/), speech when assemble.voice is on (speak/) and chosen clip
    (choose/), the film, and the scorecard when eval.auto is on. (The step names the stages record; a test holds
    the two together.)"""
    return [
        "plan",
        *(f"cast/characters/{c.id}" for c in script.characters),
        *(f"cast/settings/{s.id}" for s in script.settings),
        *(f"review/{shot.id}" for shot in script.shots()),
        *(f"speak/{shot.id}" for shot in script.shots() if config.assemble.voice),
        *(f"choose/{shot.id}" for shot in script.shots()),
        "assemble",
        *(["eval"] if config.eval.auto else []),
    ]


def verify(run_dir: str | Path) -> list[Problem]:
    """Re-hash every recorded output; list what is missing or no longer matches the manifest, and each step a
    finished film needs that the manifest does not record. InputError when there is nothing to verify."""
    config = open_run(Path(run_dir))
    run = RunFolder(Path(run_dir))
    path = run.path(MANIFEST)
    if not path.is_file():
        raise InputError(f"nothing to verify: {path} is missing (no step has finished)")
    try:
        manifest = Manifest.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise InputError(f"nothing to verify: {path} is not a manifest ({exc.errors()[0]['msg']}); "
                         f"`animagent resume {run_dir}` redoes every step") from None
    if not manifest.steps:
        raise InputError(f"nothing to verify: {path} records no step")
    problems = []
    if run.exists(SCRIPT):
        script = run.read_model(SCRIPT, Script)
        problems += [Problem(step, step, "not recorded") for step in needed_steps(script, config)
                     if step not in manifest.steps]
    else:
        problems.append(Problem(SCRIPT, "plan", "missing"))
    for step, record in sorted(manifest.steps.items()):
        for rel, sha in record.outputs.items():
            if not run.exists(rel):
                problems.append(Problem(rel, step, "missing"))
            elif run.sha(rel) != sha:
                problems.append(Problem(rel, step, "changed"))
    return problems
