"""Stage 4, review: Anim-Director's self-reflection on each keyframe candidate, an identity gate from memory, SAM
repair, and the choice of the shot's keyframe.

Each candidate goes through rounds, at most 1 + `review.max_rounds`:
  1. verdict: the director (task `verdict`) sees the candidate, resized to `director_size` so Qwen2.5-VL's pixel
     boxes are in a known frame, and the present characters' sheets; it returns the text alignment (0-4), per
     present character a grounding box and on-model yes/no, and the visible distortions;
  2. identity: each present character is located (the director's box, else its layout box), segmented by SAM
     inside that box (the box itself when SAM finds nothing there), and its masked crop, padded to a square on
     white, is embedded (CLIP) and scored against memory: the best cosine to that character's entries;
  3. repair: each character under `review.identity_threshold` has its masked region inpainted with its sheet
     through IP-Adapter, and the next round reviews the repaired image. The last round repairs nothing, so a
     candidate costs at most 1 + max_rounds verdicts and max_rounds × characters inpaintings.
Candidates are ranked by (identity gate passed, verdict score, lowest identity, CLIP-T against the shot
description), best first, ties to the lower index; the verdict score is alignment - distortions - characters
the director judged off-model. The best candidate's last image becomes the keyframe. The director then writes
DreamFactory's context description of it (and, for the film's first shot, the base description), which the
next shots are drawn with. Every round's image, boxes, masks, scores and decisions go to
`keyframes/<shot>/verdict.json` (a Verdict): each choice is explainable from the run folder alone.
This module owns the review loop, the ranking rule and the review step; backends come in as zero-arg callables.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import numpy as np

from animagent import scoring
from animagent.artifacts import (
    Box,
    CandidateReview,
    Candidates,
    Cast,
    CharacterCheck,
    Keyframe,
    ReviewRound,
    Script,
    Shot,
    Takes,
    Verdict,
)
from animagent.backends.director import Director, grounding_box, grounding_frame
from animagent.config import Config
from animagent.memory import SIDECAR, Memory
from animagent.runfolder import RunFolder, derive_seed, step_key
from animagent.tasks import KeyframeDescription, verdict_output

if TYPE_CHECKING:
    from PIL import Image

    from animagent.backends.embedder import ClipEmbedder
    from animagent.backends.painter_sdxl import SDXLPainter

log = logging.getLogger(__name__)

RULE = ("identity gate passed, then verdict score (alignment - distortions - characters off-model), then the "
        "lowest identity, then CLIP-T; best first, ties to the lower index")
MASK_FILL = (255, 255, 255)  # outside the mask a crop is white, like the sheets' plain background


class Segmenter(Protocol):
    def mask(self, image: Image.Image, box: tuple[int, int, int, int]) -> np.ndarray: ...


def review(
    script: Script,
    cast: Cast,
    shot: Shot,
    candidates: Candidates,
    previous: list[Keyframe],
    run: RunFolder,
    director: Callable[[], Director],
    embedder: Callable[[], ClipEmbedder],
    segmenter: Callable[[], Segmenter],
    painter: Callable[[], SDXLPainter],
    memory: Callable[[], Memory],
    config: Config,
    models: list,
    takes: Takes,
) -> Keyframe:
    """The shot's keyframe (step `review/<shot>`), chosen among its candidates."""
    image_rel, json_rel = f"keyframes/{shot.id}.png", f"keyframes/{shot.id}.json"
    verdict_rel = f"keyframes/{shot.id}/verdict.json"
    take = takes.draw.get(shot.id, 0)
    step = f"review/{shot.id}"
    key = step_key(
        step=step, shot=shot.model_dump(include={"id", "description", "characters", "setting"}), style=script.style, candidates=run.sha(f"keyframes/{shot.id}/candidates.json"),
        images=[run.sha(rel) for rel in candidates.images], memory=run.sha(SIDECAR),
        sheets=[(run.sha(cast.character(p.character).image), _repair_prompt(script, cast, p.character))
                for p in shot.characters],
        setting=run.sha(cast.setting(shot.setting).image), first=not previous, review=config.review,
        director=config.director_key(), segmenter=config.segmenter, painter=config.painter, models=models, take=take,
    )
    if not run.done(step, key):
        started = time.perf_counter()
        outputs: list[str] = []
        rounds = [
            _rounds(i, script, cast, shot, candidates, run, director, embedder, segmenter, painter, memory, config,
                    take, outputs)
            for i in range(len(candidates.images))
        ]
        finals = [run.read_image(r[-1].image) for r in rounds]
        clip_ts = scoring.clip_t(embedder().images(finals),
                                 np.repeat(embedder().texts([shot.description]), len(finals), axis=0))
        reviews = [summarize(i, candidates.seeds[i], r, float(t)) for i, (r, t) in enumerate(zip(rounds, clip_ts))]
        ranking = rank(reviews)
        chosen = reviews[ranking[0]]
        verdict = Verdict(shot=shot.id, threshold=config.review.identity_threshold, max_rounds=config.review.max_rounds,
                          candidates=tuple(reviews), ranking=tuple(ranking), chosen=chosen.candidate, rule=RULE)
        run.write_model(verdict_rel, verdict)
        run.write_bytes(image_rel, run.path(chosen.rounds[-1].image).read_bytes())

        keyframe = run.read_image(image_rel)
        base = None
        if not previous:  # DreamFactory's base description: the first accepted keyframe, kept all film long
            base = director().ask("base", {}, KeyframeDescription, images=[keyframe],
                                  seed=derive_seed(config.seed, "base", shot.id, take=take)).description.strip()
        context = director().ask("context", {}, KeyframeDescription, images=[keyframe],
                                 seed=derive_seed(config.seed, "context", shot.id, take=take)).description.strip()
        run.write_model(json_rel, Keyframe(
            shot=shot.id, image=image_rel, prompt=candidates.prompt, seed=candidates.seeds[chosen.candidate],
            verdict=verdict_rel, base_description=base, context_description=context,
        ))
        run.record(step, key, [*outputs, verdict_rel, image_rel, json_rel], time.perf_counter() - started)
        log.info("review %s: candidate %d of %d (gate %s, verdict %d, identity %s, CLIP-T %.1f)", shot.id,
                 chosen.candidate, len(reviews), "passed" if chosen.identity_passed else "failed",
                 chosen.verdict_score, "-" if chosen.identity is None else f"{chosen.identity:.3f}", chosen.clip_t)
        if not chosen.identity_passed:
            log.warning("review %s: no candidate reached identity %.2f after %d repair round(s); the best is kept "
                        "(see %s)", shot.id, config.review.identity_threshold, config.review.max_rounds, verdict_rel)
    return run.read_model(json_rel, Keyframe)


