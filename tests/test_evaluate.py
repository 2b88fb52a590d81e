"""The evaluate stage with tiny real encoders: the scorecard's schema on a tiny-profile film, the 30-second budget,
the finished step loading no model, and known answers on a hand-made run (a still clip, a scripted style classifier).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from animagent import scoring
from animagent.artifacts import (
    Box,
    Cast,
    Character,
    CharacterSheet,
    Clip,
    Keyframe,
    Placement,
    Scene,
    Script,
    Setting,
    SettingSheet,
    Shot,
    Style,
)
from animagent.config import Config, load_config
from animagent.models import ROLES
from animagent.runfolder import RunFolder
from animagent.scorecard import Scorecard
from animagent.stages.evaluate import REPORT, SCORECARD, evaluate
from tests.fakes import context

REPO = Path(__file__).resolve().parents[1]
STORY = REPO / "examples" / "stories" / "lantern.txt"
PIPELINE = ("qwen2_5_vl_7b", "sdxl_base", "sdxl_vae_fp16_fix", "ip_adapter_sdxl_vit_h", "svd_xt", "kokoro_82m")
EVAL = ("clip_vit_l", "dinov2_base", "sam_vit_h")


def eval_run(run_dir: str | Path, weights_root: str | Path) -> Scorecard:
    """What `animagent eval RUN` does: reopen the run, read its finished artifacts and evaluate with the
    registry's encoders (and the director for the style classes)."""
    from animagent.runs import open_run
    from animagent.studio import Studio

    studio = Studio(open_run(Path(run_dir)), Path(run_dir))
    try:
        return studio.evaluate(*studio.artifacts())
    finally:
        studio.close()


class StyleDirector:
    """A director that answers the style question from a script of style classes."""

    def __init__(self, styles):
        self.styles = styles

    def ask(self, task, variables, output, images=(), seed=0):
        assert task == "keyframe_style"
        return output(style_class=next(self.styles))


@pytest.fixture(scope="module")
def tiny_run(tiny_model, tmp_path_factory) -> Path:
    from animagent.runs import make_film

    for name in PIPELINE + EVAL:
        tiny_model(name)
    run_dir = tmp_path_factory.mktemp("tiny") / "run"
    make_film(STORY, profile="tiny", out=run_dir, overrides=[f"weights.root={tiny_model.root}"])
    return run_dir


def test_scorecard_of_a_tiny_film_in_under_30_seconds(tiny_run, tiny_model):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    started = time.perf_counter()
    subprocess.run(  # a fresh interpreter: the budget includes importing torch and transformers, as the CLI does
        [sys.executable, "-c", "import sys; from tests.test_evaluate import eval_run; eval_run(*sys.argv[1:])",
         str(tiny_run), str(tiny_model.root)],
        cwd=REPO, env=env, check=True, capture_output=True,
    )
    seconds = time.perf_counter() - started
    assert seconds < 30, f"eval took {seconds:.1f} s on a tiny run"

    run = RunFolder(tiny_run)
    card = Scorecard.model_validate_json(run.path(SCORECARD).read_text())
    script = Script.model_validate_json(run.path("script.json").read_text())
    assert [s.shot for s in card.shots] == [s.id for s in script.shots()]
    assert [c.character for c in card.characters] == [c.id for c in script.characters]
    assert card.masked_crops and card.identity_encoder == "clip"
    assert {(e.role, e.repo_id, e.flavor) for e in card.encoders} == {
        ("clip", "openai/clip-vit-large-patch14", "tiny"),
        ("dino", "facebook/dinov2-base", "tiny"),
        ("segmenter", "facebook/sam-vit-huge", "tiny"),
        ("style", "Qwen/Qwen2.5-VL-7B-Instruct", "tiny"),
    }
    assert all(len(e.revision) == 40 for e in card.encoders)
    for shot in card.shots:
        assert 0 <= shot.clip_t <= 100 and 0 <= shot.motion <= 1
        assert 0 <= shot.subject_consistency <= 1 and 0 <= shot.background_consistency <= 1
        assert shot.style_class is not None  # the tiny director classified it
    assert 0 < card.film.cssc <= 1
    assert len(card.film.keyframe_similarity) == len(card.shots) - 1
    assert json.loads(run.path(SCORECARD).read_text())["film"]["clip_t"] == pytest.approx(
        np.mean([s.clip_t for s in card.shots]))
    report = run.path(REPORT).read_text()
    assert report.count("data:image/") >= 2 * len(card.shots) + 1  # keyframes, posters, the chart
    assert "http://" not in report and "https://" not in report and "<script" not in report
    assert "manifest.json" not in report and run.done("eval", run.manifest.steps["eval"].key)

    # the finished step is read back without loading any encoder
    from animagent.runs import open_run
    from animagent.studio import Studio

    studio = Studio(open_run(tiny_run), tiny_run)
    again = studio.evaluate(*studio.artifacts())
    assert again == card
    assert not any(studio.models.loaded(role) for role in ROLES)


