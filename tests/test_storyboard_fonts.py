"""Storyboard captions draw every script a story may use: Latin with accents, Cyrillic, CJK and Arabic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from animagent import fonts
from animagent.artifacts import Keyframe, Script
from animagent.stages.assemble import storyboard

NAMES = ["Lí Ōtsuka, Zoë, Ñandú, Jürgen", "Дмитрий и Светлана", "小明と光 (ひかり), 민지", "ليلى وسمير"]
NOT_A_CHARACTER = "\U000f0000"  # a private-use code point no font has: drawn as the font's missing-glyph box


def _drawn(text: str, font) -> np.ndarray:
    image = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(image).text((8, 8), text, fill=255, font=font)
    return np.asarray(image)


def test_every_character_of_the_names_has_a_real_glyph():
    for name in NAMES:
        for run, font in fonts.runs(name.replace(" ", ""), 24):
            for ch in run:
                assert ord(ch) in fonts._coverage(font.path), f"{ch!r} ({name}) has no font"
                assert not np.array_equal(_drawn(ch, font), _drawn(NOT_A_CHARACTER, font)), f"{ch!r} is a box"


def test_cjk_falls_back_to_the_shipped_font_and_latin_stays_in_dejavu():
    used = {run: Path(font.path).name for run, font in fonts.runs("Mira 灯笼", 20)}
    assert used == {"Mira ": "DejaVuSans.ttf", "灯笼": "wqy-microhei.ttc"}


def test_wrap_measures_width_also_without_spaces():
    lines = fonts.wrap("小明" * 40, 120, 12)
    assert len(lines) > 1 and all(fonts.text_width(line, 12) <= 120 for line in lines)
    assert "".join(lines) == "小明" * 40


def test_storyboard_with_names_in_four_scripts():
    data = json.loads(open("tests/data/two_shots.json").read())
    shots = data["scenes"][0]["shots"]
    data["scenes"][0]["shots"] = [{**shots[i % 2], "id": f"s01_k{i + 1}", "narration": f"{name} — «merci»."}
                                  for i, name in enumerate(NAMES)]
    script = Script.model_validate(data)
    keyframes = [Keyframe(shot=s.id, image=f"keyframes/{s.id}.png", prompt="p", seed=0) for s in script.shots()]
    images = [Image.new("RGB", (64, 64), "grey") for _ in keyframes]
    board = storyboard(script, images, keyframes, 256)
    assert board.width == 4 * 256
    captions = np.asarray(board.convert("L"))[256:, :]
    for column in range(4):  # each caption has ink in its tile
        assert (captions[:, column * 256:(column + 1) * 256] < 128).sum() > 50