def summarize(index: int, seed: int, rounds: list[ReviewRound], clip_t: float) -> CandidateReview:
    """A candidate's review, judged on its last round (the image it would be kept as)."""
    last = rounds[-1]
    identities = [c.identity for c in last.characters]
    return CandidateReview(
        candidate=index, seed=seed, rounds=tuple(rounds), identity_passed=all(c.passed for c in last.characters),
        verdict_score=last.alignment - len(last.distortions) - sum(c.on_model is False for c in last.characters),
        identity=min(identities) if identities else None, clip_t=clip_t,
    )


def rank(reviews: list[CandidateReview]) -> list[int]:
    """Candidate indices, best first, by RULE (a stable sort: equal candidates keep their order)."""
    return sorted(
        range(len(reviews)),
        key=lambda i: (reviews[i].identity_passed, reviews[i].verdict_score,
                       1.0 if reviews[i].identity is None else reviews[i].identity, reviews[i].clip_t),
        reverse=True,
    )


def passes(identity: float, threshold: float) -> bool:
    """The identity gate: a character is accepted at or above the threshold and repaired below it."""
    return identity >= threshold


def character_mask(
    image: Image.Image, box: Box, segmenter: Callable[[], Segmenter]
) -> tuple[np.ndarray, str, tuple[int, int, int, int]]:
    """(bool mask of the image's size, "sam" or "box", the box in pixels): SAM's mask inside the box, or the
    whole box when SAM finds nothing inside it (a mask that never leaves the box cannot grab a neighbour)."""
    pixels = box_pixels(box, image.width, image.height)
    x0, y0, x1, y1 = pixels
    inside = np.zeros((image.height, image.width), dtype=bool)
    inside[y0:y1, x0:x1] = True
    sam = np.asarray(segmenter().mask(image, pixels), dtype=bool) & inside
    return (sam, "sam", pixels) if sam.any() else (inside, "box", pixels)


