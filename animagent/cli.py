"""The command line: typer commands, rich progress and logging, and the mapping of errors to exit codes.

This is the only module that presents anything. Every command ends in one of the documented exit codes
(errors.py): expected failures print one line; an unexpected one prints one line with the log path that
holds its traceback. Ctrl-C exits 130 and the run folder stays resumable.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import traceback
import warnings
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from animagent.errors import AnimagentError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Story in, animated film out, on local open models.")
weights_app = typer.Typer(no_args_is_help=True, help="Fetch real weights or write tiny random ones.")
app.add_typer(weights_app, name="weights")
director_app = typer.Typer(no_args_is_help=True, help="Serve the director model for runs to share.")
app.add_typer(director_app, name="director")
cast_app = typer.Typer(no_args_is_help=True, help="The cast library: characters kept across stories.")
app.add_typer(cast_app, name="cast")
bench_app = typer.Typer(no_args_is_help=True, help="Render public benchmarks for their official evaluators.")
app.add_typer(bench_app, name="bench")

err = Console(stderr=True)
out = Console()
log = logging.getLogger("animagent")

ProfileOpt = typer.Option("default", "--profile", "-p", help="profile in configs/: tiny, default, lowvram, fast")
ConfigOpt = typer.Option(None, "--config", "-c", help="YAML file merged over the profile")
SetOpt = typer.Option([], "--set", help="override a config key, e.g. --set painter.steps=20 (repeatable)")
OutOpt = typer.Option(None, "--out", "-o", help="run folder (default runs/<story name>)")
SeedOpt = typer.Option(None, "--seed", help="run seed (default from the config)")
DirOpt = typer.Option(None, "--dir", help="weights root (default $ANIMAGENT_WEIGHTS, else ./weights)")


def main() -> None:
    app()


def _setup_logging(log_file: Path | None) -> None:
    # The libraries' own progress bars and advice would interleave with ours; their warnings go to the log.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    logging.captureWarnings(True)
    warnings.simplefilter("default")
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(logging.INFO)
    console = RichHandler(console=err, show_path=False, level=logging.WARNING)
    console.addFilter(lambda record: record.name.startswith("animagent"))
    root.addHandler(console)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    for noisy in ("diffusers", "transformers", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def _guard(action: Callable[[], None], run_dir: Callable[[], Path | None] = lambda: None) -> None:
    """Run a command body; map every outcome to a documented exit code and one line on stderr."""
    try:
        action()
    except typer.Exit:
        raise
    except AnimagentError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        where = run_dir()
        hint = f"; continue with: animagent resume {where}" if where else ""
        err.print(f"interrupted{hint}", soft_wrap=True)
        raise typer.Exit(130) from None
    except Exception:  # a bug: keep the traceback in a log file, show one line
        where = run_dir()
        log_path = (where / "logs" / "crash.log") if where else Path(tempfile.gettempdir()) / "animagent-crash.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(traceback.format_exc(), encoding="utf-8")
        hint = f"; after a fix, continue with: animagent resume {where}" if where else ""
        err.print(f"internal error: {sys.exc_info()[1]!r} (traceback in {log_path}){hint}", highlight=False,
                  soft_wrap=True)
        raise typer.Exit(1) from None


class _StageBars:
    """A rich progress bar per stage, fed by the stages' progress(stage, done, total) calls."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("{task.description:<9}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=err, transient=False,
        )
        self.tasks: dict[str, int] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=total)
        self.progress.update(self.tasks[stage], completed=done, total=total)


def _render(make: Callable[[Callable], object], run_dir: Path) -> object:
    # Runs never contact a hub: backends also pass local_files_only=True.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _setup_logging(run_dir / "logs" / "animagent.log")
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()  # model loading bars would tear through ours
    transformers.utils.logging.disable_progress_bar()
    bars = _StageBars()
    with bars.progress:
        return make(bars)


@app.command()
def run(
    story: Optional[Path] = typer.Argument(None, help="story text file (UTF-8, at most 100 KB)"),
    profile: str = ProfileOpt,
    config: Optional[Path] = ConfigOpt,
    set_: list[str] = SetOpt,
    out_dir: Optional[Path] = OutOpt,
    seed: Optional[int] = SeedOpt,
    script: Optional[Path] = typer.Option(None, "--script", help="render this script.json; skips planning"),
) -> None:
    """Render STORY into a film: plan, cast, draw, animate, assemble."""
    state: dict[str, Path] = {}

    def body() -> None:
        from animagent.config import load_config
        from animagent.runs import prepare_run
        from animagent.studio import Studio

        cfg = load_config(profile, config, set_, seed)
        state["run"] = prepare_run(story, cfg, out_dir, script)
        film = _render(lambda bars: Studio(cfg, state["run"], bars).run(), state["run"])
        out.print(str(Path(film.run_dir) / film.video))

    _guard(body, lambda: state.get("run"))


