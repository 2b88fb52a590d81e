"""Tiny random SAM ViT-H and CLIP ViT-L/14 in the Hub repos' exact layouts (`sam_vit_h`, `clip_vit_l`).

This module owns `build_sam(folder)` (facebook/sam-vit-huge: config.json, model.safetensors and a real-style
preprocessor_config.json for `SamProcessor`, scaled to the tiny 128-pixel encoder) and `build_clip(folder)`
(openai/clip-vit-large-patch14: a `CLIPModel` with 224-pixel images like the real one, so the real
preprocessor_config.json, special_tokens_map.json and tokenizer_config.json are written verbatim, plus a
byte-level CLIP BPE learned here from a fixed corpus as vocab.json, merges.txt and tokenizer.json).
The bytes are identical on every build. It does not load anything back; the backends do.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from animagent.tiny.director import byte_alphabet, learn_bpe, vocab_with_merges

# facebook/sam-vit-huge@87aecf0 preprocessor_config.json, with the tiny encoder's 128 pixels for 1024.
SAM_IMAGE_SIZE = 128
SAM_PREPROCESSOR_CONFIG = {
    "do_convert_rgb": True, "do_normalize": True, "do_pad": True, "do_rescale": True, "do_resize": True,
    "image_mean": [0.485, 0.456, 0.406], "image_processor_type": "SamImageProcessor",
    "image_std": [0.229, 0.224, 0.225], "pad_size": {"height": SAM_IMAGE_SIZE, "width": SAM_IMAGE_SIZE},
    "processor_class": "SamProcessor", "resample": 2, "rescale_factor": 0.00392156862745098,
    "size": {"longest_edge": SAM_IMAGE_SIZE},
}

# openai/clip-vit-large-patch14@32bd642, verbatim (the tiny model keeps 224-pixel inputs).
CLIP_PREPROCESSOR_CONFIG = {
    "crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 224,
}
_CLIP_TOKEN = {"single_word": False, "lstrip": False, "rstrip": False, "normalized": True}
CLIP_SPECIAL_TOKENS_MAP = {
    "bos_token": {"content": "<|startoftext|>", **_CLIP_TOKEN},
    "eos_token": {"content": "<|endoftext|>", **_CLIP_TOKEN},
    "unk_token": {"content": "<|endoftext|>", **_CLIP_TOKEN},
    "pad_token": "<|endoftext|>",
}
CLIP_TOKENIZER_CONFIG = {
    "unk_token": {"content": "<|endoftext|>", **_CLIP_TOKEN, "__type": "AddedToken"},
    "bos_token": {"content": "<|startoftext|>", **_CLIP_TOKEN, "__type": "AddedToken"},
    "eos_token": {"content": "<|endoftext|>", **_CLIP_TOKEN, "__type": "AddedToken"},
    "pad_token": "<|endoftext|>", "add_prefix_space": False, "errors": "replace", "do_lower_case": True,
    "name_or_path": "openai/clip-vit-base-patch32", "model_max_length": 77,
    "special_tokens_map_file": "./special_tokens_map.json", "tokenizer_class": "CLIPTokenizer",
}

CLIP_MERGES = 160
_CLIP_CORPUS = (
    "a girl in a red coat walks through a dark forest",
    "a small robot on a sunny beach with a kite",
    "an old fox sitting on a green hill at dawn",
    "a lighthouse at night under the full moon, watercolor",
    "portrait of a boy with a blue scarf, storybook illustration",
    "a wide shot of a mountain village in the rain",
)


def build_sam(folder: Path) -> None:
    """Write the registry's files of `sam_vit_h` into `folder` (tiny sizes, random weights)."""
    import torch
    from transformers import SamConfig, SamModel

    folder.mkdir(parents=True, exist_ok=True)
    config = SamConfig(
        vision_config={
            "hidden_size": 32, "output_channels": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
            "image_size": SAM_IMAGE_SIZE, "patch_size": 16, "window_size": 4, "global_attn_indexes": [1],
            "num_pos_feats": 16, "mlp_dim": 64,
        },
        prompt_encoder_config={
            "hidden_size": 32, "image_size": SAM_IMAGE_SIZE, "patch_size": 16, "mask_input_channels": 4,
        },
        mask_decoder_config={
            "hidden_size": 32, "mlp_dim": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "iou_head_hidden_dim": 32,
        },
    )
    torch.manual_seed(0)
    SamModel(config).to(torch.float32).save_pretrained(folder)
    _write_json(folder / "preprocessor_config.json", SAM_PREPROCESSOR_CONFIG)


def build_clip(folder: Path) -> None:
    """Write the registry's files of `clip_vit_l` into `folder` (tiny sizes, random weights)."""
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)

    # The real vocabulary's order: 256 byte symbols, the same with </w>, merged tokens, then the two specials.
    # CLIP words: lowercase, CLIP's split, byte level; the last symbol of every word carries </w>.
    split = CLIPTokenizer().backend_tokenizer.pre_tokenizer
    words: Counter[tuple[str, ...]] = Counter()
    for line in _CLIP_CORPUS:
        for word, _ in split.pre_tokenize_str(line.lower()):
            words[(*word[:-1], word[-1] + "</w>")] += 1
    pairs = learn_bpe(words, CLIP_MERGES)
    alphabet = byte_alphabet()
    vocab = vocab_with_merges(alphabet + [c + "</w>" for c in alphabet], pairs)
    vocab = {**vocab, "<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in pairs), encoding="utf-8"
    )
    tokenizer = CLIPTokenizer(vocab=vocab, merges=pairs)
    (folder / "tokenizer.json").write_text(tokenizer.backend_tokenizer.to_str(pretty=True), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps(CLIP_SPECIAL_TOKENS_MAP), encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps(CLIP_TOKENIZER_CONFIG, indent=4) + "\n",
                                                  encoding="utf-8")
    _write_json(folder / "preprocessor_config.json", CLIP_PREPROCESSOR_CONFIG)

    # Text ids as in the real config (bos 0, eos 2, pad 1): eos 2 selects CLIP's argmax pooling, which finds
    # <|endoftext|> because it is the largest id, exactly as with the real vocabulary.
    config = CLIPConfig(
        text_config={
            "vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2,
            "num_attention_heads": 4, "max_position_embeddings": 77, "hidden_act": "quick_gelu",
            "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1, "projection_dim": 24,
        },
        vision_config={
            "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4,
            "image_size": 224, "patch_size": 32, "hidden_act": "quick_gelu", "projection_dim": 24,
        },
        projection_dim=24,
    )
    torch.manual_seed(0)
    CLIPModel(config).to(torch.float32).save_pretrained(folder)


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
