"""report.html renders offline in headless Chromium (Debian's `chromium`), and the screenshot shows the storyboard."""

from __future__ import annotations

import itertools
import shutil
import subprocess

import numpy as np
import pytest

from animagent.stages.evaluate import REPORT, evaluate
from tests.fakes import context
from tests.test_evaluate import GREEN, RED, StyleDirector, encoders, synthetic_run  # noqa: F401  (encoders is a fixture)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WIDTH, HEIGHT = 1280, 2400

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get install -y chromium)"
)


def test_report_renders_with_its_storyboard(tmp_path, tiny_model, encoders):  # noqa: F811
    from PIL import Image

    clip, dino = encoders
    run, script, cast, keyframes, clips, config = synthetic_run(tmp_path / "run", tiny_model.root)
    config = config.model_copy(update={"eval": config.eval.model_copy(update={"masked_crops": False})})
    evaluate(context(run, config, embedder=clip, dino=dino, director=StyleDirector(itertools.repeat("illustration"))),
             script, cast, keyframes, clips)
    screenshot = tmp_path / "report.png"
    subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={WIDTH},{HEIGHT}",
         f"--screenshot={screenshot}", run.path(REPORT).as_uri()],
        check=True, capture_output=True, timeout=120,
    )
    assert screenshot.is_file()
    with Image.open(screenshot) as image:
        pixels = np.asarray(image.convert("RGB")).astype(int)
    assert pixels.shape[:2] == (HEIGHT, WIDTH)
    near_white = (pixels.min(axis=2) > 235).mean()
    assert near_white < 0.8, f"{near_white:.0%} of the screenshot is white"
    assert pixels[:60].mean() < 90  # the dark title band rendered (the CSS was applied)
    # the storyboard's keyframes and posters: the synthetic characters' red and green are on screen
    for colour in (RED, GREEN):
        close = (np.abs(pixels - np.array(colour)).max(axis=2) < 30).sum()
        assert close > 2000, f"colour {colour} covers only {close} pixels: the storyboard images are missing"
