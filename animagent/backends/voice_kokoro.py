"""The Kokoro-82M voice: text and a voice id in, float32 mono samples at 24 kHz out.

This module owns loading `kokoro_82m` (real or tiny) with kokoro's own `KModel` and the voice packs, English
grapheme-to-phoneme conversion, and one `speak` call. It does not time, normalise or store speech (the speak
stage and animagent/audio.py do).

G2P is misaki's espeak-ng path (`misaki.espeak.EspeakFallback`: espeak-ng's phonemes mapped onto Kokoro's
phoneme set, American or British by the voice's first letter), with the espeak-ng library and data from the
`espeakng-loader` wheel. misaki's main English G2P (`misaki.en.G2P`, the lexicon Kokoro was trained with) needs
spaCy's `en_core_web_sm`, which it downloads from GitHub on first use; that cannot work offline, so it is not used.
Characters the English G2P cannot read (other scripts, emoji) are dropped and logged; what is left is spoken.
Phonemes are cut into chunks of at most 510 (Kokoro's context), at sentence ends where possible, and each chunk is
spoken with the voice pack's style for its length, as kokoro's KPipeline does.

Loading never unpickles arbitrary objects: KModel reads its checkpoint with `torch.load(weights_only=True)` and
the voice packs are read the same way. KModel falls back to a non-strict load when keys carry the `module.`
prefix (the real checkpoint's), which would leave a missing tensor random without a word; the checkpoint's keys
are therefore checked against the model after loading. Kokoro's vocoder draws random phases and noise, so each call is
seeded. Heavy imports (torch, kokoro, misaki) happen when the module is imported.
"""

from __future__ import annotations

import json
import logging
import pickle
import re
import time
import unicodedata
from pathlib import Path

import numpy as np
import torch
from kokoro.model import KModel
from misaki.espeak import EspeakFallback
from misaki.token import MToken

from animagent import gpu
from animagent.config import Config
from animagent.errors import InputError, MissingError
from animagent.weights import model_dir, spec

log = logging.getLogger(__name__)

SAMPLE_RATE = 24000
CHECKPOINT = "kokoro-v1_0.pth"
COMPONENTS = ("bert", "bert_encoder", "predictor", "text_encoder", "decoder")
MAX_PHONEMES = 510  # Kokoro's context is 512 tokens with the two boundary tokens
_SENTENCE_END = re.compile(r"(?<=[.!?…;:])\s+")
# Phonemes that carry no sound of their own: a chunk of only these is not spoken.
_SILENT_PHONEMES = set(";:,.!?—…\"()“” ")


class KokoroVoice:
    """Kokoro-82M on the config's device; `voices` are the registry's voice ids."""

    sample_rate = SAMPLE_RATE

    def __init__(self, config: Config, weights_root: Path, name: str = "kokoro_82m"):
        started = time.perf_counter()
        folder = model_dir(weights_root, name, config.weights.flavor)
        self.voices = tuple(sorted(Path(f.path).stem for f in spec(name).files if f.path.startswith("voices/")))
        self._folder = folder
        self._device = gpu.device(config)
        model_config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        checkpoint = _load(folder / CHECKPOINT)  # refused here, with its name, if it is not tensors only
        self._model = KModel(repo_id=spec(name).repo_id, config=model_config, model=str(folder / CHECKPOINT))
        _check_checkpoint(folder / CHECKPOINT, checkpoint, self._model)
        self._model = self._model.to(self._device).eval()
        self._vocab = model_config["vocab"]
        self._packs: dict[str, torch.Tensor] = {}
        self._g2p: dict[bool, EspeakFallback] = {}
        log.info("loaded %s (%d voices) in %.1f s", name, len(self.voices), time.perf_counter() - started)

    def speak(self, text: str, voice: str, speed: float = 1.0, seed: int = 0) -> np.ndarray:
        """`text` spoken in `voice`: float32 mono samples at `sample_rate`; empty when nothing in it can be said."""
        if voice not in self.voices:
            raise InputError(f"unknown voice '{voice}'; Kokoro-82M has: {', '.join(self.voices)}")
        chunks = self._phonemes(text, british=voice.startswith("b"))
        if not chunks:
            return np.zeros(0, dtype=np.float32)
        pack = self._pack(voice)
        pieces = []
        devices = [self._device] if self._device.startswith("cuda") else []
        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            torch.manual_seed(seed)
            for chunk in chunks:
                audio = self._model(chunk, pack[len(chunk) - 1], speed)
                pieces.append(audio.float().numpy().reshape(-1))
        return np.concatenate(pieces).astype(np.float32)

    def phonemes(self, text: str, voice: str) -> list[str]:
        """The phoneme chunks `speak` would say (for logs and tests)."""
        return self._phonemes(text, british=voice.startswith("b"))

    def close(self) -> None:
        del self._model
        self._packs.clear()
        gpu.free_memory()

    def _pack(self, voice: str) -> torch.Tensor:
        if voice not in self._packs:
            pack = _load(self._folder / "voices" / f"{voice}.pt")
            if not isinstance(pack, torch.Tensor):
                raise MissingError(f"{self._folder / 'voices' / voice}.pt is not a voice pack (a tensor)")
            self._packs[voice] = pack.float().to(self._device)
        return self._packs[voice]

    def _phonemes(self, text: str, british: bool) -> list[str]:
        readable, dropped = _readable(text)
        if dropped:
            log.warning("narration %r: the English G2P cannot read %s; spoken without them", _short(text),
                        " ".join(sorted(set(dropped))))
        if british not in self._g2p:
            self._g2p[british] = EspeakFallback(british=british)
        g2p = self._g2p[british]
        sentences = []
        for sentence in _SENTENCE_END.split(readable.strip()):
            if not sentence.strip():
                continue
            phonemes, _ = g2p(MToken(text=sentence, tag="", whitespace=""))
            kept = "".join(p for p in (phonemes or "") if p in self._vocab)
            if len(kept) != len(phonemes or ""):
                log.debug("phonemes outside Kokoro's vocabulary dropped: %r", sorted(set(phonemes) - set(kept)))
            if set(kept) - _SILENT_PHONEMES:
                sentences.append(kept.strip())
        return _chunks(sentences)


