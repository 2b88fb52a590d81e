"""Tiny random Qwen2.5-VL-7B-Instruct in the Hub repo's exact layout (`qwen2_5_vl_7b` in the registry).

This module owns `build_qwen2_5_vl(folder)`: a byte-level BPE tokenizer learned here from a fixed corpus (with
Qwen's 22 added tokens in Qwen's order), the captured chat template, a flat real-style `config.json` (the
captured one with tiny sizes and `torch_dtype: float32`), the captured generation and preprocessor configs,
and a 2-layer random model split by hand into the five shards plus `model.safetensors.index.json`.
Tensor names are the checkpoint names the real index uses (`model.layers.*`, `visual.*`, `lm_head.weight`).
The bytes are identical on every build. It does not load anything back; the director backend does.
"""

from __future__ import annotations

import json
from collections import Counter
from itertools import pairwise
from pathlib import Path

# Captured from Qwen/Qwen2.5-VL-7B-Instruct@cc59489 (chat_template.json; the same string is in tokenizer_config).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in "
    "content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] "
    "== 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in "
    "content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen2's added tokens in the real order: (content, special). The real ids start at 151643; here right
# after the trained vocabulary.
ADDED_TOKENS = (
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True), ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True), ("<|box_start|>", True), ("<|box_end|>", True), ("<|quad_start|>", True),
    ("<|quad_end|>", True), ("<|vision_start|>", True), ("<|vision_end|>", True), ("<|vision_pad|>", True),
    ("<|image_pad|>", True), ("<|video_pad|>", True), ("<tool_call>", False), ("</tool_call>", False),
    ("<|fim_prefix|>", False), ("<|fim_middle|>", False), ("<|fim_suffix|>", False), ("<|fim_pad|>", False),
    ("<|repo_name|>", False), ("<|file_sep|>", False),
)

_SPECIAL = [content for content, special in ADDED_TOKENS[1:14]]

# The real repo's small files as captured (Qwen/Qwen2.5-VL-7B-Instruct@cc59489). The tiny build changes only
# sizes, token ids and the dtype; every other value and the key order are the real ones.
REAL_CONFIG = {
    "architectures": ["Qwen2_5_VLForConditionalGeneration"], "attention_dropout": 0.0,
    "bos_token_id": 151643, "eos_token_id": 151645, "vision_start_token_id": 151652, "vision_end_token_id": 151653,
    "vision_token_id": 151654, "image_token_id": 151655, "video_token_id": 151656, "hidden_act": "silu",
    "hidden_size": 3584, "initializer_range": 0.02, "intermediate_size": 18944, "max_position_embeddings": 128000,
    "max_window_layers": 28, "model_type": "qwen2_5_vl", "num_attention_heads": 28, "num_hidden_layers": 28,
    "num_key_value_heads": 4, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 32768,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.41.2", "use_cache": True,
    "use_sliding_window": False,
    "vision_config": {
        "depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
        "in_chans": 3, "out_hidden_size": 3584, "patch_size": 14, "spatial_merge_size": 2, "spatial_patch_size": 14,
        "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2,
        "temporal_patch_size": 2,
    },
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "vocab_size": 152064,
}
REAL_GENERATION_CONFIG = {
    "bos_token_id": 151643, "pad_token_id": 151643, "do_sample": True, "eos_token_id": [151645, 151643],
    "repetition_penalty": 1.05, "temperature": 1e-06, "transformers_version": "4.37.0",
}
REAL_PREPROCESSOR_CONFIG = {
    "min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
    "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
    "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2_5_VLProcessor",
}

BPE_MERGES = 200  # the vocabulary is the 256 byte symbols plus one token per merge
VOCAB_SIZE = 512  # the model's (padded) vocabulary, above len(tokenizer) like the real 152064 vs 151665
NUM_LAYERS = 2
SHARDS = 5

