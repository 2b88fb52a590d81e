"""The report: one HTML file that opens offline, from a run's scorecard and the pictures it was measured on.

Images are base64 data URIs (downscaled), the chart is a matplotlib PNG, the CSS is inline, there is no script and
no external font. It shows the storyboard (each shot's narration, keyframe, the clip's poster frame, scores and
flags), a row per character with its crops, the film summary and the encoders' ids. This module owns the layout;
what is measured is stages/evaluate.py's.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from animagent import scoring
from animagent.artifacts import Script
from animagent.scorecard import Scorecard

if TYPE_CHECKING:
    from PIL import Image

THUMB_WIDTH = 480  # report images are downscaled to this width: the file stays small at 1024 px keyframes


@dataclass(frozen=True)
class Measured:
    """The scorecard plus the pictures the report shows (none of them is saved on its own)."""

    card: Scorecard
    keyframes: list[Image.Image]
    posters: list[Image.Image]  # each clip's middle frame
    crops: dict[str, list[tuple[str, Image.Image]]]  # character -> [(shot, crop)]
    sheets: dict[str, Image.Image]


def render_report(script: Script, measured: Measured) -> str:
    """The whole report as one HTML document (no external resources)."""
    card = measured.card
    film = card.film
    masked = "SAM-masked " if card.masked_crops else ""
    cssc_note = ("CSSC: share of keyframes in the majority style class" if film.cssc is not None
                 else "CSSC not scored: no style classifier was given")
    metrics = [
        ("CLIP-T", f"{film.clip_t:.1f}",
         "keyframe vs. shot description, 100·cos on CLIP (DreamFactory's average keyframe CLIP ×100)"),
        ("Subject consistency", f"{film.subject_consistency:.3f}", "VBench formula on DINOv2 frame features"),
        ("Background consistency", f"{film.background_consistency:.3f}", "VBench formula on CLIP frame features"),
        ("Motion", f"{film.motion:.3f}",
         "mean pixel change per frame (0 = still); keeps a frozen clip from scoring perfectly"),
        ("Identity", _fmt(film.identity),
         f"mean pairwise cosine of each character's {masked}crops across shots ({card.identity_encoder.upper()})"),
        ("Style consistency", _fmt(film.cssc), cssc_note),
        ("Keyframe similarity", _fmt(film.keyframe_similarity_mean),
         "consecutive keyframes, cosine on CLIP (Anim-Director's image-image similarity)"),
    ]
    metric_html = "".join(
        f'<div class="metric"><div class="label">{_e(label)}</div><div class="value">{_e(value)}</div>'
        f'<div class="note">{_e(note)}</div></div>'
        for label, value, note in metrics
    )
    shot_cards = []
    for i, shot_score in enumerate(card.shots):
        shot = script.shot(shot_score.shot)
        rows = [
            ("CLIP-T", f"{shot_score.clip_t:.1f}", shot_score.clip_t / 100),
            ("Subject consistency", f"{shot_score.subject_consistency:.3f}", shot_score.subject_consistency),
            ("Background consistency", f"{shot_score.background_consistency:.3f}", shot_score.background_consistency),
            ("Motion", f"{shot_score.motion:.3f}", shot_score.motion * 10),  # the bar is full at 0.1
        ]
        if i > 0:
            value = film.keyframe_similarity[i - 1]
            rows.append(("Similarity to previous keyframe", f"{value:.3f}", max(0.0, value)))
        row_html = "".join(
            f'<tr><td>{_e(name)}</td><td class="num">{_e(text)}<span class="bar"><span style="width:'
            f'{100 * max(0.0, min(1.0, fill)):.0f}%"></span></span></td></tr>'
            for name, text, fill in rows
        )
        chips = [('warn', "still clip") if f == "still" else ('warn', "frame spike") for f in shot_score.flags]
        if not shot_score.flags:
            chips.append(("ok", "moves, no spike"))
        if shot_score.style_class is not None:
            chips.append(("", f"style: {shot_score.style_class}"))
        chip_html = "".join(f'<span class="chip {kind}">{_e(text)}</span>' for kind, text in chips)
        people = ", ".join(script.character(p.character).name for p in shot.characters) or "no characters"
        shot_cards.append(
            f'<article class="shot"><div class="frames">'
            f'{_figure(measured.keyframes[i], "keyframe")}{_figure(measured.posters[i], "clip, middle frame")}</div>'
            f'<div class="body"><div class="head"><span class="id">{_e(shot.id)}</span>'
            f'<span class="tags">{_e(shot.camera)} · {_e(shot.motion)} · {shot.duration_s} s</span></div>'
            f'<p class="narration">“{_e(shot.narration)}”</p>'
            f'<p class="description">{_e(shot.description)} <span class="who">({_e(people)})</span></p>'
            f'<table class="scores">{row_html}</table><div class="chips">{chip_html}</div></div></article>'
        )
    character_rows = []
    for score in card.characters:
        character = script.character(score.character)
        crop_html = "".join(
            f'<figure>{_img(crop, 160)}<figcaption>{_e(shot)}</figcaption></figure>'
            for shot, crop in measured.crops.get(score.character, [])
        ) or '<p class="muted">not placed in any shot</p>'
        sheet = measured.sheets.get(score.character)
        character_rows.append(
            f'<article class="character"><div class="who"><h3>{_e(character.name)}</h3>'
            f'<p class="muted">{_e(character.appearance)}</p></div>'
            f'<figure class="sheet">{_img(sheet, 200) if sheet is not None else ""}<figcaption>cast sheet</figcaption>'
            f'</figure><div class="crops">{crop_html}</div>'
            f'<dl><dt>Identity across shots</dt><dd>{_e(_fmt(score.identity))}</dd>'
            f'<dt>Similarity to sheet</dt><dd>{_e(_fmt(score.reference))}</dd></dl></article>'
        )
    encoder_rows = "".join(
        f"<tr><td>{_e(e.role)}</td><td>{_e(e.name)}</td><td>{_e(e.repo_id)}</td><td><code>{_e(e.revision)}</code></td>"
        f"<td>{_e(e.flavor)}</td></tr>"
        for e in card.encoders
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(card.title)} · animagent report</title><style>{_CSS}</style></head>
<body><header><div class="wrap"><p class="kicker">animagent evaluation report</p><h1>{_e(card.title)}</h1>
<p>{_e(script.style.style_class)} · {_e(script.style.description)} · {len(card.shots)} shots ·
{len(card.characters)} characters</p></div></header>
<main class="wrap">
<h2>Film</h2><section class="metrics">{metric_html}</section>
<figure class="chart">{_chart(card)}</figure>
<h2>Storyboard</h2><section class="board">{"".join(shot_cards)}</section>
<h2>Characters</h2><section class="cast">{"".join(character_rows)}</section>
<h2>How these numbers are made</h2><section class="method">
<p>Formulas are in <code>animagent/scoring.py</code>, the same functions that choose candidates during a run.
Subject and background consistency follow VBench: for every frame after the first, the mean of
max(0, cos) to the previous and to the first frame, averaged over the clip; identical frames score 1.
VBench uses DINO v1 ViT-B/16 and CLIP ViT-B/32, so numbers are comparable with its tables only when the
encoders below match. The seeds print CLIP similarities as cosines (≈0.29); CLIP-T here is 100·cos.
A spike is a frame-to-frame change more than {scoring.SPIKE_Z:.0f} standard deviations above the clip's mean change;
a clip is still when it changes less than one grey level per pixel per frame.</p>
<table class="encoders"><tr><th>role</th><th>name</th><th>repository</th><th>revision</th><th>weights</th></tr>
{encoder_rows}</table></section></main></body></html>
"""
    # Text from a model may hold lone surrogates that UTF-8 cannot encode; they become "?" in the report only.
    return page.encode("utf-8", errors="replace").decode("utf-8")


