"""Stage 4, review: Anim-Director's self-reflection on each keyframe candidate, an identity gate from memory, SAM
repair, and the choice of the shot's keyframe.

Each candidate goes through rounds, at most 1 + `review.max_rounds`:
  1. verdict: the director (task `verdict`) sees the candidate as it sends images (`Director.sent_image`; its boxes
     live in `Director.grounding`'s frame) and the present characters' sheets; it returns the text alignment (0-4),
     per present character a grounding box and on-model yes/no, and the visible distortions;
  2. identity: each present character is located (the director's box, else its layout box), segmented by SAM
     inside that box (the box itself when SAM finds nothing there), and its masked crop, padded to a square on
     white, is embedded (CLIP) and scored against memory: the best cosine to that character's entries;
  3. repair: each character under `review.identity_threshold` has its masked region inpainted with its sheet
     through IP-Adapter, and the next round reviews the repaired image. The last round repairs nothing, so a
     candidate costs at most 1 + max_rounds verdicts and max_rounds × characters inpaintings.
Candidates are ranked by (identity gate passed, verdict score, lowest identity, CLIP-T against the shot
description), best first, ties to the lower index; the verdict score is alignment - distortions - characters
the director judged off-model. The best candidate's last image becomes the keyframe, unless a person picked
another on the review page (picks.json, in the step key): then that one does. The director then writes
DreamFactory's context description of it (and, for the film's first shot, the base description), which the
next shots are drawn with. Every round's image, boxes, masks, scores and decisions go to
`keyframes/<shot>/verdict.json` (a Verdict): each choice is explainable from the run folder alone.
This module owns the review loop, the ranking rule and the review step; the crop geometry is crops.py's, the
backends come from the context.
"""

from __future__ import annotations

import logging

import numpy as np

from animagent import scoring
from animagent.artifacts import (
    CandidateReview,
    Candidates,
    Cast,
    CharacterCheck,
    Keyframe,
    Reference,
    ReviewRound,
    Script,
    Shot,
    Verdict,
)
from animagent.crops import character_mask, masked_crop
from animagent.memory import SIDECAR, Memory
from animagent.stages import Context
from animagent.tasks import KeyframeDescription, verdict_output

log = logging.getLogger(__name__)

RULE = ("identity gate passed, then verdict score (alignment - distortions - characters off-model), then the "
        "lowest identity, then CLIP-T; best first, ties to the lower index")

def review(
    ctx: Context, script: Script, cast: Cast, shot: Shot, candidates: Candidates, previous: list[Keyframe]
) -> Keyframe:
    """The shot's keyframe (step `review/<shot>`), chosen among its candidates."""
    run, config = ctx.run, ctx.config
    image_rel, json_rel = f"keyframes/{shot.id}.png", f"keyframes/{shot.id}.json"
    verdict_rel = f"keyframes/{shot.id}/verdict.json"
    take = ctx.takes.draw.get(shot.id, 0)
    picked = ctx.pick("keyframe", shot.id, len(candidates.images))
    step = ctx.step(
        f"review/{shot.id}", shot=shot.model_dump(include={"id", "description", "characters", "setting"}),
        style=script.style, candidates=run.sha(f"keyframes/{shot.id}/candidates.json"),
        images=[run.sha(rel) for rel in candidates.images], memory=run.sha(SIDECAR),
        sheets=[(run.sha(cast.character(p.character).image), _repair_prompt(script, cast, p.character))
                for p in shot.characters],
        setting=run.sha(cast.setting(shot.setting).image), first=not previous, review=config.review,
        director=config.director_key(), segmenter=config.segmenter, painter=config.painter,
        models=ctx.models.ids("painter", "director", "embedder", "segmenter"), take=take, **picked,
    )
    if step.todo:
        outputs: list[str] = []
        memory = Memory.load(run)
        rounds = [_rounds(ctx, i, script, cast, shot, candidates, memory, take, outputs)
                  for i in range(len(candidates.images))]
        finals = [run.read_image(r[-1].image) for r in rounds]
        embedder = ctx.models.get("embedder")
        clip_ts = scoring.clip_t(embedder.images(finals),
                                 np.repeat(embedder.texts([shot.description]), len(finals), axis=0))
        reviews = [summarize(i, candidates.seeds[i], r, float(t)) for i, (r, t) in enumerate(zip(rounds, clip_ts))]
        ranking = rank(reviews)
        chosen = reviews[picked.get("picked", ranking[0])]  # a person's pick on the review page wins
        verdict = Verdict(shot=shot.id, threshold=config.review.identity_threshold, max_rounds=config.review.max_rounds,
                          candidates=tuple(reviews), ranking=tuple(ranking), chosen=chosen.candidate, rule=RULE)
        run.write_model(verdict_rel, verdict)
        run.write_bytes(image_rel, run.path(chosen.rounds[-1].image).read_bytes())

        keyframe = run.read_image(image_rel)
        base = None
        if not previous:  # DreamFactory's base description: the first accepted keyframe, kept all film long
            base = ctx.models.get("director").ask(
                "base", {}, KeyframeDescription, images=[keyframe], seed=ctx.seed("base", shot.id, take=take),
            ).description.strip()
        context = ctx.models.get("director").ask(
            "context", {}, KeyframeDescription, images=[keyframe], seed=ctx.seed("context", shot.id, take=take),
        ).description.strip()
        run.write_model(json_rel, Keyframe(
            shot=shot.id, image=image_rel, prompt=candidates.prompt, seed=candidates.seeds[chosen.candidate],
            verdict=verdict_rel, base_description=base, context_description=context,
        ))
        step.record([*outputs, verdict_rel, image_rel, json_rel])
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


