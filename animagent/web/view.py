"""What the review page shows, read straight from a run folder's JSON artifacts: never by replaying a stage.

`load(root)` returns a RunView: the script, the cast sheets, per shot its keyframe candidates with the review's
verdict, its clip candidates with their scores and the director's pick, the chosen keyframe and clip and its
spoken narration; the user's picks, and the scorecard. A file that is not written yet is None (a run in progress is a normal sight);
a file that does not validate is listed in `problems` instead of failing the page.
This module owns that reading; it knows nothing about HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from animagent.artifacts import (
    Candidates,
    CharacterSheet,
    Clip,
    ClipCandidates,
    ClipReview,
    Keyframe,
    MotionChoice,
    Picks,
    Script,
    SettingSheet,
    Shot,
    ShotSpeech,
    Takes,
    Verdict,
)
from animagent.errors import InputError
from animagent.runfolder import RunFolder
from animagent.scorecard import Scorecard, ShotScore
from animagent.stages import PICKS
from animagent.stages.assemble import FILM
from animagent.stages.evaluate import SCORECARD
from animagent.stages.plan import SCRIPT
from animagent.stages.speak import SPEECH
from animagent.studio import TAKES

A = TypeVar("A", bound=BaseModel)



@dataclass(frozen=True)
class ShotView:
    shot: Shot
    keyframe: Keyframe | None
    candidates: Candidates | None
    verdict: Verdict | None
    clips: ClipCandidates | None
    clip_review: ClipReview | None
    motion: MotionChoice | None
    clip: Clip | None
    speech: ShotSpeech | None
    score: ShotScore | None


@dataclass(frozen=True)
class RunView:
    root: Path
    script: Script | None
    characters: dict[str, CharacterSheet | None]
    settings: dict[str, SettingSheet | None]
    shots: list[ShotView]
    picks: Picks
    takes: Takes
    scorecard: Scorecard | None
    film: bool
    problems: list[str] = field(default_factory=list)


def load(root: Path) -> RunView:
    run = RunFolder(root)
    problems: list[str] = []

    def read(rel: str, kind: type[A]) -> A | None:
        if not run.exists(rel):
            return None
        try:
            return run.read_model(rel, kind)
        except InputError as exc:
            problems.append(str(exc))
            return None

    script = read(SCRIPT, Script)
    scorecard = read(SCORECARD, Scorecard)
    picks = read(PICKS, Picks) or Picks()
    takes = read(TAKES, Takes) or Takes()
    if script is None:
        return RunView(run.root, None, {}, {}, [], picks, takes, scorecard, run.exists(FILM), problems)
    scores = {s.shot: s for s in scorecard.shots} if scorecard is not None else {}
    shots = [
        ShotView(
            shot=shot,
            keyframe=read(f"keyframes/{shot.id}.json", Keyframe),
            candidates=read(f"keyframes/{shot.id}/candidates.json", Candidates),
            verdict=read(f"keyframes/{shot.id}/verdict.json", Verdict),
            clips=read(f"clips/{shot.id}/candidates.json", ClipCandidates),
            clip_review=read(f"clips/{shot.id}/review.json", ClipReview),
            motion=read(f"clips/{shot.id}/motion.json", MotionChoice),
            clip=read(f"clips/{shot.id}.json", Clip),
            speech=read(f"{SPEECH}/{shot.id}.json", ShotSpeech),
            score=scores.get(shot.id),
        )
        for shot in script.shots()
    ]
    return RunView(
        root=run.root,
        script=script,
        characters={c.id: read(f"cast/characters/{c.id}.json", CharacterSheet) for c in script.characters},
        settings={s.id: read(f"cast/settings/{s.id}.json", SettingSheet) for s in script.settings},
        shots=shots,
        picks=picks,
        takes=takes,
        scorecard=scorecard,
        film=run.exists(FILM),
        problems=problems,
    )