# --- a hand-made run with known answers ------------------------------------------------------------------------

RED, GREEN, BLUE, SKY = (220, 40, 40), (40, 170, 60), (40, 60, 200), (150, 200, 235)


def synthetic_run(root: Path, weights_root: Path) -> tuple[RunFolder, Script, Cast, list[Keyframe], list[Clip], Config]:
    """Three shots (the second one's clip is perfectly still), three characters (the owl is never placed)."""
    from PIL import Image, ImageDraw

    from animagent import video

    config = load_config("tiny", overrides=[f"weights.root={weights_root}"])
    run = RunFolder(root)
    left, right = Box(x0=0.05, y0=0.2, x1=0.45, y1=0.95), Box(x0=0.55, y0=0.2, x1=0.95, y1=0.95)
    script = Script(
        title="The Lantern Keeper",
        story="Mira the fox and Tobin the tortoise keep the lantern.",
        style=Style(style_class="illustration", description="warm watercolour"),
        characters=(
            Character(id="mira", name="Mira", appearance="small red fox"),
            Character(id="tobin", name="Tobin", appearance="old green tortoise"),
            Character(id="owl", name="Owl", appearance="a blue owl"),
        ),
        settings=(Setting(id="hill", name="Hill", description="a crooked hill at dusk"),),
        scenes=(Scene(id="s01", shots=(
            Shot(id="s01_k1", narration="Mira climbs the hill.", description="a red fox on a hill",
                 characters=(Placement(character="mira", box=left),), setting="hill", camera="wide shot",
                 motion="gentle", duration_s=2),
            Shot(id="s01_k2", narration="Tobin waits & <watches>.", description="a fox and a tortoise",
                 characters=(Placement(character="mira", box=left), Placement(character="tobin", box=right)),
                 setting="hill", camera="medium shot", motion="still", duration_s=2),
            Shot(id="s01_k3", narration="Tobin shelters the flame.", description="a green tortoise",
                 characters=(Placement(character="tobin", box=right),), setting="hill", camera="close-up",
                 motion="moderate", duration_s=2),
        )),),
    )
    colours = {"mira": RED, "tobin": GREEN, "owl": BLUE}

    def picture(shot: Shot, shift: int = 0) -> Image.Image:
        image = Image.new("RGB", (96, 64), SKY)
        pen = ImageDraw.Draw(image)
        for p in shot.characters:
            x0, y0, x1, y1 = p.box.to_pixels(96, 64)
            pen.ellipse((x0 + shift, y0, x1 + shift - 1, y1 - 1), fill=colours[p.character])
        return image

    sheets = []
    for character in script.characters:
        sheet = Image.new("RGB", (48, 64), "white")
        ImageDraw.Draw(sheet).ellipse((8, 10, 40, 60), fill=colours[character.id])
        run.write_image(f"cast/characters/{character.id}.png", sheet)
        sheets.append(CharacterSheet(character=character.id, image=f"cast/characters/{character.id}.png",
                                     prompt="sheet", seed=0))
    run.write_image("cast/settings/hill.png", Image.new("RGB", (96, 64), SKY))
    cast = Cast(characters=tuple(sheets),
                settings=(SettingSheet(setting="hill", image="cast/settings/hill.png", prompt="hill", seed=0),))
    keyframes, clips = [], []
    for shot in script.shots():
        run.write_image(f"keyframes/{shot.id}.png", picture(shot))
        keyframes.append(Keyframe(shot=shot.id, image=f"keyframes/{shot.id}.png", prompt=shot.description, seed=0))
        shifts = [0] * 6 if shot.motion == "still" else [2 * i for i in range(6)]
        frames = [np.asarray(picture(shot, s)) for s in shifts]
        with run.writing(f"clips/{shot.id}.mp4") as tmp:
            video.write_video(frames, tmp, fps=8)
        clips.append(Clip(shot=shot.id, video=f"clips/{shot.id}.mp4", frames=len(frames), fps=8, seed=0))
    return run, script, cast, keyframes, clips, config


