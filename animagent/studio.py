"""The orchestrator. `Studio.run()` is the recipe: plan → cast → draw ⇄ review → animate → assemble.

Stage-major where the story allows it: each heavy model loads once per pass and is released when the next pass
no longer needs it (the director plans everything; the painter draws every sheet's candidates, then the director
picks them all; the animator renders every clip with the director released). Draw and review alternate shot by
shot, because DreamFactory's keyframe iteration draws each shot with descriptions of the keyframes accepted
before it, so during that pass the painter, the director, CLIP and SAM are all resident. With
`gpu.one_heavy_model` (lowvram) only one of the painter and the director is on the GPU at a time: each getter parks
the other in CPU memory first. Backends load lazily through zero-argument getters, so a resumed run whose steps
are finished loads nothing.
This module owns the order and the backends' lifetimes; what each stage computes lives in animagent/stages/, what
each command does to a run folder (make, resume, rerender, evaluate, verify) in runs.py.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from animagent import gpu
from animagent.artifacts import Cast, Clip, Film, Keyframe, Script, Takes
from animagent.backends.director import Director, make_director
from animagent.config import Config
from animagent.runfolder import RunFolder, step_key
from animagent.scorecard import Scorecard
from animagent.stages import Progress, animate, assemble, cast, draw, no_progress, plan, review
from animagent.weights import ensure_present, spec

log = logging.getLogger(__name__)

STORY, CONFIG, SCRIPT, TAKES = "story.txt", "config.yaml", "script.json", "takes.json"


class Studio:
    """One run folder, one config; one method per stage and `run()` for all of them in order."""

    def __init__(self, config: Config, run_dir: Path, progress: Progress = no_progress):
        self.config = config
        self.run_folder = RunFolder(run_dir)
        self.progress = progress
        self.weights_root = config.weights_root()
        self._director: Director | None = None
        self._painter = None
        self._embedder = None
        self._segmenter = None
        self._dino = None
        self._animator = None

    # --- the recipe ----------------------------------------------------------------------------------------

    def run(self) -> Film:
        with self.run_folder.lock():
            ensure_present(self.config)  # fail before minutes of work, naming the model and the fix
            gpu.check_compile(self.config)
            try:
                # 1. plan: the story becomes a validated script (director)
                script = self.plan()
                # 2. cast: candidate sheets per character and setting, the director picks one of each; library
                #    characters are reused (painter, director)
                sheets = self.cast(script)
                # 3-4. draw and review, shot by shot: the sheets go into memory; each shot's candidates are
                #    drawn, reviewed, repaired and one is chosen (painter, director, CLIP, SAM)
                keyframes = self.draw(script, sheets)
                self._release_painter()
                self._release_segmenter()
                # 5. animate: the director picks each shot's motion, the animator renders candidate clips, the
                #    best-scored go to the director (director, animator, CLIP, DINOv2)
                clips = self.animate(script, keyframes)
                # 6. assemble: film.mp4 with subtitles, film.srt, storyboard.png
                film = self.assemble(script, keyframes, clips)
                # 7. eval: scorecard.json and report.html (CLIP, DINOv2, SAM, director for the style classes)
                if self.config.eval.auto:
                    self.evaluate(script, sheets, keyframes, clips)
                return film
            finally:
                self.close()

    # --- stages --------------------------------------------------------------------------------------------

    def plan(self) -> Script:
        run = self.run_folder
        story = run.path(STORY).read_text(encoding="utf-8")
        key = plan_key(self.config, story)
        record = run.manifest.steps.get("plan")
        # script.json is the user's to edit: once planned with this key, whatever it now holds is the script.
        if record is not None and record.key == key and run.exists(SCRIPT):
            return plan.check_script(run.read_model(SCRIPT, Script))
        self.progress("plan", 0, 1)
        started = time.perf_counter()
        script = plan.plan(story, self._get_director(), self.config)
        run.write_model(SCRIPT, script)
        run.record("plan", key, [SCRIPT], time.perf_counter() - started)
        self._release_director()  # the cast is drawn before the director is asked again
        self.progress("plan", 1, 1)
        return script

    def cast(self, script: Script) -> Cast:
        return cast.cast(script, self.run_folder, self._get_painter, self._get_director, self.config,
                         self._painter_models(), self._director_models(), self.progress)

    def draw(self, script: Script, sheets: Cast) -> list[Keyframe]:
        """3-4. The keyframes, drawn and reviewed shot by shot in film order: DreamFactory's keyframe iteration
        draws each shot with the base description of the first accepted keyframe and the context description of
        the previous one, so a shot is reviewed before the next is drawn. The memory the review scores identity
        against is made first, from `sheets`: the references the shots are drawn with."""
        config, run = self.config, self.run_folder
        memory = cast.remember(sheets, run, self._get_embedder, config, self._models(config.embedder.clip))
        review_models = [*self._painter_models(), *self._director_models(),
                         *self._models(config.embedder.clip, *self._segmenter_models())]
        takes = self.takes()
        shots = script.shots()
        keyframes: list[Keyframe] = []
        for n, shot in enumerate(shots):
            self.progress("draw", n, len(shots))
            candidates = draw.draw(script, sheets, shot, keyframes, run, self._get_painter, config,
                                   self._painter_models(), takes)
            keyframes.append(review.review(
                script, sheets, shot, candidates, keyframes, run, director=self._get_director,
                embedder=self._get_embedder, segmenter=self._get_segmenter, painter=self._get_painter,
                memory=memory, config=config, models=review_models, takes=takes,
            ))
        self.progress("draw", len(shots), len(shots))
        return keyframes

    def animate(self, script: Script, keyframes: list[Keyframe]) -> list[Clip]:
        """5. The clips: motions (director), then candidate renders (animator, with the director released), then
        scores and picks (CLIP, DINOv2, director)."""
        config, run = self.config, self.run_folder
        motions = animate.choose_motions(script, keyframes, run, self._get_director, config,
                                         self._director_models(), self.progress)
        self._release_director()
        rendered = animate.render(script, keyframes, motions, run, self._get_animator, config,
                                  self._animator_models(), self.takes(), self.progress)
        self._release_animator()
        return animate.choose_clips(script, rendered, run, self._get_embedder, self._get_dino, self._get_director,
                                    config, [*self._models(config.embedder.clip, config.embedder.dino),
                                             *self._director_models()], self.takes(), self.progress)

    def assemble(self, script: Script, keyframes: list[Keyframe], clips: list[Clip]) -> Film:
        return assemble.assemble(script, keyframes, clips, self.run_folder, self.config, self.progress)

    def evaluate(self, script: Script, sheets: Cast, keyframes: list[Keyframe], clips: list[Clip]) -> Scorecard:
        """7. The seeds' metrics for this run; the director classifies each keyframe's style (CSSC)."""
        from animagent.stages.evaluate import EvalSettings, evaluate
        from animagent.tasks import KeyframeStyle

        def style_class(image) -> str:
            return self._get_director().ask("keyframe_style", {}, KeyframeStyle, images=[image],
                                            seed=self.config.seed).style_class

        settings = EvalSettings.from_config(self.config)
        return evaluate(
            self.run_folder, script, sheets, keyframes, clips, self.config, settings,
            clip=self._get_embedder, dino=self._get_dino,
            segmenter=self._get_segmenter if settings.segmenter is not None else None,
            style_classifier=style_class, progress=self.progress,
        )

    def takes(self) -> Takes:
        return self.run_folder.read_model(TAKES, Takes) if self.run_folder.exists(TAKES) else Takes()

    # --- model ids in step keys ----------------------------------------------------------------------------

    def _models(self, *names: str) -> list[list[str]]:
        return model_ids(self.config, *names)

    def _painter_models(self) -> list[list[str]]:
        painter = self.config.painter
        return self._models(painter.model, painter.vae, painter.ip_adapter)

    def _director_models(self) -> list[list[str]]:
        return self._models(self.config.director.weights)

    def _segmenter_models(self) -> list[str]:
        # segment_anything's checkpoint is not a registry model: its path (config.segmenter) is in the review key
        return [self.config.segmenter.model] if self.config.segmenter.kind == "sam" else []

    def _animator_models(self) -> list[list[str]]:
        if self.config.animator.kind == "svd":
            return self._models(self.config.animator.model)
        return [*self._models(self.config.animator.model), *self._painter_models()]

    # --- backends, loaded on first use ---------------------------------------------------------------------

    def _get_director(self) -> Director:
        self._make_room(for_="director")
        if self._director is None:
            if self.config.director.kind != "openai":
                ensure_present(self.config)
            self._director = make_director(self.config, self.run_folder.path("logs/director.jsonl"))
        return self._director

    def _get_painter(self):
        self._make_room(for_="painter")
        if self._painter is None:
            from animagent.backends.painter_sdxl import SDXLPainter

            ensure_present(self.config)
            self._painter = SDXLPainter(self.config, self.weights_root)
        return self._painter

    def _make_room(self, for_: str) -> None:
        """With `gpu.one_heavy_model`: park the other of the director and the painter in CPU memory, then bring
        `for_` back if it was parked. Called by their getters, which the stages call right before each use, so
        the one in use is always on the GPU. Parking, not releasing: draw and review alternate the two shot by
        shot (and repair round by round), and a move across PCIe costs less than a load from disk."""
        director = self.config.director
        if not self.config.gpu.one_heavy_model or (director.kind == "openai" and not director.sleep_mode):
            return  # a server that cannot sleep keeps its memory: parking the painter would free nothing for it
        other, wanted = (self._painter, self._director) if for_ == "director" else (self._director, self._painter)
        if other is not None:
            other.sleep()  # first: `wanted` may be about to load, and needs the room
        if wanted is not None:
            wanted.wake()

    def _get_embedder(self):
        if self._embedder is None:
            from animagent.backends.embedder import ClipEmbedder

            ensure_present(self.config)
            self._embedder = ClipEmbedder(self.config, self.weights_root, self.config.embedder.clip)
        return self._embedder

    def _get_dino(self):
        if self._dino is None:
            from animagent.backends.embedder_dino import DinoEmbedder

            ensure_present(self.config)
            self._dino = DinoEmbedder(self.config, self.weights_root, self.config.embedder.dino)
        return self._dino

    def _get_segmenter(self):
        if self._segmenter is None:
            ensure_present(self.config)
            if self.config.segmenter.kind == "sam":
                from animagent.backends.segmenter_sam import SamSegmenter

                self._segmenter = SamSegmenter(self.config, self.weights_root, self.config.segmenter.model)
            else:
                from animagent.backends.segmenter_segment_anything import SegmentAnythingSegmenter

                self._segmenter = SegmentAnythingSegmenter(self.config, Path(self.config.segmenter.checkpoint))
        return self._segmenter

    def _get_animator(self):
        if self._animator is None:
            ensure_present(self.config)
            if self.config.animator.kind == "svd":
                from animagent.backends.animator_svd import SVDAnimator

                self._animator = SVDAnimator(self.config, self.weights_root)
            else:
                from animagent.backends.animator_animatediff import AnimateDiffAnimator

                self._animator = AnimateDiffAnimator(self.config, self.weights_root)
        return self._animator

    def _release_director(self) -> None:
        if self._director is not None:
            self._director.close()
            self._director = None

    def _release_painter(self) -> None:
        if self._painter is not None:
            self._painter.close()
            self._painter = None

    def _release_segmenter(self) -> None:
        if self._segmenter is not None:
            self._segmenter.close()
            self._segmenter = None

    def _release_animator(self) -> None:
        if self._animator is not None:
            self._animator.close()
            self._animator = None

    def _release_encoders(self) -> None:
        if self._embedder is not None:
            self._embedder.close()
            self._embedder = None
        if self._dino is not None:
            self._dino.close()
            self._dino = None

    def close(self) -> None:
        self._release_director()
        self._release_painter()
        self._release_segmenter()
        self._release_animator()
        self._release_encoders()
        gpu.restore_threads()


# --- step keys ---------------------------------------------------------------------------------------------


def model_ids(config: Config, *names: str) -> list[list[str]]:
    """What identifies the models in a step key: registry name, repo, revision, flavor, dtype and device."""
    return [[n, spec(n).repo_id, spec(n).revision, config.weights.flavor, config.dtype, config.device] for n in names]


def plan_key(config: Config, story: str) -> str:
    return step_key(step="plan", story=story, director=config.director_key(), limits=config.limits,
                    seed=config.seed, models=model_ids(config, config.director.weights))
