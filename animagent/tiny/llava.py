"""Tiny random LLaVA-OneVision-Qwen2-7B (`llava_onevision_7b`: llava-hf/llava-onevision-qwen2-7b-ov-hf) in its layout.

This module owns `build_llava_onevision(folder)`. The Hub repo is what transformers' conversion script
(`convert_llava_onevision_weights_to_hf.py`) writes: a `LlavaOnevisionConfig` over Qwen2-7B-Instruct's text config
and a 26-layer SigLIP-so400m vision tower without its head, `use_image_newline_parameter`; Qwen2's tokenizer with
`<image>` and `<video>` added as special tokens; the processor's `num_image_tokens` and
`vision_feature_select_strategy`, its chat template, and four safetensors shards with the checkpoint names of
transformers 4.45 (`language_model.model.*`, `vision_tower.vision_model.*`, `multi_modal_projector.*`,
`image_newline`), which both transformers 5 and vLLM map on load. Here the sizes are tiny: a 2-layer Qwen2 with
head_dim 32 (vLLM's CPU attention needs >= 32), a 2-layer SigLIP on 28-pixel tiles (2x2 patches of 14) and
anyres pinpoints of 28-pixel multiples, so an image costs a few dozen tokens. config.json is transformers' own
serialization of that config (no verbatim capture of the real one was found), so the bytes are identical on every
build with one transformers version.
"""

from __future__ import annotations

import json
from pathlib import Path

from animagent.tiny.director import write_bpe_tokenizer, write_shards

# The conversion script's chat template (images first, then text; no default system prompt).
CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n'}}{# Render all images first #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{# Render all video then #}{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}"
    "{{ '<video>\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}"
    "{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] }}{% endgeneration %}{% endfor %}{% endif %}{{'<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Qwen2-7B-Instruct's added tokens, then the two the conversion script adds.
ADDED_TOKENS = (
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True), ("<image>", True), ("<video>", True),
)
TILE = 28  # the real 384: SigLIP's input size, the unit of the anyres pinpoints
PATCH = 14
NUM_LAYERS = 2
SHARDS = 4
VOCAB_SIZE = 576  # above len(tokenizer), like the real 152128 (Qwen2's 152064 + 2, padded to a multiple of 64)
IMAGE_MEAN = [0.5, 0.5, 0.5]  # SigLIP's
IMAGE_STD = [0.5, 0.5, 0.5]


def build_llava_onevision(folder: Path) -> None:
    """Write the registry's files of `llava_onevision_7b` into `folder` (tiny sizes, random weights)."""
    import torch
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration

    folder.mkdir(parents=True, exist_ok=True)
    ids = write_bpe_tokenizer(folder, ADDED_TOKENS)
    special = [content for content, is_special in ADDED_TOKENS if is_special]
    _write_json(folder / "added_tokens.json", dict(sorted(ids.items(), key=lambda item: item[1])))
    _write_json(folder / "special_tokens_map.json", {
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"], "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
    })
    _write_json(folder / "tokenizer_config.json", {
        "add_prefix_space": False,
        "added_tokens_decoder": {
            str(ids[content]): {"content": content, "lstrip": False, "normalized": False, "rstrip": False,
                                "single_word": False, "special": content in special}
            for content, _ in ADDED_TOKENS
        },
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"], "bos_token": None,
        "clean_up_tokenization_spaces": False, "eos_token": "<|im_end|>", "errors": "replace",
        "model_max_length": 32768, "pad_token": "<|endoftext|>", "padding_side": "left",
        "processor_class": "LlavaOnevisionProcessor", "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer", "unk_token": None,
    })
    _write_json(folder / "chat_template.json", {"chat_template": CHAT_TEMPLATE})
    pinpoints = [[TILE * h, TILE * w] for h in range(1, 7) for w in range(1, 7)]  # the real 384..2304 grid
    _write_json(folder / "preprocessor_config.json", {
        "do_convert_rgb": True, "do_normalize": True, "do_pad": True, "do_rescale": True, "do_resize": True,
        "image_grid_pinpoints": pinpoints, "image_mean": IMAGE_MEAN,
        "image_processor_type": "LlavaOnevisionImageProcessor", "image_std": IMAGE_STD,
        "processor_class": "LlavaOnevisionProcessor", "resample": 3, "rescale_factor": 0.00392156862745098,
        "size": {"height": TILE, "width": TILE},
    })
    _write_json(folder / "processor_config.json", {
        "num_image_tokens": (TILE // PATCH) ** 2, "processor_class": "LlavaOnevisionProcessor",
        "vision_feature_select_strategy": "full",
    })
    _write_json(folder / "generation_config.json", {
        "bos_token_id": ids["<|endoftext|>"], "eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]],
        "pad_token_id": ids["<|endoftext|>"],
    })

    config = LlavaOnevisionConfig(
        text_config={
            "model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_size": 64,
            "intermediate_size": 128, "num_hidden_layers": NUM_LAYERS, "num_attention_heads": 2,
            "num_key_value_heads": 1, "max_position_embeddings": 32768, "max_window_layers": NUM_LAYERS,
            "rope_theta": 1000000.0, "rms_norm_eps": 1e-06, "sliding_window": 131072, "use_sliding_window": False,
            "tie_word_embeddings": False, "vocab_size": VOCAB_SIZE, "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"], "torch_dtype": "float32",
        },
        vision_config={
            "model_type": "siglip_vision_model", "hidden_size": 32, "image_size": TILE, "intermediate_size": 64,
            "num_attention_heads": 1, "num_hidden_layers": NUM_LAYERS, "patch_size": PATCH, "vision_use_head": False,
        },
        image_token_index=ids["<image>"],
        video_token_index=ids["<video>"],
        image_grid_pinpoints=pinpoints,
        use_image_newline_parameter=True,
        tie_word_embeddings=False,
    )
    config.architectures = ["LlavaOnevisionForConditionalGeneration"]
    torch.manual_seed(0)
    model = LlavaOnevisionForConditionalGeneration(config).to(torch.float32)
    model.config.save_pretrained(folder)  # config.json, as transformers writes it
    tensors = {_checkpoint_name(k): v.contiguous() for k, v in model.state_dict().items()}
    write_shards(folder, tensors, _shard_of, SHARDS)


def _checkpoint_name(name: str) -> str:
    """transformers 5 module names -> the names in the Hub repo's shards (transformers 4.45's layout). The SigLIP
    tower's own `vision_model.` level is in the checkpoint; transformers 5.2x drops it from its module names."""
    if name.startswith("model.vision_tower."):
        return "vision_tower.vision_model." + name[len("model.vision_tower."):].removeprefix("vision_model.")
    for new, old in (("model.language_model.", "language_model.model."),
                     ("model.multi_modal_projector.", "multi_modal_projector."),
                     ("model.image_newline", "image_newline"),
                     ("lm_head.", "language_model.lm_head.")):
        if name.startswith(new):
            return old + name[len(new):]
    raise ValueError(f"unexpected LLaVA-OneVision tensor {name}")


def _shard_of(name: str) -> int:
    """Vision tower, projector and embeddings first, the layers in the middle, the head last."""
    if name.startswith("language_model.model.layers."):
        return 1 + int(name.split(".")[3]) * 2 // NUM_LAYERS
    if name.startswith(("language_model.model.norm.", "language_model.lm_head.")):
        return 3
    return 0


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