def _readable(text: str) -> tuple[str, list[str]]:
    """`text` with only what English G2P reads (Latin letters, digits, punctuation, spaces, currency and math
    signs); the other characters (other scripts, emoji, symbols) become spaces and are returned."""
    kept, dropped = [], []
    for char in unicodedata.normalize("NFC", text):
        category = unicodedata.category(char)
        latin = category[0] != "L" or "LATIN" in unicodedata.name(char, "")
        if latin and category not in ("So", "Sk", "Co", "Cn", "Cs") and (category[0] != "C" or char in "\t\n\r"):
            kept.append(char)
        else:
            kept.append(" ")
            dropped.append(char)
    return re.sub(r"\s+([.,!?;:…])", r"\1", re.sub(r"\s+", " ", "".join(kept))), dropped


def _chunks(sentences: list[str]) -> list[str]:
    """Sentences joined into chunks of at most MAX_PHONEMES; a longer sentence is cut at spaces (or anywhere)."""
    pieces = []
    for sentence in sentences:
        while len(sentence) > MAX_PHONEMES:
            cut = sentence.rfind(" ", 0, MAX_PHONEMES + 1)
            cut = cut if cut > 0 else MAX_PHONEMES
            pieces.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if sentence:
            pieces.append(sentence)
    chunks: list[str] = []
    for piece in pieces:
        if chunks and len(chunks[-1]) + 1 + len(piece) <= MAX_PHONEMES:
            chunks[-1] = f"{chunks[-1]} {piece}"
        else:
            chunks.append(piece)
    return chunks


def _load(path: Path):
    """torch.load with weights_only (tensors and plain containers only, never arbitrary objects); anything else is
    refused as MissingError naming the file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError) as exc:
        raise MissingError(f"{path} is not a tensors-only checkpoint, refused ({str(exc).splitlines()[0]}); "
                           "pull the weights again") from None


def _check_checkpoint(path: Path, checkpoint, model: KModel) -> None:
    """MissingError unless the checkpoint holds exactly the tensors of KModel's five sub-modules (with or without
    the `module.` prefix)."""
    if not isinstance(checkpoint, dict) or set(checkpoint) != set(COMPONENTS):
        keys = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise MissingError(f"{path} is not a Kokoro checkpoint: it holds {keys}, expected {list(COMPONENTS)}")
    for name in COMPONENTS:
        expected = set(getattr(model, name).state_dict())
        found = {key.removeprefix("module.") for key in checkpoint[name]}
        if found != expected:
            missing, extra = sorted(expected - found), sorted(found - expected)
            raise MissingError(
                f"{path}: '{name}' does not match config.json ({len(missing)} tensors missing, e.g. "
                f"{missing[:2]}; {len(extra)} unexpected, e.g. {extra[:2]}); pull the weights again"
            )


def _short(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."
