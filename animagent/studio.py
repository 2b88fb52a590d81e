"""The orchestrator. `Studio.run()` is the recipe: plan → cast → speak → draw ⇄ review (→ animate) → assemble → eval.

Stage-major where the story allows it: each heavy model loads once per pass and is released when the next pass
no longer needs it (the director plans everything; the painter draws every sheet's candidates, then the director
picks them all; the animator renders every clip with the director released). Draw and review alternate shot by
shot, because DreamFactory's keyframe iteration draws each shot with descriptions of the keyframes accepted
before it, so during that pass the painter, the director, CLIP and SAM are all resident. Each accepted keyframe's
motion is chosen then and its clips handed to the animator (Models.submit): with cluster.kind ray they render on
other GPUs while the next shot is drawn, so the stage-major order becomes a pipeline; with kind local they render
after the pass. What leaves the GPU after each pass is RELEASE_AFTER, written as data beside the recipe; loading on
first use, parking for lowvram, the model ids of step keys and where tasks run are models.py's.
This module owns the order and the context the stages share; what each stage computes lives in
animagent/stages/, what each command does to a run folder (make, resume, rerender, evaluate, verify) in runs.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from animagent import gpu
from animagent.artifacts import Cast, Clip, ClipCandidates, Film, Keyframe, Narration, Script, Takes
from animagent.config import Config
from animagent.models import Models, Role
from animagent.runfolder import RunFolder
from animagent.scorecard import Scorecard
from animagent.stages import (
    Context,
    Progress,
    animate,
    assemble,
    cast,
    draw,
    evaluate,
    no_progress,
    plan,
    review,
    speak,
)
from animagent.stages.plan import SCRIPT
from animagent.weights import ensure_present

T = TypeVar("T")
STORY, CONFIG, TAKES = "story.txt", "config.yaml", "takes.json"
__all__ = ["CONFIG", "RELEASE_AFTER", "SCRIPT", "STORY", "TAKES", "Studio", "read_takes"]

# The release schedule (diffusers' model_cpu_offload_seq, for a film): the models that leave the GPU after each
# pass. The cast's sheets are drawn before the director is asked again; the animator renders alone (kind local).
RELEASE_AFTER: dict[str, tuple[Role, ...]] = {
    "plan": ("director",),
    "speak": ("voice",),
    "draw": ("painter", "segmenter", "director"),
    "render": ("animator",),
}


def read_takes(run: RunFolder) -> Takes:
    """The takes a run's shots are at (takes.json, written by rerender), read once when a Studio opens the run."""
    return run.read_model(TAKES, Takes) if run.exists(TAKES) else Takes()