@app.command("plan")
def plan_cmd(
    story: Path = typer.Argument(..., help="story text file"),
    profile: str = ProfileOpt,
    config: Optional[Path] = ConfigOpt,
    set_: list[str] = SetOpt,
    out_dir: Optional[Path] = OutOpt,
    seed: Optional[int] = SeedOpt,
) -> None:
    """Plan STORY into script.json and stop (edit it, then `animagent resume RUN`)."""
    state: dict[str, Path] = {}

    def body() -> None:
        from animagent.config import load_config
        from animagent.runs import prepare_run
        from animagent.studio import SCRIPT, Studio

        cfg = load_config(profile, config, set_, seed)
        state["run"] = prepare_run(story, cfg, out_dir)

        def make(bars):
            studio = Studio(cfg, state["run"], bars)
            with studio.run_folder.lock():
                try:
                    return studio.plan()
                finally:
                    studio.close()

        _render(make, state["run"])
        out.print(str(state["run"] / SCRIPT))

    _guard(body, lambda: state.get("run"))


@app.command()
def resume(run_dir: Path = typer.Argument(..., help="run folder made by `animagent run` or `plan`")) -> None:
    """Finish RUN without redoing finished work."""

    def body() -> None:
        from animagent.runs import resume as resume_run

        film = _render(lambda bars: resume_run(run_dir, bars), run_dir.resolve())
        out.print(str(Path(film.run_dir) / film.video))

    _guard(body, lambda: run_dir.resolve() if run_dir.is_dir() else None)


@app.command()
def rerender(
    run_dir: Path = typer.Argument(..., help="run folder"),
    shot: str = typer.Option(..., "--shot", help="shot id, e.g. s02_k1"),
    start: str = typer.Option("draw", "--from", help="draw (new keyframe and clip) or animate (new clip only)"),
) -> None:
    """Redo one shot with a fresh take and re-assemble the film."""

    def body() -> None:
        from animagent.runs import rerender as rerender_run

        film = _render(lambda bars: rerender_run(run_dir, shot, start, bars), run_dir.resolve())
        out.print(str(Path(film.run_dir) / film.video))

    _guard(body, lambda: run_dir.resolve() if run_dir.is_dir() else None)


@app.command()
def verify(run_dir: Path = typer.Argument(..., help="run folder")) -> None:
    """Re-hash every recorded output of RUN; exit 2 when something is missing or changed."""

    def body() -> None:
        from animagent.runs import verify as verify_run

        problems = verify_run(run_dir)
        for p in problems:
            out.print(f"{p.what:<8} {p.path}  (step {p.step})", highlight=False)
        if problems:
            err.print(f"{len(problems)} output(s) missing or changed; `animagent resume {run_dir}` redoes them "
                      "(an edited script.json is kept as it is)", soft_wrap=True)
            raise typer.Exit(2)
        out.print(f"{run_dir}: every recorded output verifies")

    _guard(body)


@app.command("eval")
def eval_cmd(run_dir: Path = typer.Argument(..., help="a finished run folder")) -> None:
    """Score RUN (CLIP-T, identity, style and clip consistency): scorecard.json and report.html."""

    def body() -> None:
        from animagent.runs import evaluate_run

        report = _render(lambda bars: evaluate_run(run_dir, bars), run_dir.resolve())
        out.print(str(report))

    _guard(body, lambda: run_dir.resolve() if run_dir.is_dir() else None)


@app.command()
def studio(
    run_dir: Path = typer.Argument(..., help="run folder"),
    port: int = typer.Option(8765, "--port", help="port on 127.0.0.1"),
) -> None:
    """Serve RUN's review page on 127.0.0.1: watch it render, pick another candidate, edit a shot, redo it."""

    def body() -> None:
        from animagent.web import serve

        _setup_logging(None)

        def ready(url: str) -> None:
            out.print(f"review page of {run_dir} at {url}", highlight=False, soft_wrap=True)
            out.print("Ctrl-C stops it.")

        serve(run_dir, port, ready)

    _guard(body)


@cast_app.command("add")
def cast_add(
    name: str = typer.Argument(..., help="character name, matched against stories' characters"),
    images: list[Path] = typer.Argument(..., help="one or more reference images"),
    description: Optional[str] = typer.Option(None, "--description", help="fixed appearance text"),
) -> None:
    """Add (or replace) a character in the cast library."""

    def body() -> None:
        from animagent import castlib

        entry = castlib.add(name, images, description)
        out.print(f"{entry.name}: {len(entry.images)} image(s) in {castlib.library_root() / entry.id}")

    _guard(body)


@cast_app.command("list")
def cast_list() -> None:
    """List the characters in the cast library."""

    def body() -> None:
        from animagent import castlib

        for entry in castlib.entries():
            out.print(f"{entry.name:<24} {len(entry.images)} image(s)  {entry.description or ''}", highlight=False)

    _guard(body)


@cast_app.command("remove")
def cast_remove(name: str = typer.Argument(..., help="character name")) -> None:
    """Remove a character from the cast library."""

    def body() -> None:
        from animagent import castlib

        entry = castlib.remove(name)
        out.print(f"removed {entry.name}")

    _guard(body)


