"""The Kokoro voice backend on the tiny random Kokoro-82M (real loading code, real G2P, noise for speech)."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import torch

from animagent.config import Config, WeightsConfig
from animagent.errors import InputError, MissingError
from animagent.weights import model_dir, spec


@pytest.fixture(scope="module")
def config(tiny_model) -> Config:
    tiny_model("kokoro_82m")
    return Config(device="cpu", dtype="float32", weights=WeightsConfig(flavor="tiny", root=str(tiny_model.root)))


@pytest.fixture(scope="module")
def voice(config):
    from animagent.backends.voice_kokoro import KokoroVoice

    v = KokoroVoice(config, config.weights_root())
    yield v
    v.close()


def test_tiny_layout_is_the_real_one(tiny_model) -> None:
    folder = tiny_model("kokoro_82m")
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert files == {f.path for f in spec("kokoro_82m").files}
    checkpoint = torch.load(folder / "kokoro-v1_0.pth", weights_only=True)
    assert sorted(checkpoint) == ["bert", "bert_encoder", "decoder", "predictor", "text_encoder"]
    assert all(key.startswith("module.") for state in checkpoint.values() for key in state)
    assert torch.load(folder / "voices/af_heart.pt", weights_only=True).shape == (510, 1, 256)


def test_speaks_24khz_float32_deterministically(voice) -> None:
    text = "Mira climbs the hill, as she does every night."
    a = voice.speak(text, "af_heart", seed=3)
    b = voice.speak(text, "af_heart", seed=3)
    assert a.dtype == np.float32 and a.ndim == 1 and voice.sample_rate == 24000
    assert 0.5 < len(a) / 24000 < 10 and np.abs(a).max() > 0
    assert np.array_equal(a, b)
    assert not np.array_equal(a, voice.speak(text, "af_heart", seed=4))  # the vocoder's noise is seeded
    assert voice.phonemes(text, "af_heart") == ["mˈiəɹə klˈImz ðə hˈɪl, æz ʃi dˈʌz ˈɛvɹi nˈIt."]


def test_british_voices_get_british_phonemes(voice) -> None:
    assert voice.phonemes("a far garden", "bm_george") != voice.phonemes("a far garden", "am_puck")


def test_unknown_voice_is_bad_input_naming_the_valid_ones(voice) -> None:
    with pytest.raises(InputError, match="unknown voice 'zz_nobody'; Kokoro-82M has: af_alloy, .*bm_george") as err:
        voice.speak("Hello.", "zz_nobody")
    assert err.value.exit_code == 2


def test_unreadable_characters_are_logged_and_the_rest_is_spoken(voice, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="animagent.backends.voice_kokoro"):
        out = voice.speak("Under the oak — 橡树 — a fox waits 🦊.", "af_heart")
    assert len(out) > 0
    assert "cannot read 树 橡 🦊" in caplog.text
    assert voice.phonemes("Under the oak 橡树 🦊.", "af_heart") == voice.phonemes("Under the oak.", "af_heart")


@pytest.mark.parametrize("text", ["🦊🦊", "...", "橡树", "  —  "])
def test_nothing_to_say_gives_no_samples(voice, text) -> None:
    assert len(voice.speak(text, "af_heart")) == 0


def test_long_narration_is_cut_into_chunks_kokoro_can_read(voice) -> None:
    text = " ".join(["The lantern swung on its hook while the wind pulled at the shutters."] * 12)
    chunks = voice.phonemes(text, "af_heart")
    assert len(chunks) >= 2 and all(len(c) <= 510 for c in chunks)
    assert len(voice.speak(text[:400], "af_heart")) > 0


def test_a_checkpoint_missing_tensors_is_refused(config, tmp_path) -> None:
    from animagent.backends.voice_kokoro import KokoroVoice

    src = model_dir(config.weights_root(), "kokoro_82m", "tiny")
    dst = model_dir(tmp_path, "kokoro_82m", "tiny")
    shutil.copytree(src, dst)
    checkpoint = torch.load(dst / "kokoro-v1_0.pth", weights_only=True)
    checkpoint["decoder"].pop(sorted(checkpoint["decoder"])[0])
    torch.save(checkpoint, dst / "kokoro-v1_0.pth")
    with pytest.raises(MissingError, match="'decoder' does not match config.json \\(1 tensors missing"):
        KokoroVoice(config.model_copy(update={"weights": WeightsConfig(flavor="tiny", root=str(tmp_path))}), tmp_path)


def test_a_crafted_pickle_in_place_of_the_checkpoint_is_refused_unrun(config, tmp_path) -> None:
    import os
    import pickle

    from animagent.backends.voice_kokoro import KokoroVoice

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    dst = model_dir(tmp_path, "kokoro_82m", "tiny")
    shutil.copytree(model_dir(config.weights_root(), "kokoro_82m", "tiny"), dst)
    (dst / "kokoro-v1_0.pth").write_bytes(pickle.dumps(Payload()))
    tiny_here = config.model_copy(update={"weights": WeightsConfig(flavor="tiny", root=str(tmp_path))})
    with pytest.raises(MissingError, match="kokoro-v1_0.pth is not a tensors-only checkpoint, refused") as err:
        KokoroVoice(tiny_here, tmp_path)
    assert err.value.exit_code == 4 and not marker.exists()
    shutil.copy(model_dir(config.weights_root(), "kokoro_82m", "tiny") / "kokoro-v1_0.pth", dst / "kokoro-v1_0.pth")
    torch.save(Payload(), dst / "voices" / "af_heart.pt")  # a voice pack too
    voice = KokoroVoice(tiny_here, tmp_path)
    with pytest.raises(MissingError, match="af_heart.pt is not a tensors-only checkpoint"):
        voice.speak("Hello.", "af_heart")
    assert not marker.exists()
