"""The command line: typer commands, rich progress and logging, and the mapping of errors to exit codes.

This is the only module that presents anything. Every command ends in one of the documented exit codes
(errors.py): expected failures print one line; an unexpected one prints one line with the log path that
holds its traceback (the run's logs/crash.log, else a private temp file). Ctrl-C exits 130 and SIGTERM
(`docker stop`) 143, both the same way: the current write is finished or removed, the lock is released and the
run folder stays resumable. On a terminal each stage has a progress bar; without one (docker logs, CI, nohup)
each item and each finished stage is one line with its count and elapsed time. Log records are one line each.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from animagent.errors import AnimagentError, InputError

if TYPE_CHECKING:
    from animagent.config import Config

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
ClusterOpt = typer.Option(None, "--cluster", help="ray: fan clip and cast candidates out to a GPU worker each "
                          "(--set cluster.kind=ray; docs/cluster.md); local: this process only (the default)")
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
    console = _ConsoleLines(level=logging.WARNING)
    console.addFilter(lambda record: record.name.startswith("animagent"))
    root.addHandler(console)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    for noisy in ("diffusers", "transformers", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


class _ConsoleLines(logging.Handler):
    """Each record as one line on stderr, printed through rich so that it lands above the progress bars."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = " ".join(record.getMessage().split())
        except Exception:  # a malformed log call must not end the run
            self.handleError(record)
            return
        colour = "red" if record.levelno >= logging.ERROR else "yellow"
        err.print(f"[{colour}]{record.levelname.lower()}:[/{colour}] {escape(message)}", highlight=False,
                  soft_wrap=True)


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt, so the run unwinds the same way."""


def _on_sigterm(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not interrupt the unwinding
    raise _Terminated


def _guard(action: Callable[[], None], run_dir: Callable[[], Path | None] = lambda: None) -> None:
    """Run a command body; map every outcome to a documented exit code and one line on stderr."""
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if in_main else None
    try:
        action()
    except typer.Exit:
        raise
    except AnimagentError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except (KeyboardInterrupt, _Terminated) as exc:
        where = run_dir()
        hint = f"; continue with: animagent resume {where}" if where else ""
        what = "terminated" if isinstance(exc, _Terminated) else "interrupted"
        err.print(f"{what}{hint}", soft_wrap=True, highlight=False)
        raise typer.Exit(143 if isinstance(exc, _Terminated) else 130) from None
    except Exception:  # a bug: keep the traceback in a log file, show one line
        log_path = _crash_log(run_dir())
        log_path.write_text(traceback.format_exc(), encoding="utf-8")
        where = run_dir()
        hint = f"; after a fix, continue with: animagent resume {where}" if where else ""
        err.print(f"internal error: {sys.exc_info()[1]!r} (traceback in {log_path}){hint}", highlight=False,
                  soft_wrap=True)
        raise typer.Exit(1) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _crash_log(run: Path | None) -> Path:
    """The run's logs/crash.log; without a run folder a fresh private file (0600), never a shared fixed name."""
    if run is not None and run.is_dir():
        (run / "logs").mkdir(exist_ok=True)
        return run / "logs" / "crash.log"
    fd, name = tempfile.mkstemp(prefix="animagent-crash-", suffix=".log")
    os.close(fd)
    return Path(name)


class _StageBars:
    """A rich progress bar per stage, fed by the stages' progress(stage, done, total) calls; a "loading" line
    until the first stage reports (importing torch and loading the first model take seconds)."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("{task.description:<9}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=err, transient=False,
        )
        self.tasks: dict[str, int] = {}
        self.loading: int | None = None

    def __enter__(self) -> _StageBars:
        self.progress.__enter__()
        self.loading = self.progress.add_task("loading", total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.loading is not None:
            self.progress.remove_task(self.loading)
            self.loading = None
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=total)
        self.progress.update(self.tasks[stage], completed=done, total=total)


class _StageLines:
    """Progress without a terminal: a line per item and per finished stage, with the stage's elapsed time."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.shown: dict[str, int] = {}

    def __enter__(self) -> _StageLines:
        err.print("loading", highlight=False)
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        started = self.started.setdefault(stage, now)
        if self.shown.get(stage) == done:
            return
        self.shown[stage] = done
        status = "done" if done == total else "    "
        err.print(f"{stage:<9} {done}/{total} {status} {now - started:7.1f} s", highlight=False)


def _render(make: Callable[[Callable], object], run_dir: Path) -> object:
    # Runs never contact a hub: backends also pass local_files_only=True.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _setup_logging(run_dir / "logs" / "animagent.log")
    with _StageBars() if err.is_terminal else _StageLines() as progress:
        import diffusers
        import transformers

        diffusers.utils.logging.disable_progress_bar()  # model loading bars would tear through ours
        transformers.utils.logging.disable_progress_bar()
        return make(progress)


def _tiny_notice(config) -> None:
    if config.weights.flavor == "tiny":
        err.print("tiny weights are random: pictures are noise and identity warnings are expected; every stage, "
                  "file and choice is real", highlight=False, soft_wrap=True)