def _rounds(
    ctx: Context,
    index: int,
    script: Script,
    cast: Cast,
    shot: Shot,
    candidates: Candidates,
    memory: Memory,
    take: int,
    outputs: list[str],
) -> list[ReviewRound]:
    """One candidate's review rounds: verdict, identity, repair; the images and masks made are added to `outputs`."""
    from PIL import Image

    run, config = ctx.run, ctx.config
    folder = f"keyframes/{shot.id}/review"
    ids = [p.character for p in shot.characters]
    sheets = [run.read_image(cast.character(cid).image) for cid in ids]
    setting = Reference(image=cast.setting(shot.setting).image, scale=config.painter.setting_scale, layers="style")
    setting_image = run.read_image(setting.image)
    image_rel = candidates.images[index]
    image = run.read_image(image_rel)
    rounds: list[ReviewRound] = []
    for round_ in range(config.review.max_rounds + 1):
        # 1. verdict, on the image as the director sees it
        director = ctx.models.get("director")
        sent = director.sent_image(image)
        grounding = director.grounding(sent.size)
        reply = director.ask(
            "verdict",
            {"description": shot.description,
             "references": "\n".join(f"- {cid}: {script.character(cid).name}, image {n + 2}"
                                     for n, cid in enumerate(ids)) or "(no characters: no reference images)",
             "coordinates": grounding.words},
            verdict_output(ids, *grounding.frame),
            images=[sent, *sheets],
            seed=ctx.seed("verdict", shot.id, str(index), str(round_), take=take),
        )
        # 2. identity: locate, segment, embed and score each present character
        located, masks, crops = [], {}, []
        for n, placement in enumerate(shot.characters):
            found = getattr(reply.characters, f"c{n}")
            director_box = grounding.box(found.bbox_2d) if found is not None else None
            box = director_box or placement.box
            mask, mask_source, pixels = character_mask(image, box, ctx.models.get("segmenter"))
            mask_rel = f"{folder}/c{index}_r{round_}_{placement.character}.png"
            run.write_image(mask_rel, Image.fromarray(mask.astype(np.uint8) * 255))
            outputs.append(mask_rel)
            masks[placement.character] = mask
            crops.append(masked_crop(image, mask, pixels))
            located.append((placement.character, found, director_box, box, mask_rel, mask_source))
        vectors = ctx.models.get("embedder").images(crops) if crops else []
        checks = []
        for (cid, found, director_box, box, mask_rel, mask_source), vector in zip(located, vectors):
            identity, nearest = memory.identity(vector, cid)
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
            character = Reference(image=cast.character(cid).image, scale=config.painter.character_scale, layers="all")
            image = ctx.models.get("painter").repair(
                image, masks[cid], _repair_prompt(script, cast, cid), [character, setting],
                [sheets[ids.index(cid)], setting_image], config.review.repair_strength,
                ctx.seed("repair", shot.id, str(index), str(round_), cid, take=take),
            )
        image_rel = f"{folder}/c{index}_r{round_ + 1}.png"
        run.write_image(image_rel, image)
        outputs.append(image_rel)
    return rounds


def _repair_prompt(script: Script, cast: Cast, character_id: str) -> str:
    character = script.character(character_id)
    appearance = cast.character(character_id).appearance or character.appearance
    return f"{script.style.style_class} style, {script.style.description}. {character.name}: {appearance}."