# Story and JSON-shaped text, so that the merges cover words and JSON punctuation runs (`":"`, `","`, `"}`).
_CORPUS = (
    'Mira walks into the forest at dawn. The old fox watches her from the hill.',
    'A small robot finds a red kite on the beach and flies it over the sea.',
    'The lighthouse keeper writes a letter to the moon every night.',
    '{"title":"The Kite","characters":[{"id":"mira","name":"Mira","look":"red coat"}]}',
    '{"scenes":[{"id":"s01","setting":"forest","shots":[{"id":"s01_k1","camera":"wide","seconds":3}]}]}',
    '{"verdict":"ok","score":7,"problems":[],"box":[12,40,200,310],"motion":"slow pan left"}',
    '{"choice":2,"reason":"the face matches the sheet","style":"watercolor","mood":"calm"}',
    'You are the director. Reply with JSON that fits the schema. Describe each shot in one sentence.',
    '<story>Once upon a time, a girl and her dog crossed the mountains to find the singing river.</story>',
    'close-up, medium shot, over the shoulder, tracking, dolly in, tilt up, night, rain, sunlight',
)


def write_bpe_tokenizer(folder: Path, added_tokens: tuple[tuple[str, bool], ...]) -> dict[str, int]:
    """tokenizer.json, vocab.json and merges.txt: Qwen2's pipeline (NFC, Qwen's split regex, byte level) around a
    BPE learned on the corpus, then `added_tokens` ((content, special) pairs). Returns each added token's id."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    pairs = learn_bpe(
        Counter(tuple(word) for line in _CORPUS for word, _ in pre_tokenizer.pre_tokenize_str(line)), BPE_MERGES
    )
    vocab = vocab_with_merges(byte_alphabet(), pairs)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=pairs))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tokenizer.add_tokens([AddedToken(content, special=special, normalized=False) for content, special in added_tokens])
    ids = {content: len(vocab) + i for i, (content, _) in enumerate(added_tokens)}
    (folder / "tokenizer.json").write_text(tokenizer.to_str(pretty=True), encoding="utf-8")
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in pairs), encoding="utf-8"
    )
    return ids


def build_qwen2_5_vl(folder: Path) -> None:
    """Write the registry's files of `qwen2_5_vl_7b` into `folder` (tiny sizes, random weights)."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    folder.mkdir(parents=True, exist_ok=True)

    ids = write_bpe_tokenizer(folder, ADDED_TOKENS)
    _write_json(folder / "tokenizer_config.json", {
        "add_prefix_space": False,
        "added_tokens_decoder": {
            str(ids[content]): {"content": content, "lstrip": False, "normalized": False, "rstrip": False,
                                "single_word": False, "special": special}
            for content, special in ADDED_TOKENS
        },
        "additional_special_tokens": _SPECIAL, "bos_token": None, "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False, "eos_token": "<|im_end|>", "errors": "replace",
        "model_max_length": 131072, "pad_token": "<|endoftext|>", "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer", "unk_token": None, "add_bos_token": False,
    }, end="\n")
    (folder / "chat_template.json").write_text(json.dumps({"chat_template": CHAT_TEMPLATE}, indent=4), encoding="utf-8")
    _write_json(folder / "preprocessor_config.json", REAL_PREPROCESSOR_CONFIG)
    _write_json(folder / "generation_config.json", {
        **REAL_GENERATION_CONFIG, "bos_token_id": ids["<|endoftext|>"], "pad_token_id": ids["<|endoftext|>"],
        "eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]],
    })
    # head_dim 32 = hidden_size / num_attention_heads = 2 * sum(mrope_section): vLLM's CPU attention supports head
    # dims 32, 64, 80, ... only (16 fails at the first request). The vision tower's out_hidden_size is the text
    # hidden_size.
    _write_json(folder / "config.json", {
        **REAL_CONFIG,
        "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
        "vision_start_token_id": ids["<|vision_start|>"], "vision_end_token_id": ids["<|vision_end|>"],
        "vision_token_id": ids["<|vision_pad|>"], "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"], "hidden_size": 64, "intermediate_size": 128,
        "max_window_layers": NUM_LAYERS, "num_attention_heads": 2, "num_hidden_layers": NUM_LAYERS,
        "num_key_value_heads": 1, "torch_dtype": "float32",
        "vision_config": {
            **REAL_CONFIG["vision_config"], "depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
            "out_hidden_size": 64, "fullatt_block_indexes": [1],
        },
        "rope_scaling": {"type": "mrope", "mrope_section": [4, 6, 6]},
        "vocab_size": VOCAB_SIZE,
    })

    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig.from_pretrained(folder)).to(torch.float32)
    tensors = {_checkpoint_name(k): v.contiguous() for k, v in model.state_dict().items()}
    write_shards(folder, tensors, _shard_of, SHARDS)


