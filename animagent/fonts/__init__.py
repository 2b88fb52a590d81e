"""The fonts captions are drawn in, and drawing a line of any script with them.

DejaVu Sans (shipped inside matplotlib, a dependency; license LICENSE_DEJAVU beside it) covers Latin with
accents, Greek, Cyrillic, Arabic and Hebrew. WenQuanYi Micro Hei (shipped here, Apache-2.0: LICENSE-wqy-microhei.txt)
covers Chinese, Japanese and Korean; it is the fallback for every character DejaVu lacks. A line is split into
runs of characters that one font has, drawn one after another; Pillow's raqm layout shapes each run (Arabic
joins right to left). This module owns font choice, wrapping by measured width and drawing; not layout.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import ImageDraw, ImageFont


def font_files() -> list[Path]:
    """The caption fonts, first choice first."""
    import matplotlib

    return [
        Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf",
        Path(str(resources.files("animagent.fonts").joinpath("wqy-microhei.ttc"))),
    ]


@functools.cache
def _coverage(path: Path) -> frozenset[int]:
    from fontTools.ttLib import TTFont

    return frozenset(TTFont(path, fontNumber=0, lazy=True).getBestCmap())


@functools.cache
def _font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    from PIL import ImageFont

    return ImageFont.truetype(path, size)


def runs(text: str, size: int) -> list[tuple[str, ImageFont.FreeTypeFont]]:
    """`text` cut into runs, each with the first font that has its characters (the first font when none has one:
    spaces and combining marks stay with their neighbours)."""
    files = font_files()
    out: list[tuple[str, Path]] = []
    for ch in text:
        path = next((p for p in files if ord(ch) in _coverage(p)), None)
        if path is None or (ch.isspace() and out):
            path = out[-1][1] if out else files[0]
        if out and out[-1][1] == path:
            out[-1] = (out[-1][0] + ch, path)
        else:
            out.append((ch, path))
    return [(run, _font(path, size)) for run, path in out]


def text_width(text: str, size: int) -> float:
    return sum(font.getlength(run) for run, font in runs(text, size))


def wrap(text: str, width: float, size: int) -> list[str]:
    """Greedy wrap by measured width: at spaces, and inside a word (CJK has no spaces) where it must."""
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        candidate = f"{line} {word}" if line else word
        if text_width(candidate, size) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        line = ""
        for ch in word:
            if line and text_width(line + ch, size) > width:
                lines.append(line)
                line = ""
            line += ch
    if line:
        lines.append(line)
    return lines


def draw_text(pen: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, size: int, fill: str) -> None:
    x, y = xy
    for run, font in runs(text, size):
        pen.text((x, y), run, fill=fill, font=font)
        x += font.getlength(run)
