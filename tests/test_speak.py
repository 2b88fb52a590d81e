"""Stage 4b, speak: voice casting (director task, script.json, cast library) and each shot's speech on the tiny
random Kokoro-82M: step keys, fitted lengths, silence, edits, and the film's audio track and cue alignment."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from animagent import audio, castlib, video
from animagent.artifacts import Script
from animagent.config import AssembleConfig, CastConfig, Config, WeightsConfig
from animagent.errors import InputError
from animagent.runfolder import RunFolder
from animagent.stages.speak import cast_voices, speak, voice_ids, voice_of
from tests.fakes import ScriptedDirector, context

DATA = Path(__file__).parent / "data"
FPS = 8
CASTING = {
    "narrator": "bf_emma",
    "characters": {"mira": "af_bella", "tobin": "bm_george"},
    "speakers": {"s01_k1": "narrator", "s01_k2": "mira", "s01_k3": "narrator"},
}


def three_shots() -> Script:
    """two_shots.json plus a third shot with nothing to say."""
    data = json.loads((DATA / "two_shots.json").read_text())
    silent = dict(data["scenes"][0]["shots"][0], id="s01_k3", narration="...", duration_s=2)
    data["scenes"][0]["shots"].append(silent)
    return Script.model_validate(data)


@pytest.fixture(scope="module")
def config(tiny_model) -> Config:
    tiny_model("kokoro_82m")
    return Config(device="cpu", dtype="float32", weights=WeightsConfig(flavor="tiny", root=str(tiny_model.root)),
                  assemble=AssembleConfig(fps=FPS, crf=23, preset="veryfast"))


class CountingVoice:
    """The real tiny Kokoro backend, counting what it is asked to say."""

    def __init__(self, config: Config):
        from animagent.backends.voice_kokoro import KokoroVoice

        self.backend = KokoroVoice(config, config.weights_root())
        self.sample_rate, self.voices = self.backend.sample_rate, self.backend.voices
        self.said: list[str] = []

    def speak(self, text, voice, speed=1.0, seed=0):
        self.said.append(text)
        return self.backend.speak(text, voice, speed, seed)

    def close(self):
        self.backend.close()


@pytest.fixture(scope="module")
def voice(config):
    v = CountingVoice(config)
    yield v
    v.close()


def director(tmp_path: Path, reply=CASTING) -> ScriptedDirector:
    return ScriptedDirector({"voice": [reply]}, tmp_path / "director.jsonl")


def with_library(config: Config, library: Path) -> Config:
    return config.model_copy(update={"cast": CastConfig(library=str(library))})


def casting(tmp_path: Path, config: Config, script: Script, reply=CASTING, library: Path | None = None) -> Script:
    """cast_voices in the run folder tmp_path/run, the director answering `reply`."""
    config = with_library(config, library or tmp_path / "library")
    return cast_voices(context(RunFolder(tmp_path / "run"), config, director=director(tmp_path, reply)), script)


def cast(tmp_path: Path, config: Config) -> Script:
    return casting(tmp_path, config, three_shots())


def speaking(run: RunFolder, config: Config, voice, script: Script):
    return speak(context(run, config, voice=voice), script)


# --- casting --------------------------------------------------------------------------------------------------


def test_casting_fills_voices_and_speakers_from_one_director_task(tmp_path, config) -> None:
    d = director(tmp_path)
    run = RunFolder(tmp_path / "run")
    script = cast_voices(context(run, with_library(config, tmp_path / "library"), director=d), three_shots())
    assert script.narrator_voice == "bf_emma"
    assert [c.voice for c in script.characters] == ["af_bella", "bm_george"]
    assert [s.speaker for s in script.shots()] == [None, "mira", None]
    assert [voice_of(script, s.id) for s in script.shots()] == ["bf_emma", "af_bella", "bf_emma"]
    (task, messages, schema), = d.requests
    assert task == "voice" and "small red fox" in messages[1].text and "- bm_george: British English, male" in \
        messages[1].text
    assert schema["$defs"]["ShotSpeakers"]["properties"]["s01_k1"]["enum"] == ["narrator", "mira"]
    assert set(schema["properties"]["narrator"]["enum"]) == set(voice_ids(config))
    # saved as script.json; old files without the voice fields still load
    assert run.read_model("script.json", Script) == script
    assert three_shots().narrator_voice is None


def test_a_cast_script_asks_nothing_and_user_edits_are_kept(tmp_path, config) -> None:
    script = cast(tmp_path, config)
    data = script.model_dump(mode="json")
    data["characters"][1]["voice"] = "am_puck"  # the user's change in script.json
    edited = Script.model_validate(data)

    silent = ScriptedDirector({}, tmp_path / "director.jsonl")  # any question would fail: no reply scripted
    assert cast_voices(context(RunFolder(tmp_path / "run"), config, director=silent), edited) == edited
    assert silent.requests == []
    data["characters"][0]["voice"] = None  # a character without a voice: only it is asked for
    again = casting(tmp_path, config, Script.model_validate(data), dict(CASTING, narrator="af_nova"))
    assert [c.voice for c in again.characters] == ["af_bella", "am_puck"] and again.narrator_voice == "bf_emma"


def test_a_voice_the_model_does_not_have_is_bad_input_naming_the_valid_ones(tmp_path, config) -> None:
    data = cast(tmp_path, config).model_dump(mode="json")
    data["narrator_voice"] = "xx_robot"
    with pytest.raises(InputError, match="the narrator the voice 'xx_robot'.*af_alloy, af_aoede") as err:
        casting(tmp_path, config, Script.model_validate(data))
    assert err.value.exit_code == 2


def test_the_cast_library_keeps_a_characters_voice_across_stories(tmp_path, config) -> None:
    from PIL import Image

    library = tmp_path / "library"
    Image.new("RGB", (8, 8), "red").save(tmp_path / "mira.png")
    castlib.add("Mira", [tmp_path / "mira.png"], root=library)
    casting(tmp_path, config, three_shots(), library=library)
    assert castlib.find("Mira", library).voice == "af_bella"  # written on first casting
    # the next story: Mira keeps her voice whatever the director would have said
    next_story = casting(tmp_path / "next", config, three_shots(),
                         dict(CASTING, characters={"mira": "af_nova", "tobin": "am_puck"}), library=library)
    assert next_story.character("mira").voice == "af_bella"
    assert next_story.character("tobin").voice == "am_puck"


# --- speaking ---------------------------------------------------------------------------------------------------


def test_each_shot_is_spoken_into_a_wav_with_its_own_step(tmp_path, config, voice) -> None:
    run = RunFolder(tmp_path / "run")
    script = cast(tmp_path, config)
    narration = speaking(run, config, voice, script)
    assert [s.shot for s in narration.shots] == ["s01_k1", "s01_k2", "s01_k3"]
    for shot, speech in zip(script.shots(), narration.shots):
        record = run.manifest.steps[f"speak/{shot.id}"]
        assert set(record.outputs) == {f"speech/{shot.id}.wav", f"speech/{shot.id}.json"}
        samples, rate = audio.read_wav(run.path(speech.audio))
        assert rate == 24000 == narration.sample_rate
        assert len(samples) == round(speech.frames * rate / FPS)  # the wav lasts the shot
        assert speech.frames >= shot.duration_s * FPS
        assert speech.voice == voice_of(script, shot.id)
    spoken = narration.shots[:2]
    for speech in spoken:
        assert speech.speech_s > 0.5
        assert speech.frames == max(round(2 * FPS) if speech.shot == "s01_k1" else FPS,
                                    int(np.ceil((speech.speech_s + config.voice.pause_s) * FPS)))
        samples, rate = audio.read_wav(run.path(speech.audio))
        assert audio.loudness(samples[: round(speech.speech_s * rate)], rate) == pytest.approx(-16.0, abs=1.0)
        assert not samples[round(speech.speech_s * rate):].any()  # then the pause: silence


def test_a_shot_with_nothing_to_say_is_silence_of_its_planned_length(tmp_path, config, voice) -> None:
    narration = speaking(RunFolder(tmp_path / "run"), config, voice, cast(tmp_path, config))
    silent = narration.shot("s01_k3")
    samples, _ = audio.read_wav(RunFolder(tmp_path / "run").path(silent.audio))
    assert (silent.speech_s, silent.frames, len(samples)) == (0.0, 2 * FPS, 2 * 24000)
    assert not samples.any()


def test_editing_one_narration_respeaks_only_that_shot(tmp_path, config, voice) -> None:
    run = RunFolder(tmp_path / "run")
    script = cast(tmp_path, config)
    speaking(run, config, voice, script)
    before = {rel: run.sha(rel) for rel in (f"speech/{s.id}.wav" for s in script.shots())}
    voice.said.clear()
    speaking(run, config, voice, script)
    assert voice.said == []  # all done: nothing spoken, the backend is not even needed

    data = script.model_dump(mode="json")
    data["scenes"][0]["shots"][0]["narration"] = "Mira runs up the hill."
    speaking(run, config, voice, Script.model_validate(data))
    assert voice.said == ["Mira runs up the hill."]
    after = {rel: run.sha(rel) for rel in before}
    assert after["speech/s01_k1.wav"] != before["speech/s01_k1.wav"]
    assert {k: v for k, v in after.items() if k != "speech/s01_k1.wav"} == \
        {k: v for k, v in before.items() if k != "speech/s01_k1.wav"}


def test_speech_is_byte_identical_in_a_fresh_run(tmp_path, config, voice) -> None:
    script = cast(tmp_path, config)
    a, b = RunFolder(tmp_path / "a"), RunFolder(tmp_path / "b")
    speaking(a, config, voice, script)
    speaking(b, config, voice, script)
    assert all(a.sha(f"speech/{s.id}.wav") == b.sha(f"speech/{s.id}.wav") for s in script.shots())


def test_the_film_carries_the_speech_and_its_cues_end_with_it(tmp_path, config, voice) -> None:
    """Shots fitted to their speech, muxed by write_film: one audio stream as long as the video (within a
    frame), and each cue starts and ends within 40 ms of its shot's speech, measured in the decoded audio."""
    run = RunFolder(tmp_path / "run")
    script = cast(tmp_path, config)
    narration = speaking(run, config, voice, script)
    frame = np.zeros((128, 128, 3), np.uint8)
    shots = [
        video.FilmShot(frames=[frame] * s.frames, narration=script.shot(s.shot).narration,
                       audio=audio.read_wav(run.path(s.audio))[0], speech_s=s.speech_s)
        for s in narration.shots
    ]
    film, srt = tmp_path / "film.mp4", tmp_path / "film.srt"
    video.write_film(shots, film, srt, fps=FPS, crf=23, preset="veryfast", sample_rate=narration.sample_rate)
    info = video.probe(film)
    assert info.audio_codec == "aac" and info.frames == sum(s.frames for s in narration.shots)
    assert abs(info.audio_duration_s - info.duration_s) <= 1 / FPS

    decoded, rate = video.read_audio(film)
    window = rate // 100  # 10 ms
    energy = np.sqrt(np.mean(decoded[: len(decoded) // window * window].reshape(-1, window) ** 2, axis=1))
    cues = video.read_subtitles(film)
    start = 0.0
    for speech, cue in zip(narration.shots, cues):
        end = start + speech.duration_s
        active = [i * 0.01 for i in range(round(start * 100), round(end * 100)) if energy[i] > 1e-3]
        assert cue.start_s == pytest.approx(start, abs=1e-3)
        if speech.speech_s:
            assert abs(active[0] - cue.start_s) <= 0.04
            assert abs(active[-1] + 0.01 - cue.end_s) <= 0.04
        else:
            assert not active and cue.end_s == pytest.approx(end, abs=1e-3)
        start = end


def test_kill_9_mid_speech_then_resume_gives_the_same_bytes(tmp_path, config, voice) -> None:
    """SIGKILL after the second shot's wav is written but before it is renamed into place; the rerun keeps the
    first shot, leaves no temp file, and every wav is byte-identical to a run that was never killed."""
    import os
    import signal
    import subprocess
    import sys

    script = cast(tmp_path, config)
    (tmp_path / "script.json").write_text(script.model_dump_json())
    (tmp_path / "config.json").write_text(config.model_dump_json())
    child = (
        "import sys; from pathlib import Path\n"
        "from animagent.artifacts import Script\nfrom animagent.config import Config\n"
        "from animagent.runfolder import RunFolder\nfrom animagent.stages.speak import speak\n"
        "from animagent.backends.voice_kokoro import KokoroVoice\nfrom tests.fakes import context\n"
        "d = Path(sys.argv[1]); config = Config.model_validate_json((d / 'config.json').read_text())\n"
        "script = Script.model_validate_json((d / 'script.json').read_text())\n"
        "v = KokoroVoice(config, config.weights_root())\n"
        "speak(context(RunFolder(d / 'killed'), config, voice=v), script)\n"
    )
    # writes: wav, json, manifest per shot -> the 4th write is shot 2's wav
    env = dict(os.environ, ANIMAGENT_FAULT="kill@write:4")
    done = subprocess.run([sys.executable, "-c", child, str(tmp_path)], env=env, capture_output=True, timeout=600)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    killed = RunFolder(tmp_path / "killed")
    assert list(killed.manifest.steps) == ["speak/s01_k1"]
    voice.said.clear()
    with killed.lock():  # taking the lock removes the temp file the kill left
        speaking(killed, config, voice, script)
    assert len(voice.said) == 2 and not killed.stray_temp_files()
    clean = RunFolder(tmp_path / "clean")
    speaking(clean, config, voice, script)
    for shot in script.shots():
        assert killed.sha(f"speech/{shot.id}.wav") == clean.sha(f"speech/{shot.id}.wav")


def test_the_same_script_given_again_keeps_its_voices(tmp_path, tiny_all) -> None:
    """`animagent run --script S` twice: the second time the run's cast script.json stays (no recasting), a
    script that differs otherwise replaces it."""
    from animagent.config import load_config
    from animagent.runs import prepare_run

    config = load_config("tiny", overrides=[f"weights.root={tiny_all}", "limits.max_shots_per_scene=3"])

    given = tmp_path / "given.json"
    given.write_text(three_shots().model_dump_json())
    run_dir = prepare_run(None, config, tmp_path / "run", script_path=given)
    run = RunFolder(run_dir)
    cast_script = cast_voices(context(run, config, director=director(tmp_path)), three_shots())
    prepare_run(None, config, run_dir, script_path=given)
    assert RunFolder(run_dir).read_model("script.json", Script) == cast_script
    data = three_shots().model_dump(mode="json")
    data["scenes"][0]["shots"][0]["narration"] = "Mira runs."
    given.write_text(json.dumps(data))
    prepare_run(None, config, run_dir, script_path=given)
    assert RunFolder(run_dir).read_model("script.json", Script).narrator_voice is None
