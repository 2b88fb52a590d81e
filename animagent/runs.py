"""The run commands: make a film, resume, rerender one shot, evaluate, verify — each on one run folder.

This module owns what a command does to a run folder before and after the recipe runs: creating or reopening it
(story.txt, config.yaml), the takes a rerender adds, and the re-hash of recorded outputs. The recipe itself is
`Studio.run()` (studio.py); what each stage computes lives in animagent/stages/.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from animagent.artifacts import Film, Script, Takes, slugify
from animagent.config import Config, load_config
from animagent.errors import InputError
from animagent.runfolder import RunFolder
from animagent.stages import Progress, no_progress, plan
from animagent.studio import CONFIG, SCRIPT, STORY, TAKES, Studio, plan_key


def prepare_run(story_path: Path | None, config: Config, out: Path | None, script_path: Path | None = None) -> Path:
    """Create (or reopen, for the same inputs) a run folder holding story.txt and config.yaml.

    With `script_path` the given script is the plan: its story becomes story.txt and planning is skipped.
    """
    script = None
    if script_path is not None:
        if not script_path.is_file():
            raise InputError(f"script file not found: {script_path}")
        script = RunFolder(script_path.parent).read_model(script_path.name, Script)
        story = script.story
    elif story_path is not None:
        story = plan.read_story(story_path, config.limits)
    else:
        raise InputError("give a story file, or --script with a script.json")
    name = (story_path or script_path).stem  # type: ignore[union-attr]
    run_dir = (out or Path("runs") / slugify(name, fallback="film")).resolve()
    run = RunFolder(run_dir)
    config_text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=True)
    if run.exists(STORY):
        if run.path(STORY).read_text(encoding="utf-8") != story:
            raise InputError(f"{run_dir} holds a different story; choose another --out or `animagent resume {run_dir}`")
        if run.exists(CONFIG) and run.path(CONFIG).read_text(encoding="utf-8") != config_text:
            raise InputError(
                f"{run_dir} was made with another config; choose another --out or `animagent resume {run_dir}`"
            )
    with run.lock():
        if script is not None:
            plan.check_script(script)
            if not (run.exists(SCRIPT) and run.manifest.steps.get("plan")):
                run.write_model(SCRIPT, script)
                run.record("plan", plan_key(config, story), [SCRIPT], 0.0)
            elif run.read_model(SCRIPT, Script) != script:  # a new --script for this run: like editing script.json
                run.write_model(SCRIPT, script)
        run.write_text(STORY, story)
        run.write_text(CONFIG, config_text)  # written last: a folder with config.yaml is a complete run folder
    return run_dir


def open_run(run_dir: Path) -> Config:
    """The resolved config a run folder was made with."""
    run = RunFolder(run_dir)
    if not run.exists(CONFIG) or not run.exists(STORY):
        raise InputError(f"{run_dir} is not a run folder (no {CONFIG} or {STORY}); start one with `animagent run`")
    try:
        return Config.model_validate(yaml.safe_load(run.path(CONFIG).read_text(encoding="utf-8")))
    except Exception as exc:  # a hand-edited config.yaml: report it as bad input, never a traceback
        raise InputError(f"{run.path(CONFIG)} is not a valid config: {exc}") from None


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
    run_dir = prepare_run(
        Path(story_path) if story_path is not None else None,
        config,
        Path(out) if out is not None else None,
        Path(script) if script is not None else None,
    )
    return Studio(config, run_dir, progress).run()


def resume(run_dir: str | Path, progress: Progress = no_progress) -> Film:
    config = open_run(Path(run_dir))
    return Studio(config, Path(run_dir), progress).run()


def evaluate_run(run_dir: str | Path, progress: Progress = no_progress) -> Path:
    """Score a finished run (its steps are done, so only the encoders load); returns report.html's path."""
    config = open_run(Path(run_dir))
    studio = Studio(config, Path(run_dir), progress)
    if "assemble" not in studio.run_folder.manifest.steps:
        raise InputError(f"{run_dir} is not finished; finish it with `animagent resume {run_dir}` first")
    with studio.run_folder.lock():
        try:
            script = studio.plan()
            sheets = studio.cast(script)
            keyframes = studio.draw(script, sheets)
            clips = studio.animate(script, keyframes)
            studio.evaluate(script, sheets, keyframes, clips)
        finally:
            studio.close()
    from animagent.stages.evaluate import REPORT

    return studio.run_folder.path(REPORT)


def rerender(run_dir: str | Path, shot_id: str, start: str = "draw", progress: Progress = no_progress) -> Film:
    """A fresh take of one shot from `start` ("draw": keyframe and clip; "animate": clip only), re-assembled.

    A new keyframe has a new context description, which the next shot is drawn with (keyframe iteration), so
    "draw" also redraws the shots after it whose prompts change; "animate" touches this shot's clip only."""
    config = open_run(Path(run_dir))
    studio = Studio(config, Path(run_dir), progress)
    run = studio.run_folder
    if not run.exists(SCRIPT):
        raise InputError(f"{run.root} has no script.json yet; finish planning with `animagent resume {run.root}`")
    shots = [s.id for s in run.read_model(SCRIPT, Script).shots()]
    if shot_id not in shots:
        raise InputError(f"no shot '{shot_id}' in {run.path(SCRIPT)}; shots: {', '.join(shots)}")
    if start not in ("draw", "animate"):
        raise InputError(f"--from must be draw or animate, got '{start}'")
    with run.lock():
        takes = studio.takes()
        counts = {"draw": dict(takes.draw), "animate": dict(takes.animate)}
        counts[start][shot_id] = counts[start].get(shot_id, 0) + 1
        run.write_model(TAKES, Takes(**counts))
    return studio.run()


@dataclass(frozen=True)
class Problem:
    path: str
    step: str
    what: str  # "missing" | "changed"


def verify(run_dir: str | Path) -> list[Problem]:
    """Re-hash every recorded output; list what is missing or no longer matches the manifest."""
    run = RunFolder(Path(run_dir))
    if not run.exists(CONFIG):
        raise InputError(f"{run_dir} is not a run folder (no {CONFIG})")
    problems = []
    for step, record in sorted(run.manifest.steps.items()):
        for rel, sha in record.outputs.items():
            if not run.exists(rel):
                problems.append(Problem(rel, step, "missing"))
            elif run.sha(rel) != sha:
                problems.append(Problem(rel, step, "changed"))
    return problems