class Studio:
    """One run folder, one config; one method per pass and `run()` for all of them in order."""

    def __init__(self, config: Config, run_dir: Path, progress: Progress = no_progress):
        self.config = config
        self.run_folder = RunFolder(run_dir)
        self.models = Models(config, self.run_folder.path("logs"))
        self.ctx = Context(self.run_folder, config, self.models, read_takes(self.run_folder), progress)

    # --- the recipe ----------------------------------------------------------------------------------------

    def run(self) -> Film:
        with self.run_folder.lock():
            ensure_present(self.config)  # fail before minutes of work, naming the model and the fix
            gpu.check_compile(self.config)
            try:
                # 0. with cluster.kind ray: the GPU workers start, each checking its node's weights and memory
                self.models.start()
                # 1. plan: the story becomes a validated script (director)
                script = self.plan()
                # 2. cast: candidate sheets per character and setting, the director picks one of each; library
                #    characters are reused (painter, director)
                sheets = self.cast(script)
                # 3. speak: the director casts a voice for the narrator and each character (script.json), each
                #    shot's narration is spoken and the shot fitted to its speech: that length is what is animated
                #    (director, voice)
                script, narration = self.speak(script) if self.config.assemble.voice else (script, None)
                # 4. draw and review, shot by shot: the sheets go into memory; each shot's candidates are drawn,
                #    reviewed, repaired and one is chosen; the director picks its motion and its candidate clips
                #    go to the animator, on other GPUs at once with cluster.kind ray (painter, director, CLIP, SAM)
                keyframes, submitted = self.draw(script, sheets, narration)
                # 5. animate: the candidate clips as long as the shots are taken in film order (animator); the
                #    best-scored go to the director (CLIP, DINOv2, director)
                rendered = self.render(submitted)
                clips = self.choose(script, rendered)
                # 6. assemble: film.mp4 with the narration and subtitles, film.srt, storyboard.png
                film = self.assemble(script, keyframes, clips, narration)
                # 7. eval: scorecard.json and report.html (CLIP, DINOv2, SAM, director for the style classes)
                if self.config.eval.auto:
                    self.evaluate(script, sheets, keyframes, clips)
                return film
            finally:
                self.close()

    # --- passes --------------------------------------------------------------------------------------------

    def plan(self) -> Script:
        script = plan.plan(self.ctx, self.run_folder.path(STORY).read_text(encoding="utf-8"))
        return self._done("plan", script)

    def cast(self, script: Script) -> Cast:
        return self._done("cast", cast.cast(self.ctx, script))

    def draw(self, script: Script, sheets: Cast,
             narration: Narration | None = None) -> tuple[list[Keyframe], list[animate.Submitted]]:
        """4. The keyframes, drawn and reviewed shot by shot in film order: DreamFactory's keyframe iteration
        draws each shot with the base description of the first accepted keyframe and the context description of
        the previous one, so a shot is reviewed before the next is drawn. The memory the review scores identity
        against is made first, from `sheets`: the references the shots are drawn with. Each accepted keyframe's
        motion is chosen and its candidate clips submitted (taken by `render`)."""
        cast.remember(self.ctx, sheets)
        shots = script.shots()
        keyframes: list[Keyframe] = []
        submitted: list[animate.Submitted] = []
        for n, shot in enumerate(shots):
            self.ctx.progress("draw", n, len(shots))
            candidates = draw.draw(self.ctx, script, sheets, shot, keyframes)
            keyframes.append(review.review(self.ctx, script, sheets, shot, candidates, keyframes))
            motion = animate.choose_motion(self.ctx, script, keyframes[-1])
            submitted.append(animate.submit(self.ctx, script, keyframes[-1], motion, narration))
        self.ctx.progress("draw", len(shots), len(shots))
        return self._done("draw", (keyframes, submitted))

    def speak(self, script: Script) -> tuple[Script, Narration]:
        script = speak.cast_voices(self.ctx, script)
        return script, self._done("speak", speak.speak(self.ctx, script))

    def render(self, submitted: list[animate.Submitted]) -> list[ClipCandidates]:
        return self._done("render", animate.render(self.ctx, submitted))

    def choose(self, script: Script, rendered: list[ClipCandidates]) -> list[Clip]:
        return self._done("choose", animate.choose_clips(self.ctx, script, rendered))

    def assemble(self, script: Script, keyframes: list[Keyframe], clips: list[Clip],
                 narration: Narration | None = None) -> Film:
        return self._done("assemble", assemble.assemble(self.ctx, script, keyframes, clips, narration))

    def evaluate(self, script: Script, sheets: Cast, keyframes: list[Keyframe], clips: list[Clip]) -> Scorecard:
        """7. The seeds' metrics for this run; the director classifies each keyframe's style (CSSC)."""
        return self._done("eval", evaluate.evaluate(self.ctx, script, sheets, keyframes, clips))

    def _done(self, name: str, result: T) -> T:
        self.models.release(*RELEASE_AFTER.get(name, ()))
        return result

    # --- a finished run's artifacts ------------------------------------------------------------------------

    def artifacts(self) -> tuple[Script, Cast, list[Keyframe], list[Clip]]:
        """The script, chosen sheets, keyframes and clips of a run whose film is assembled, read from the run
        folder (nothing is replayed, nothing loads)."""
        run = self.run_folder
        script = run.read_model(SCRIPT, Script)
        shots = script.shots()
        return (script, cast.read_cast(run, script),
                [run.read_model(f"keyframes/{s.id}.json", Keyframe) for s in shots],
                [run.read_model(f"clips/{s.id}.json", Clip) for s in shots])

    def close(self) -> None:
        self.models.close()
