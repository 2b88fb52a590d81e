"""Stage 3, speak: voices cast for the narrator and the characters, each shot's narration spoken, each shot's
length fitted to its speech (DreamFactory's speech-centred editing), after the cast and before draw: the shots are
animated at the fitted lengths as soon as their keyframes are accepted.

`cast_voices` asks the director once (task `voice`: voice ids are an enum of the voice model's, characters are
required keys, each shot's speaker is "narrator" or a character present in it) and returns the script with
`narrator_voice`, every character's `voice` and every shot's `speaker` filled, saved as script.json, where a
user may change any of them (the plan step's record then holds the cast script). Only what is missing is asked
for: a character with a voice (in the script, or in its cast-library entry) keeps it, and speakers are decided only
on the first casting. A library character cast here for the first time has its voice written into its entry, so
it sounds the same in the next story.

`speak` then speaks each shot (step `speak/<shot>`: its narration, voice, the voice settings, the film's fps and
planned length), trims the model's near-silent lead-in and tail, normalises it to `voice.loudness_lufs`, fades
its ends, and writes `speech/<shot>.wav`: the speech from the shot's first sample, then silence to the shot's
end. A shot lasts its planned seconds, or its speech plus `voice.pause_s` when that is longer (rounded up to
whole frames); a shot with nothing to say (empty narration, only punctuation or emoji) is silence of its planned
length. The fitted lengths come back as a `Narration`, which animate and assemble use instead of the script's
seconds; the subtitle cue of a shot ends with its speech. This module owns casting and timing; the voice backend speaks and animagent/audio.py does the
sample arithmetic.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

from animagent import audio, castlib
from animagent.artifacts import Narration, Script, ShotSpeech
from animagent.config import Config
from animagent.errors import InputError
from animagent.stages import Context
from animagent.stages.plan import SCRIPT
from animagent.tasks import voice_output
from animagent.weights import spec

log = logging.getLogger(__name__)

SPEECH = "speech"


def voice_ids(config: Config) -> list[str]:
    """The voices of the configured voice model, from the registry (no model is loaded)."""
    return sorted(Path(f.path).stem for f in spec(config.voice.weights).files if f.path.startswith("voices/"))


def voice_of(script: Script, shot_id: str) -> str | None:
    """The voice that speaks `shot_id`: its speaker's, else the narrator's."""
    shot = script.shot(shot_id)
    return script.character(shot.speaker).voice if shot.speaker else script.narrator_voice


def uncast(script: Script) -> Script:
    """`script` as it was before `cast_voices`: no narrator voice, character voices or speakers."""
    data = script.model_dump(mode="json")
    data["narrator_voice"] = None
    for character in data["characters"]:
        character["voice"] = None
    for scene in data["scenes"]:
        for shot in scene["shots"]:
            shot["speaker"] = None
    return Script.model_validate(data)


def cast_voices(ctx: Context, script: Script) -> Script:
    """`script` with every voice and speaker decided (see the module docstring), written to script.json when
    anything changed; asks the director only when the narrator or a character has no voice yet."""
    config = ctx.config
    library_root = castlib.library_root(config.cast.library)
    valid = voice_ids(config)
    library = {c.id: castlib.find(c.name, library_root) for c in script.characters}
    voices = {c.id: c.voice for c in script.characters}
    for cid, entry in library.items():
        if voices[cid] is None and entry is not None and entry.voice in valid:
            voices[cid] = entry.voice
    narrator = script.narrator_voice
    speakers = {shot.id: shot.speaker for shot in script.shots()}
    if narrator is None or None in voices.values():
        output = voice_output(valid, [c.id for c in script.characters],
                              [(s.id, [p.character for p in s.characters]) for s in script.shots()])
        reply = ctx.models.get("director").ask("voice", _variables(script, valid), output, seed=ctx.seed("voice"))
        chosen = reply.characters.model_dump(by_alias=True)
        voices = {cid: voice or chosen[cid] for cid, voice in voices.items()}
        if narrator is None:  # the first casting: the director also says who speaks each shot
            speakers = {sid: None if who == "narrator" else who
                        for sid, who in reply.speakers.model_dump(by_alias=True).items()}
            narrator = reply.narrator
    for who, voice in [("the narrator", narrator), *((f"character {cid}", v) for cid, v in voices.items())]:
        if voice not in valid:
            raise InputError(f"script.json gives {who} the voice '{voice}', which {config.voice.weights} does not "
                             f"have; choose one of: {', '.join(valid)}")
    data = script.model_dump(mode="json")
    data["narrator_voice"] = narrator
    for character in data["characters"]:
        character["voice"] = voices[character["id"]]
    for scene in data["scenes"]:
        for shot in scene["shots"]:
            shot["speaker"] = speakers[shot["id"]]
    cast = Script.model_validate(data)
    if cast != script:
        ctx.run.write_model(SCRIPT, cast)
        plan = ctx.run.manifest.steps.get("plan")
        if plan is not None:  # script.json is the plan's output: the plan, voices cast, is what the manifest holds
            ctx.run.record("plan", plan.key, [SCRIPT], plan.seconds, notes=[*plan.notes, "voices cast"])
    for cid, entry in library.items():
        if entry is not None and entry.voice is None:
            castlib.set_voice(entry, voices[cid], library_root)
    return cast


def speak(ctx: Context, script: Script) -> Narration:
    """Every shot's speech (step `speak/<shot>` each), in film order; needs `cast_voices` first."""
    run, config = ctx.run, ctx.config
    fps, settings = config.assemble.fps, config.voice
    shots = script.shots()
    spoken: list[ShotSpeech] = []
    for n, shot in enumerate(shots):
        ctx.progress("speak", n, len(shots))
        voice_id = voice_of(script, shot.id)
        if voice_id is None:
            raise InputError(f"shot {shot.id} has no voice: cast the voices (speak.cast_voices) before speaking")
        planned = round(shot.duration_s * fps)
        seed = ctx.seed("speak", shot.id)
        wav, record = f"{SPEECH}/{shot.id}.wav", f"{SPEECH}/{shot.id}.json"
        step = ctx.step(f"speak/{shot.id}", narration=shot.narration, voice=voice_id, settings=settings, fps=fps,
                        planned=planned, seed=seed, models=ctx.models.ids("voice"))
        if step.todo:
            backend = ctx.models.get("voice")
            rate = backend.sample_rate
            speech = backend.speak(shot.narration, voice_id, settings.speed, seed)
            speech = audio.fade(audio.normalize(audio.trim(speech, rate), rate, settings.loudness_lufs), rate)
            speech_s = len(speech) / rate
            frames = max(planned, math.ceil((speech_s + settings.pause_s) * fps)) if len(speech) else planned
            if not len(speech):
                log.info("shot %s has nothing to say: %d frames of silence", shot.id, frames)
            with run.writing(wav) as tmp:
                audio.write_wav(tmp, audio.fit(speech, audio.samples_for(frames, fps, rate)), rate)
            run.write_model(record, ShotSpeech(shot=shot.id, audio=wav, voice=voice_id, speech_s=speech_s,
                                               frames=frames, fps=fps, sample_rate=rate))
            step.record([wav, record])
        spoken.append(run.read_model(record, ShotSpeech))
    ctx.progress("speak", len(shots), len(shots))
    return Narration(sample_rate=spoken[0].sample_rate, shots=tuple(spoken))


def _variables(script: Script, valid: Sequence[str]) -> dict[str, str]:
    accents = {"a": "American English", "b": "British English"}
    sexes = {"f": "female", "m": "male"}
    shots = []
    for shot in script.shots():
        present = ", ".join(p.character for p in shot.characters) or "none"
        shots.append(f"{shot.id} (characters in it: {present}): {shot.narration}")
    return {
        "voices": "\n".join(f"- {v}: {accents.get(v[0], v[0])}, {sexes.get(v[1:2], v[1:2])}" for v in valid),
        "characters": "\n".join(f"- {c.id} ({c.name}): {c.appearance}" for c in script.characters),
        "shots": "\n".join(f"- {line}" for line in shots),
    }