@app.command()
def run(
    story: Optional[Path] = typer.Argument(None, help="story text file (UTF-8, at most 100 KB)"),
    profile: str = ProfileOpt,
    config: Optional[Path] = ConfigOpt,
    set_: list[str] = SetOpt,
    out_dir: Optional[Path] = OutOpt,
    seed: Optional[int] = SeedOpt,
    script: Optional[Path] = typer.Option(None, "--script", help="render this script.json; skips planning"),
    cluster: Optional[str] = ClusterOpt,
) -> None:
    """Render STORY into a film: plan, cast, draw, animate, assemble."""
    state: dict[str, Path] = {}

    def body() -> None:
        from animagent.config import load_config
        from animagent.runs import prepare_run
        from animagent.studio import Studio

        cfg = load_config(profile, config, [*set_, *([f"cluster.kind={cluster}"] if cluster else [])], seed)
        state["run"] = prepare_run(story, cfg, out_dir, script)
        _tiny_notice(cfg)
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
        from animagent.runs import open_run
        from animagent.runs import resume as resume_run

        _tiny_notice(open_run(run_dir))  # first: a path that is no run folder is refused before logs/ is made
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
        from animagent.runs import open_run
        from animagent.runs import rerender as rerender_run

        _tiny_notice(open_run(run_dir))  # first: a path that is no run folder is refused before logs/ is made
        film = _render(lambda bars: rerender_run(run_dir, shot, start, bars), run_dir.resolve())
        out.print(str(Path(film.run_dir) / film.video))

    _guard(body, lambda: run_dir.resolve() if run_dir.is_dir() else None)


@app.command()
def verify(run_dir: Path = typer.Argument(..., help="run folder")) -> None:
    """Re-hash every recorded output of RUN; exit 2 when something is missing, changed or not recorded."""

    def body() -> None:
        from animagent.runs import verify as verify_run

        problems = verify_run(run_dir)
        for p in problems:
            out.print(f"{p.what:<12} {p.path}" + (f"  (step {p.step})" if p.step != p.path else ""), highlight=False)
        if problems:
            err.print(f"{len(problems)} output(s) missing, changed or not recorded; `animagent resume {run_dir}` "
                      "redoes them (an edited script.json is kept as it is)", soft_wrap=True)
            raise typer.Exit(2)
        out.print(f"{run_dir}: every step a film needs is recorded and every recorded output verifies")

    _guard(body)


@app.command("eval")
def eval_cmd(run_dir: Path = typer.Argument(..., help="a finished run folder")) -> None:
    """Score RUN (CLIP-T, identity, style and clip consistency): scorecard.json and report.html."""

    def body() -> None:
        from animagent.runs import evaluate_run, open_run

        open_run(run_dir)  # first: a path that is no run folder is refused before logs/ is made
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
def weights_pull(profile: str = ProfileOpt, dir_: Optional[Path] = DirOpt, set_: list[str] = SetOpt) -> None:
    """Download the real weights a profile needs (resumable; sizes checked), e.g. another director with
    --set director.weights=llava_onevision_7b."""

    def body() -> None:
        from animagent.config import load_config, resolve_weights_root
        from animagent.weights import pull, required_models

        _setup_logging(None)
        root = resolve_weights_root(dir_)
        config = load_config(profile, overrides=set_)
        if config.weights.flavor == "tiny":
            raise InputError(f"the {profile} profile's weights are random and made here, not pulled: run "
                             f"`animagent weights make-tiny{f' --dir {dir_}' if dir_ else ''}` (seconds, no network)")
        names = required_models(config)
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
def doctor(profile: str = ProfileOpt, dir_: Optional[Path] = DirOpt, set_: list[str] = SetOpt) -> None:
    """Check GPU, weights and optional packages for a profile; each problem with its fix."""

    def body() -> None:
        import importlib.util

        from animagent import gpu
        from animagent.config import load_config, resolve_weights_root
        from animagent.errors import MissingError
        from animagent.weights import fix_command, missing_files, model_dir, required_models, spec

        cfg = load_config(profile, overrides=[*set_, *([f"weights.root={dir_}"] if dir_ else [])])
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
        for lever in ("graph_painter", "fp8_animator"):  # not a problem: a run switches them off and goes on
            if (reason := gpu.lever_off(cfg, lever)) is not None:
                out.print(f"  [yellow]off[/yellow]      {escape(reason)}", soft_wrap=True)  # [fp8] is no markup
        if cfg.director.kind == "vllm" and importlib.util.find_spec("vllm") is None:
            problems += 1
            out.print("  [red]missing[/red]  vllm  fix: pip install 'animagent\\[vllm]'")
        if cfg.cluster.kind == "ray":
            problems += _doctor_cluster(cfg)
        if problems:
            raise typer.Exit(4)

    _guard(body)


def _doctor_cluster(cfg: Config) -> int:
    """Doctor's Ray lines: Ray installed and its address answering, then every node of the cluster through one
    worker per GPU (its weights, its GPU's memory against the profile's need). Returns the problems found."""
    from animagent import cluster
    from animagent.errors import MissingError, ResourceError

    try:
        cluster.check(cfg)
    except MissingError as exc:
        out.print(f"  [red]missing[/red]  ray  {escape(str(exc))}", soft_wrap=True)  # [ray] is no markup
        return 1
    problems = 0
    with tempfile.TemporaryDirectory() as logs:
        pool = cluster.RayPool(cfg, Path(logs))
        try:
            for n, place in enumerate(pool.survey()):
                where = f"worker {n} on {place['node']}"
                gib = f"{place['gpu_memory'] / 2**30:.0f} GiB" if place["gpu_memory"] else "no CUDA GPU seen"
                try:
                    cluster.check_node(cfg, place)
                    out.print(f"  [green]node[/green]     {where}: weights present, {gib}")
                except (MissingError, ResourceError) as exc:
                    problems += 1
                    out.print(f"  [red]node[/red]     {where}: {escape(str(exc))}", soft_wrap=True)
        finally:
            pool.close()
    return problems


if __name__ == "__main__":
    main()
