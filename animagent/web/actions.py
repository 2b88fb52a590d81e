"""What the review page changes in a run folder, each under the run's writer lock like every CLI write:
the user's candidate picks (`picks.json`) and edits of one shot in `script.json`.

An edit builds the whole new Script and validates it (the same model `animagent resume` reads); an invalid one
raises InputError with the validation message and writes nothing. Rendering what changed is not done here: the
page then starts `animagent resume` (jobs.py), the CLI's own machinery.
This module owns these two writes; it knows nothing about HTTP.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from animagent.artifacts import Candidates, ClipCandidates, Picks, Script
from animagent.errors import InputError
from animagent.runfolder import RunFolder
from animagent.stages import PICKS
from animagent.stages.plan import SCRIPT

# Where a character newly placed in a shot stands until its box is edited in script.json: the middle of the frame.
NEW_BOX = {"x0": 0.3, "y0": 0.1, "x1": 0.7, "y1": 0.95}


def pick(root: Path, kind: Literal["keyframe", "clip"], shot_id: str, candidate: int) -> Picks:
    """Record that `candidate` is this shot's keyframe (or clip) whatever the ranking or the director said."""
    run = RunFolder(root)
    with run.lock():
        script = _script(run)
        _shot_ids(script, shot_id)
        if kind == "keyframe":
            rel = f"keyframes/{shot_id}/candidates.json"
            count = len(run.read_model(rel, Candidates).images) if run.exists(rel) else 0
        else:
            rel = f"clips/{shot_id}/candidates.json"
            count = len(run.read_model(rel, ClipCandidates).clips) if run.exists(rel) else 0
        if not 0 <= candidate < count:
            raise InputError(f"shot {shot_id} has {count} {kind} candidate(s); there is no candidate {candidate}")
        data = (run.read_model(PICKS, Picks) if run.exists(PICKS) else Picks()).model_dump()
        data["keyframes" if kind == "keyframe" else "clips"][shot_id] = candidate
        picks = Picks.model_validate(data)
        run.write_model(PICKS, picks)
    return picks


def edit_shot(
    root: Path, shot_id: str, narration: str, description: str, characters: list[str], duration_s: int
) -> Script:
    """Replace one shot's narration, description, characters (ids, in order) and duration in script.json.

    Characters already in the shot keep their layout boxes; a new one gets NEW_BOX."""
    from animagent.runs import open_run
    from animagent.stages.plan import check_script

    limits = open_run(root).limits
    run = RunFolder(root)
    with run.lock():
        script = _script(run)
        _shot_ids(script, shot_id)
        data = script.model_dump(mode="json")
        for scene in data["scenes"]:
            for shot in scene["shots"]:
                if shot["id"] == shot_id:
                    boxes = {p["character"]: p["box"] for p in shot["characters"]}
                    shot.update(narration=narration.strip(), description=description.strip(), duration_s=duration_s,
                                characters=[{"character": c, "box": boxes.get(c, NEW_BOX)} for c in characters])
        try:
            edited = Script.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise InputError(f"edit of shot {shot_id} refused: {where + ': ' if where else ''}{err['msg']}") from None
        check_script(edited, limits)  # the limits `animagent resume` holds an edited script to
        if edited != script:
            run.write_model(SCRIPT, edited)
    return edited


def _script(run: RunFolder) -> Script:
    if not run.exists(SCRIPT):
        raise InputError(f"{run.root} has no script.json yet; finish planning with `animagent resume {run.root}`")
    return run.read_model(SCRIPT, Script)


def _shot_ids(script: Script, shot_id: str) -> None:
    ids = [s.id for s in script.shots()]
    if shot_id not in ids:
        raise InputError(f"no shot '{shot_id}' in script.json; shots: {', '.join(ids)}")