def byte_alphabet() -> list[str]:
    """GPT-2's byte-to-unicode symbols in its order: the first 256 entries of every byte-level BPE vocabulary."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    rest = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(rest))]


def learn_bpe(words: Counter[tuple[str, ...]], count: int) -> list[tuple[str, str]]:
    """Learn `count` BPE merges from word counts; ties go to the smaller pair, so the result never varies
    (the `tokenizers` trainer breaks ties differently from one process to the next)."""
    merges: list[tuple[str, str]] = []
    for _ in range(count):
        pairs: Counter[tuple[str, str]] = Counter()
        for word, n in words.items():
            for pair in pairwise(word):
                pairs[pair] += n
        if not pairs:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(best)
        merged: Counter[tuple[str, ...]] = Counter()
        for word, n in words.items():
            symbols: list[str] = []
            i = 0
            while i < len(word):
                if word[i:i + 2] == best:
                    symbols.append(best[0] + best[1])
                    i += 2
                else:
                    symbols.append(word[i])
                    i += 1
            merged[tuple(symbols)] += n
        words = merged
    return merges


def vocab_with_merges(symbols: list[str], merges: list[tuple[str, str]]) -> dict[str, int]:
    """Base symbols, then each merge's token in merge order: the layout of GPT-2-style vocab.json files."""
    tokens = list(symbols)
    for a, b in merges:
        if a + b not in tokens:
            tokens.append(a + b)
    return {token: i for i, token in enumerate(tokens)}


def _checkpoint_name(name: str) -> str:
    """transformers 5 module names -> the checkpoint names of the real repo's index."""
    if name.startswith("model.language_model."):
        return "model." + name[len("model.language_model."):]
    if name.startswith("model.visual."):
        return name[len("model."):]
    return name


def _shard_of(name: str) -> int:
    """The real repo's split, scaled down: embeddings and vision tower first, layers in the middle, head last."""
    if name.startswith(("visual.", "model.embed_tokens.")):
        return 0
    if name.startswith("model.layers."):
        return 1 + int(name.split(".")[2]) * 3 // NUM_LAYERS
    if name.startswith("model.norm."):
        return 3
    return 4  # lm_head.weight


def write_shards(folder: Path, tensors: dict, shard_of, count: int) -> None:
    """`tensors` in `count` safetensors shards named as the Hub names them, each where `shard_of(name)` puts it, and
    the index (ending with a newline, as the real repos' do)."""
    from safetensors.torch import save_file

    shard_names = [f"model-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)]
    shards: list[dict] = [{} for _ in shard_names]
    for name, tensor in tensors.items():
        shards[shard_of(name)][name] = tensor
    for shard_name, shard in zip(shard_names, shards):
        save_file(dict(sorted(shard.items())), str(folder / shard_name), metadata={"format": "pt"})
    _write_json(folder / "model.safetensors.index.json", {
        "metadata": {"total_size": sum(t.numel() * t.element_size() for t in tensors.values())},
        "weight_map": dict(sorted((name, shard_names[i]) for i, shard in enumerate(shards) for name in shard)),
    }, end="\n")


def _write_json(path: Path, data: dict, end: str = "") -> None:
    """Two-space JSON; the real repo ends tokenizer_config.json and the index with a newline, the rest without."""
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + end, encoding="utf-8")