@pytest.fixture(scope="module")
def encoders(tiny_model):
    from animagent.backends.embedder import ClipEmbedder
    from animagent.backends.embedder_dino import DinoEmbedder

    for name in EVAL:
        tiny_model(name)
    config = load_config("tiny", overrides=[f"weights.root={tiny_model.root}"])
    return ClipEmbedder(config, tiny_model.root), DinoEmbedder(config, tiny_model.root)


def test_known_answers_on_a_hand_made_run(tmp_path, tiny_model, encoders):
    clip, dino = encoders
    run, script, cast, keyframes, clips, config = synthetic_run(tmp_path / "run", tiny_model.root)
    styles = itertools.cycle(["anime", "anime", "ink wash"])  # a scripted style classifier
    config = config.model_copy(update={"eval": config.eval.model_copy(update={"masked_crops": False,
                                                                                "identity_encoder": "dino"})})
    card = evaluate(context(run, config, embedder=clip, dino=dino, director=StyleDirector(styles)),
                    script, cast, keyframes, clips)

    still = card.shots[1]  # repeated frames, through H.264: equal up to the codec's rounding
    assert still.flags == ("still",) and still.motion < scoring.STILL_MOTION / 4
    assert still.subject_consistency == pytest.approx(1.0, abs=1e-3)
    assert still.background_consistency == pytest.approx(1.0, abs=1e-3)
    moving = card.shots[0]
    assert "still" not in moving.flags and moving.motion > scoring.STILL_MOTION
    assert [s.style_class for s in card.shots] == ["anime", "anime", "ink wash"]
    assert card.film.cssc == pytest.approx(2 / 3)

    mira, tobin, owl = card.characters
    assert mira.shots == ("s01_k1", "s01_k2") and tobin.shots == ("s01_k2", "s01_k3")
    assert -1 <= mira.identity <= 1 and -1 <= mira.reference <= 1
    assert owl.shots == () and owl.identity is None and owl.reference is None
    assert not card.masked_crops and card.identity_encoder == "dino"
    assert [e.role for e in card.encoders] == ["clip", "dino", "style"]

    report = run.path(REPORT).read_text()
    assert "Tobin waits &amp; &lt;watches&gt;." in report  # narration is escaped, never markup
    assert "2 shots" not in report and "3 shots" in report

    # a changed keyframe makes the step stale: it is measured again
    from PIL import Image

    run.write_image("keyframes/s01_k3.png", Image.new("RGB", (96, 64), (0, 0, 0)))
    again = evaluate(context(run, config, embedder=clip, dino=dino, director=StyleDirector(itertools.cycle(["anime"]))),
                     script, cast, keyframes, clips)
    assert again.film.cssc == 1.0
    assert again.film.keyframe_similarity[1] != card.film.keyframe_similarity[1]
