"""Tiny random Kokoro-82M in the Hub repo's layout (`kokoro_82m` in the registry).

This module owns `build_kokoro(folder)`: the real repo's `config.json` (captured, key order kept, the full phoneme
vocabulary) with smaller sizes where Kokoro's classes read them from the config, a seeded random `KModel` saved
as `kokoro-v1_0.pth` in the checkpoint's own shape (a dict of the five sub-modules' state dicts, keys prefixed
`module.` as the real file's are), and one random style pack per registry voice as `voices/<id>.pt` (a
(510, 1, 256) float32 tensor, as the real ones are). Everything is written with `torch.save` of tensors only, so
it loads with `torch.load(weights_only=True)`. Two builds give byte-identical files.

Kokoro hard-codes the decoder's widths (1024 and 512 channels, a 128-wide style half), so this "tiny" model is
still 58 M parameters; the sizes that shrink are the ALBERT text model, the LSTM depth and the vocoder's
residual blocks. `max_dur` drops from 50 to 6: a random duration head then gives about 3 frames (75 ms) per
phoneme token, near the real model's pace, so tiny films are as long as real ones. Tensors are stored as float16
(half the file); KModel's `load_state_dict` copies them into its float32 parameters, as it would any dtype.
It does not load anything back; backends/voice_kokoro.py does.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

# Captured from hexgrad/Kokoro-82M@f3ff357 (config.json): key order and values as published.
REAL_VOCAB = {
    ";": 1, ":": 2, ",": 3, ".": 4, "!": 5, "?": 6, "—": 9, "…": 10, '"': 11, "(": 12, ")": 13, "“": 14, "”": 15,
    " ": 16, "\u0303": 17, "ʣ": 18, "ʥ": 19, "ʦ": 20, "ʨ": 21, "ᵝ": 22, "\uab67": 23, "A": 24, "I": 25, "O": 31,
    "Q": 33, "S": 35, "T": 36, "W": 39, "Y": 41, "ᵊ": 42, "a": 43, "b": 44, "c": 45, "d": 46, "e": 47, "f": 48,
    "h": 50, "i": 51, "j": 52, "k": 53, "l": 54, "m": 55, "n": 56, "o": 57, "p": 58, "q": 59, "r": 60, "s": 61,
    "t": 62, "u": 63, "v": 64, "w": 65, "x": 66, "y": 67, "z": 68, "ɑ": 69, "ɐ": 70, "ɒ": 71, "æ": 72, "β": 75,
    "ɔ": 76, "ɕ": 77, "ç": 78, "ɖ": 80, "ð": 81, "ʤ": 82, "ə": 83, "ɚ": 85, "ɛ": 86, "ɜ": 87, "ɟ": 90, "ɡ": 92,
    "ɥ": 99, "ɨ": 101, "ɪ": 102, "ʝ": 103, "ɯ": 110, "ɰ": 111, "ŋ": 112, "ɳ": 113, "ɲ": 114, "ɴ": 115, "ø": 116,
    "ɸ": 118, "θ": 119, "œ": 120, "ɹ": 123, "ɾ": 125, "ɻ": 126, "ʁ": 128, "ɽ": 129, "ʂ": 130, "ʃ": 131, "ʈ": 132,
    "ʧ": 133, "ʊ": 135, "ʋ": 136, "ʌ": 138, "ɣ": 139, "ɤ": 140, "χ": 142, "ʎ": 143, "ʒ": 147, "ʔ": 148, "ˈ": 156,
    "ˌ": 157, "ː": 158, "ʰ": 162, "ʲ": 164, "↓": 169, "→": 171, "↗": 172, "↘": 173, "ᵻ": 177,
}
REAL_CONFIG = {
    "istftnet": {
        "upsample_kernel_sizes": [20, 12],
        "upsample_rates": [10, 6],
        "gen_istft_hop_size": 5,
        "gen_istft_n_fft": 20,
        "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
        "resblock_kernel_sizes": [3, 7, 11],
        "upsample_initial_channel": 512,
    },
    "dim_in": 64,
    "dropout": 0.2,
    "hidden_dim": 512,
    "max_conv_dim": 512,
    "max_dur": 50,
    "multispeaker": True,
    "n_layer": 3,
    "n_mels": 80,
    "n_token": 178,
    "style_dim": 128,
    "text_encoder_kernel_size": 5,
    "plbert": {
        "hidden_size": 768,
        "num_attention_heads": 12,
        "intermediate_size": 2048,
        "max_position_embeddings": 512,
        "num_hidden_layers": 12,
        "dropout": 0.1,
    },
    "vocab": REAL_VOCAB,
}
TINY_PLBERT = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64, "num_hidden_layers": 1}
TINY_ISTFTNET = {"resblock_kernel_sizes": [3], "resblock_dilation_sizes": [[1, 3, 5]]}
TINY_SIZES = {"n_layer": 1, "max_dur": 6, "text_encoder_kernel_size": 3}
# The real packs: one 256-wide style vector (decoder half, prosody half) per phoneme count 1..510.
VOICE_SHAPE = (510, 1, 256)
SEED = 11
COMPONENTS = ("bert", "bert_encoder", "predictor", "text_encoder", "decoder")


def tiny_config() -> dict:
    return {
        **REAL_CONFIG,
        **TINY_SIZES,
        "istftnet": {**REAL_CONFIG["istftnet"], **TINY_ISTFTNET},
        "plbert": {**REAL_CONFIG["plbert"], **TINY_PLBERT},
    }


def build_kokoro(folder: Path) -> None:
    """hexgrad/Kokoro-82M: config.json, kokoro-v1_0.pth, voices/<id>.pt for every registry voice."""
    import torch

    from animagent.weights import spec

    config = tiny_config()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=4, ensure_ascii=False) + "\n", encoding="utf-8")
    torch.manual_seed(SEED)
    model = random_model(config)
    checkpoint = {
        name: {f"module.{key}": tensor.detach().to(torch.float16).contiguous()
               for key, tensor in sorted(getattr(model, name).state_dict().items())}
        for name in COMPONENTS
    }
    _save(checkpoint, folder / "kokoro-v1_0.pth")
    voices = [f.path for f in spec("kokoro_82m").files if f.path.startswith("voices/")]
    (folder / "voices").mkdir(exist_ok=True)
    generator = torch.Generator().manual_seed(SEED)
    for path in voices:
        _save(torch.randn(VOICE_SHAPE, generator=generator) * 0.15, folder / path)


def random_model(config: dict):
    """A KModel with seeded random weights for `config`, built without reading any checkpoint.

    KModel's constructor always loads a checkpoint, so the five sub-modules are built here the way it builds
    them (kokoro/model.py) and assigned to an empty KModel."""
    import torch
    from kokoro.istftnet import Decoder
    from kokoro.model import KModel
    from kokoro.modules import CustomAlbert, ProsodyPredictor, TextEncoder
    from transformers import AlbertConfig

    model = KModel.__new__(KModel)
    torch.nn.Module.__init__(model)
    model.vocab = config["vocab"]
    model.bert = CustomAlbert(AlbertConfig(vocab_size=config["n_token"], **config["plbert"]))
    model.bert_encoder = torch.nn.Linear(model.bert.config.hidden_size, config["hidden_dim"])
    model.context_length = model.bert.config.max_position_embeddings
    model.predictor = ProsodyPredictor(style_dim=config["style_dim"], d_hid=config["hidden_dim"],
                                       nlayers=config["n_layer"], max_dur=config["max_dur"], dropout=config["dropout"])
    model.text_encoder = TextEncoder(channels=config["hidden_dim"], kernel_size=config["text_encoder_kernel_size"],
                                     depth=config["n_layer"], n_symbols=config["n_token"])
    model.decoder = Decoder(dim_in=config["hidden_dim"], style_dim=config["style_dim"], dim_out=config["n_mels"],
                            **config["istftnet"])
    return model.eval()


def _save(obj, path: Path) -> None:
    import torch

    # torch.save names the archive's root folder after the file; through a buffer it is always "archive", so the
    # bytes do not depend on where the file is written.
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    path.write_bytes(buffer.getvalue())