@bench_app.command("vistory")
def bench_vistory(
    dataset_dir: Path = typer.Argument(..., help="ViStoryBench's ViStory/ folder"),
    out_dir: Path = typer.Option(..., "--out", "-o", help="output folder (runs and the evaluator's layout)"),
    profile: str = ProfileOpt,
    set_: list[str] = SetOpt,
) -> None:
    """Render every ViStoryBench story; outputs land where its official evaluator reads them."""

    def body() -> None:
        from animagent.bench_vistory import run_vistory

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        _setup_logging(out_dir / "logs" / "animagent.log")
        for folder in run_vistory(dataset_dir, out_dir, profile, set_):
            out.print(str(folder))

    _guard(body)


@weights_app.command("pull")
def weights_pull(profile: str = ProfileOpt, dir_: Optional[Path] = DirOpt) -> None:
    """Download the real weights a profile needs (resumable; sizes checked)."""

    def body() -> None:
        from animagent.config import load_config, resolve_weights_root
        from animagent.weights import pull, required_models

        _setup_logging(None)
        root = resolve_weights_root(dir_)
        names = required_models(load_config(profile))
        err.print(f"pulling {', '.join(names)} into {root / 'real'}")

        def on_file(name: str, path: str, size: int) -> None:
            err.print(f"  {name}: {path} ({size / 1e6:.1f} MB)")

        pull(root, names, on_file)
        out.print(str(root / "real"))

    _guard(body)


@weights_app.command("make-tiny")
def weights_make_tiny(dir_: Optional[Path] = DirOpt) -> None:
    """Write tiny random versions of every model, in the real repos' layouts (seconds, CPU)."""

    def body() -> None:
        from animagent.config import resolve_weights_root
        from animagent.weights import make_tiny

        _setup_logging(None)
        import transformers

        transformers.utils.logging.disable_progress_bar()
        root = resolve_weights_root(dir_)
        with err.status(f"writing tiny weights into {root / 'tiny'}"):
            make_tiny(root)
        out.print(str(root / "tiny"))

    _guard(body)


@director_app.command("serve")
def director_serve(
    profile: str = ProfileOpt,
    config: Optional[Path] = ConfigOpt,
    set_: list[str] = SetOpt,
    port: int = typer.Option(8000, "--port", help="port on 127.0.0.1"),
) -> None:
    """Start `vllm serve` for the profile's director (127.0.0.1, random API key) and keep it running."""

    def body() -> None:
        from animagent.config import load_config
        from animagent.serve import serve

        _setup_logging(None)
        cfg = load_config(profile, config, set_)
        with err.status("starting vllm serve (loading the model takes a few minutes)"):
            served = serve(cfg, cfg.weights_root(), port)
        profile_arg = f" --profile {profile}" if profile != "default" else ""
        out.print(f"director serving at {served.url}", highlight=False)
        out.print(f"  {served.export_line}", highlight=False, soft_wrap=True)
        out.print(f"  animagent run STORY{profile_arg} {served.run_args}", highlight=False, soft_wrap=True)
        out.print("Ctrl-C stops it.")
        try:
            served.process.wait()
        finally:
            served.process.terminate()
            served.process.wait()

    _guard(body)


@app.command()
def doctor(profile: str = ProfileOpt, dir_: Optional[Path] = DirOpt) -> None:
    """Check GPU, weights and optional packages for a profile; each problem with its fix."""

    def body() -> None:
        import importlib.util

        from animagent import gpu
        from animagent.config import load_config, resolve_weights_root
        from animagent.errors import MissingError
        from animagent.weights import fix_command, missing_files, model_dir, required_models, spec

        cfg = load_config(profile, overrides=[f"weights.root={dir_}"] if dir_ else [])
        root = resolve_weights_root(cfg.weights.root)
        flavor = cfg.weights.flavor
        problems = 0
        out.print(f"profile {profile}: {flavor} weights in {root / flavor}")
        for name in required_models(cfg):
            missing = missing_files(root, name, flavor)
            if missing:
                problems += 1
                fix = fix_command(flavor, root, profile)
                out.print(f"  [red]missing[/red]  {name:<24} {spec(name).repo_id}  fix: {fix}")
            else:
                out.print(f"  [green]present[/green]  {name:<24} {model_dir(root, name, flavor)}")
        import torch

        if torch.cuda.is_available():
            free, total = torch.cuda.mem_get_info()
            gib = f"{free / 2**30:.0f} of {total / 2**30:.0f} GiB free"
            out.print(f"  [green]gpu[/green]      {torch.cuda.get_device_name()} ({gib})")
        elif cfg.device in ("auto", "cuda") and profile != "tiny":
            problems += 1
            out.print("  [yellow]no gpu[/yellow]   torch sees no CUDA GPU; only the tiny profile is practical here")
        try:
            gpu.check_compile(cfg)
        except MissingError as exc:
            problems += 1
            out.print(f"  [red]missing[/red]  triton   {exc}")
        if cfg.director.kind == "vllm" and importlib.util.find_spec("vllm") is None:
            problems += 1
            out.print("  [red]missing[/red]  vllm  fix: pip install 'animagent[vllm]'")
        if problems:
            raise typer.Exit(4)

    _guard(body)


if __name__ == "__main__":
    main()