def box_pixels(box: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """The box in pixels, at least one pixel wide and high and inside the image."""
    x0, y0, x1, y1 = box.to_pixels(width, height)
    x0, y0 = min(x0, width - 1), min(y0, height - 1)
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def masked_crop(image: Image.Image, mask: np.ndarray, pixels: tuple[int, int, int, int]) -> Image.Image:
    """The box's crop with everything outside the mask white, padded to a square: CLIP's processor centre-crops
    a tall crop, which would cut off a standing character's head and feet."""
    from PIL import Image

    rgb = image.convert("RGB")
    masked = Image.composite(rgb, Image.new("RGB", rgb.size, MASK_FILL), Image.fromarray(mask.astype(np.uint8) * 255))
    crop = masked.crop(pixels)
    side = max(crop.size)
    square = Image.new("RGB", (side, side), MASK_FILL)
    square.paste(crop, ((side - crop.width) // 2, (side - crop.height) // 2))
    return square


def _rounds(
    index: int,
    script: Script,
    cast: Cast,
    shot: Shot,
    candidates: Candidates,
    run: RunFolder,
    director: Callable[[], Director],
    embedder: Callable[[], ClipEmbedder],
    segmenter: Callable[[], Segmenter],
    painter: Callable[[], SDXLPainter],
    memory: Callable[[], Memory],
    config: Config,
    take: int,
    outputs: list[str],
) -> list[ReviewRound]:
    """One candidate's review rounds: verdict, identity, repair; the images and masks made are added to `outputs`."""
    from PIL import Image

    from animagent.backends import painter_sdxl
    from animagent.backends.director_openai import director_size

    folder = f"keyframes/{shot.id}/review"
    ids = [p.character for p in shot.characters]
    sheets = [run.read_image(cast.character(cid).image) for cid in ids]
    style = painter_sdxl.Reference(run.read_image(cast.setting(shot.setting).image), config.painter.setting_scale)
    convention = config.director.box_convention
    image_rel = candidates.images[index]
    image = run.read_image(image_rel)
    rounds: list[ReviewRound] = []
    for round_ in range(config.review.max_rounds + 1):
        # 1. verdict, on the image as the director sees it
        sent_size = director_size(image.width, image.height, config.director.max_pixels)
        sent = image if sent_size == image.size else image.resize(sent_size, Image.Resampling.LANCZOS)
        reply = director().ask(
            "verdict",
            {"description": shot.description,
             "references": "\n".join(f"- {cid}: {script.character(cid).name}, image {n + 2}"
                                     for n, cid in enumerate(ids)) or "(no characters: no reference images)",
             "coordinates": _coordinates(convention, sent_size)},
            verdict_output(ids, *grounding_frame(convention, sent_size)),
            images=[sent, *sheets],
            seed=derive_seed(config.seed, "verdict", shot.id, str(index), str(round_), take=take),
        )
        # 2. identity: locate, segment, embed and score each present character
        located, masks, crops = [], {}, []
        for n, placement in enumerate(shot.characters):
            found = getattr(reply.characters, f"c{n}")
            director_box = grounding_box(found.bbox_2d, convention, sent_size) if found is not None else None
            box = director_box or placement.box
            mask, mask_source, pixels = character_mask(image, box, segmenter)
            mask_rel = f"{folder}/c{index}_r{round_}_{placement.character}.png"
            run.write_image(mask_rel, Image.fromarray(mask.astype(np.uint8) * 255))
            outputs.append(mask_rel)
            masks[placement.character] = mask
            crops.append(masked_crop(image, mask, pixels))
            located.append((placement.character, found, director_box, box, mask_rel, mask_source))
        vectors = embedder().images(crops) if crops else []
        checks = []
        for (cid, found, director_box, box, mask_rel, mask_source), vector in zip(located, vectors):
            identity, nearest = memory().identity(vector, cid)
            checks.append(CharacterCheck(
                character=cid, seen=found is not None, on_model=found.on_model if found is not None else None,
                director_box=director_box, box=box, box_source="layout" if director_box is None else "director",
                mask=mask_rel, mask_source=mask_source, identity=identity, nearest=nearest,
                passed=passes(identity, config.review.identity_threshold),
            ))
        # 3. repair the characters under the threshold, unless this is the last round
        failing = [c.character for c in checks if not c.passed]
        repair = bool(failing) and round_ < config.review.max_rounds
        rounds.append(ReviewRound(
            round=round_, image=image_rel, alignment=reply.alignment,
            distortions=tuple(dict.fromkeys(reply.distortions)), characters=tuple(checks),
            repaired=tuple(failing) if repair else (),
        ))
        if not repair:
            return rounds
        for cid in failing:
            image = painter().repair(
                image, masks[cid], _repair_prompt(script, cast, cid),
                painter_sdxl.Reference(sheets[ids.index(cid)], config.painter.character_scale), style,
                config.review.repair_strength,
                derive_seed(config.seed, "repair", shot.id, str(index), str(round_), cid, take=take),
            )
        image_rel = f"{folder}/c{index}_r{round_ + 1}.png"
        run.write_image(image_rel, image)
        outputs.append(image_rel)
    return rounds


def _repair_prompt(script: Script, cast: Cast, character_id: str) -> str:
    character = script.character(character_id)
    appearance = cast.character(character_id).appearance or character.appearance
    return f"{script.style.style_class} style, {script.style.description}. {character.name}: {appearance}."


def _coordinates(convention: str, sent_size: tuple[int, int]) -> str:
    if convention == "qwen3":
        return "on a 0 to 1000 grid of the keyframe, x from the left, y from the top"
    return f"in pixels of the keyframe, which is {sent_size[0]} wide and {sent_size[1]} high"