def _chart(card: Scorecard) -> str:
    """Per-shot scores as an embedded PNG: CLIP-T/100 and the two consistencies, and motion."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ids = [s.shot for s in card.shots]
    x = np.arange(len(ids))
    figure = Figure(figsize=(11, 3.4), dpi=110)
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2, gridspec_kw={"width_ratios": [2.2, 1]})
    series = [
        ("CLIP-T / 100", [s.clip_t / 100 for s in card.shots], "#c2562d"),
        ("subject consistency", [s.subject_consistency for s in card.shots], "#2f6f9f"),
        ("background consistency", [s.background_consistency for s in card.shots], "#6b9f4a"),
    ]
    width = 0.8 / len(series)
    for n, (label, values, color) in enumerate(series):
        left.bar(x + (n - 1) * width, values, width, label=label, color=color)
    left.set_ylim(0, 1.05)
    left.set_title("Per-shot scores", loc="left", fontsize=11)
    left.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False, ncols=3)
    right.bar(x, [s.motion for s in card.shots], 0.6, color="#8a6bb0")
    right.set_title("Motion per shot", loc="left", fontsize=11)
    for axes in (left, right):
        axes.set_xlim(-0.6, max(len(ids), 6) - 0.4)  # a short film keeps slim bars instead of stretching them
        axes.set_xticks(x, ids, rotation=45 if len(ids) > 8 else 0, fontsize=8)
        axes.spines[["top", "right"]].set_visible(False)
        axes.tick_params(axis="y", labelsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return f'<img alt="per-shot scores" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _figure(image: Image.Image, caption: str) -> str:
    return f"<figure>{_img(image, THUMB_WIDTH)}<figcaption>{_e(caption)}</figcaption></figure>"


def _img(image: Image.Image, max_width: int) -> str:
    """An <img> with the image as a data URI: downscaled to `max_width`, PNG when small, else JPEG."""
    from PIL import Image

    image = image.convert("RGB")
    if image.width > max_width:
        image = image.resize((max_width, max(1, round(image.height * max_width / image.width))), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    small = image.width * image.height <= 256 * 256
    image.save(buffer, format="PNG" if small else "JPEG", quality=85)
    mime = "image/png" if small else "image/jpeg"
    pixelated = ' class="px"' if image.width < 160 else ""
    return f'<img{pixelated} alt="" src="data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)


_CSS = """
:root{--ink:#1d2330;--muted:#5d6678;--paper:#f4f1ea;--card:#fff;--line:#e2ddd2;--accent:#c2562d}
*{box-sizing:border-box}
body{margin:0;background:var(--paper);color:var(--ink);
 font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
.wrap{max-width:1240px;margin:0 auto;padding:0 36px}
header{background:var(--ink);color:#fff;padding:30px 0 26px}
header h1{margin:2px 0 6px;font-size:30px;font-weight:650;letter-spacing:-.01em}
header p{margin:0;color:#c7cdd9}
header .kicker{text-transform:uppercase;letter-spacing:.12em;font-size:12px;color:#e9a27f}
main{padding-bottom:48px}
h2{font-size:13px;margin:34px 0 12px;text-transform:uppercase;letter-spacing:.1em;color:var(--muted);font-weight:650}
.metrics{display:grid;grid-template-columns:repeat(auto-fill,minmax(148px,1fr));gap:12px}
.metric{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:13px 15px}
.metric .label{font-weight:600;font-size:13.5px}
.metric .value{font-size:28px;font-weight:680;font-variant-numeric:tabular-nums;margin:2px 0}
.metric .note{color:var(--muted);font-size:12px;line-height:1.35}
figure{margin:0}
.chart{margin-top:16px}
.chart img{width:100%;display:block;background:#fff;border:1px solid var(--line);border-radius:10px}
.board{display:grid;grid-template-columns:repeat(auto-fill,minmax(350px,1fr));gap:16px}
.shot{background:var(--card);border:1px solid var(--line);border-radius:12px;overflow:hidden}
.frames{display:grid;grid-template-columns:1fr 1fr;gap:2px;background:var(--ink)}
.frames figure{position:relative}
.frames img{width:100%;display:block}
img.px{image-rendering:pixelated}
.frames figcaption{position:absolute;left:6px;bottom:6px;font-size:11px;color:#fff;background:rgba(20,22,30,.6);
 padding:1px 7px;border-radius:4px}
.body{padding:12px 15px 15px}
.head{display:flex;justify-content:space-between;align-items:baseline;gap:8px}
.id{font-weight:700;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px}
.tags{color:var(--muted);font-size:12.5px}
.narration{font-style:italic;margin:8px 0 4px;font-size:15.5px}
.description{color:var(--muted);font-size:13px;margin:0 0 10px}
.scores{width:100%;border-collapse:collapse;font-size:13px}
.scores td{padding:4px 0;border-top:1px solid var(--line)}
.scores td.num{text-align:right;font-variant-numeric:tabular-nums;font-weight:600;white-space:nowrap}
.bar{display:inline-block;vertical-align:middle;width:80px;height:6px;margin-left:10px;background:#ece8df;
 border-radius:3px;overflow:hidden}
.bar span{display:block;height:100%;background:var(--accent)}
.chips{margin-top:10px;display:flex;gap:6px;flex-wrap:wrap}
.chip{font-size:12px;padding:2px 9px;border-radius:999px;background:#eee9df}
.chip.ok{background:#dcefe2;color:#1f5c38}
.chip.warn{background:#fbe8cc;color:#7a4b0c}
.cast{display:flex;flex-direction:column;gap:12px}
.character{display:grid;grid-template-columns:230px 130px 1fr 190px;gap:18px;align-items:center;
 background:var(--card);border:1px solid var(--line);border-radius:12px;padding:14px 16px}
.character h3{margin:0 0 4px;font-size:17px}
.muted{color:var(--muted);font-size:13px;margin:0}
.sheet img{width:120px;border-radius:6px;border:1px solid var(--line);display:block}
.sheet figcaption,.crops figcaption{font-size:11px;color:var(--muted);text-align:center;margin-top:3px}
.crops{display:flex;gap:10px;flex-wrap:wrap}
.crops img{height:110px;border-radius:6px;border:1px solid var(--line);display:block;background:#fff}
dl{margin:0;display:grid;grid-template-columns:1fr auto;gap:4px 12px;font-size:13px}
dt{color:var(--muted)}
dd{margin:0;font-weight:650;font-variant-numeric:tabular-nums;text-align:right}
.method p{max-width:880px;font-size:14px}
.encoders{border-collapse:collapse;font-size:13px;background:var(--card);border:1px solid var(--line)}
.encoders th,.encoders td{padding:6px 12px;text-align:left;border-bottom:1px solid var(--line)}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
@media (max-width:820px){.character{grid-template-columns:1fr}.wrap{padding:0 16px}}
"""
