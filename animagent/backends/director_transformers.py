"""The `transformers` director kind: a Qwen-VL or LLaVA-OneVision in-process, every reply constrained by xgrammar.

This module owns loading the director model, tokenizer and image processor from the registry folder, turning
director messages into the model's chat input (images as image parts; Qwen-VL's `<|image_pad|>` expanded per
image by its patch grid, LLaVA-OneVision's `<image>` by its packed anyres features), compiling and caching one
grammar per schema, one seeded `generate()` per completion, the compiled decode (`gpu.compile_director`: one static
KV cache kept across calls, transformers compiles the decode step with CUDA graphs, its attention on the cache's
key/value heads (`decode_attention`), the grammar mask filled while the GPU runs the step), and parking the model in CPU memory while the painter has the GPU (`gpu.one_heavy_model`).
It uses the tokenizer + image processor route rather than `AutoProcessor`, which needs torchvision for Qwen2.5-VL's
video processor (feasibility §5, workaround a); the same code runs on CPU (tiny) and GPU (real).
The retry loop, prompts, schema bounds and the raw-reply log are the base class's (`director.py`).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
import xgrammar as xgr
import xgrammar.contrib.hf
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import (
    AttentionInterface,
    AttentionMaskInterface,
    AutoImageProcessor,
    AutoModelForImageTextToText,
    AutoTokenizer,
    LogitsProcessor,
    StaticCache,
    StoppingCriteria,
)
from transformers.generation.utils import ALL_CACHE_NAMES
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask

from animagent import gpu
from animagent.backends.director import CELL, Director, Message, Reply
from animagent.config import MAX_DIRECTOR_IMAGES, Config
from animagent.weights import model_dir

log = logging.getLogger(__name__)

IMAGE_PAD = "<|image_pad|>"
LLAVA_IMAGE = "<image>"
# Not cuDNN attention: it builds a graph for every new sequence length (about 17 ms of CPU each, H200, torch 2.11),
# and decoding meets a new length at every step: a first 280-token reply took 10.4 s with it, 1.9 s without.
ATTENTION = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
# The static cache's length is a multiple of this, first sized for the longest question the config allows (every
# image at director.max_pixels, PROMPT_TEXT_TOKENS of text, max_new_tokens): one compile per process (32 s, H200). A
# cache sized to each call instead recompiled when it grew, and that second compile outlasted 75 s (H200, torch 2.11).
CACHE_STEP = 4096
PROMPT_TEXT_TOKENS = 4096
# The language model's attention under `gpu.compile_director` (the vision tower keeps SDPA): see `decode_attention`.
DECODE_ATTENTION = "animagent_decode"
# generate's name for a cache it is given: `past_key_values` up to transformers 5.24, `cache` from 5.25 on.
CACHE_ARG = ALL_CACHE_NAMES[0]


class TransformersDirector(Director):
    kind = "transformers"

    def __init__(self, config: Config, log_path: Path):
        super().__init__(config.director, log_path)
        folder = model_dir(config.weights_root(), config.director.weights, config.weights.flavor)
        started = time.perf_counter()
        self._device = gpu.device(config)
        self._parked = False
        self._host = gpu.HostCopy()  # the CPU copy of the weights that parking keeps (lowvram)
        self.compiled = config.gpu.compile_director
        self._cache: StaticCache | None = None
        self.model = AutoModelForImageTextToText.from_pretrained(
            folder, dtype=gpu.dtype(config), device_map=self._device
        )
        if self.compiled:
            self.model.set_attn_implementation({"text_config": DECODE_ATTENTION})
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.image_processor = AutoImageProcessor.from_pretrained(folder)
        self.llava = self.model.config.model_type == "llava_onevision"
        # LLaVA-OneVision's chat template sits beside its processor (chat_template.json), not in the tokenizer.
        self.chat_template = None if self.tokenizer.chat_template else json.loads(
            (folder / "chat_template.json").read_text(encoding="utf-8"))["chat_template"]
        eos = self.model.generation_config.eos_token_id
        self.stop_ids: list[int] = eos if isinstance(eos, list) else [eos]
        # The model's vocabulary is padded above len(tokenizer); the grammar's bitmask must cover all of it.
        info = xgr.TokenizerInfo.from_huggingface(
            self.tokenizer, vocab_size=self.model.config.get_text_config().vocab_size, stop_token_ids=self.stop_ids
        )
        self.compiler = xgr.GrammarCompiler(info)
        self.grammars: dict[str, xgr.CompiledGrammar] = {}
        log.info("director %s loaded from %s in %.2f s", type(self.model).__name__, folder,
                 time.perf_counter() - started)

    def _complete(self, messages: list[Message], schema: dict[str, Any], seed: int) -> Reply:
        started = time.perf_counter()
        key = json.dumps(schema, sort_keys=True)
        if key not in self.grammars:
            # Compiled from the unsorted dump: the grammar emits properties in the schema's (the model's) order.
            self.grammars[key] = self.compiler.compile_json_schema(
                json.dumps(schema), any_whitespace=False, strict_mode=True
            )

        # LLaVA's template reads every message's content as a list of parts (a plain string would be dropped).
        chat = [
            {"role": m.role, "content": [*({"type": "image"} for _ in m.images), {"type": "text", "text": m.text}]}
            if m.images or self.llava else {"role": m.role, "content": m.text}
            for m in messages
        ]
        text = self.tokenizer.apply_chat_template(chat, chat_template=self.chat_template, tokenize=False,
                                                  add_generation_prompt=True)
        images = [image for m in messages for image in m.images]
        vision: dict[str, torch.Tensor] = {}
        if images:
            text, vision = self._llava_vision(text, images) if self.llava else self._qwen_vision(text, images)
        inputs = self.tokenizer([text], return_tensors="pt")
        inputs.update(vision)
        inputs = inputs.to(self.model.device)

        # transformers applies custom logits processors (the grammar) before its sampling warpers (top-k).
        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": self.config.temperature}
            if self.config.temperature > 0 else {"do_sample": False, "temperature": None}
        )
        grammar = self.grammars[key]
        if self.compiled:
            mask = GrammarMask(grammar, self.model.device)
            decoding: dict[str, Any] = {
                "logits_processor": [mask], "stopping_criteria": [GrammarAccept(mask.matcher)],
                CACHE_ARG: self._static_cache(inputs["input_ids"].shape[1] + self.config.max_new_tokens),
            }
        else:
            decoding = {"logits_processor": [xgr.contrib.hf.LogitsProcessor(grammar)]}
        torch.manual_seed(seed)
        with torch.inference_mode(), sdpa_kernel(ATTENTION):
            output = self.model.generate(
                **inputs, max_new_tokens=self.config.max_new_tokens, **decoding, **sampling
            )
        new = output[0, inputs["input_ids"].shape[1]:].tolist()
        finish = "stop" if new and new[-1] in self.stop_ids else "length"
        seconds = time.perf_counter() - started
        log.debug("director: %d prompt tokens, %d new tokens (%s) in %.2f s", inputs["input_ids"].shape[1],
                  len(new), finish, seconds)
        return Reply(self.tokenizer.decode(new, skip_special_tokens=True), finish)

    def _static_cache(self, length: int) -> StaticCache:
        """One KV cache of fixed shape kept across calls: transformers compiles the decode step (on CUDA) once for
        it, and its CUDA graphs replay on the same buffers. A longer call than it holds replaces it."""
        if self._cache is not None and length <= self._cache_len:
            with torch.inference_mode():  # its tensors were made under inference mode, by generate
                self._cache.reset()
            return self._cache
        longest = MAX_DIRECTOR_IMAGES * self.config.max_pixels // CELL**2 + PROMPT_TEXT_TOKENS + self.config.max_new_tokens
        self._cache_len = -(-max(length, longest) // CACHE_STEP) * CACHE_STEP
        self._cache = StaticCache(config=self.model.config.get_text_config(decoder=True), max_cache_len=self._cache_len)
        return self._cache

    def _qwen_vision(self, text: str, images: list) -> tuple[str, dict[str, torch.Tensor]]:
        """Qwen-VL: each image's `<|image_pad|>` repeated once per merged patch of its grid."""
        # smart_resize within [min_pixels, director.max_pixels]: the image the model sees (and the pixel
        # frame of qwen2.5-convention boxes).
        size = {"shortest_edge": self.image_processor.size["shortest_edge"], "longest_edge": self.config.max_pixels}
        vision = dict(self.image_processor(images=images, size=size, return_tensors="pt"))
        per_token = self.image_processor.merge_size**2
        parts = text.split(IMAGE_PAD)
        text = parts[0] + "".join(
            IMAGE_PAD * (int(grid.prod()) // per_token) + part for grid, part in zip(vision["image_grid_thw"], parts[1:])
        )
        return text, vision

    def _llava_vision(self, text: str, images: list) -> tuple[str, dict[str, torch.Tensor]]:
        """LLaVA-OneVision: anyres tiles of each image (one tile each when a prompt has several), its `<image>`
        repeated once per feature the model packs from them, counted by the model itself (its processor would do
        the same sum but cannot be built without torchvision, which its video processor needs)."""
        vision = dict(self.image_processor(images=images, return_tensors="pt"))
        vision["pixel_values"] = vision["pixel_values"].to(self.model.dtype)
        config = self.model.config
        with torch.inference_mode():
            features = self.model.model.get_image_features(
                vision["pixel_values"].to(self.model.device), vision["image_sizes"],
                vision_feature_layer=config.vision_feature_layer,
                vision_feature_select_strategy=config.vision_feature_select_strategy,
                vision_aspect_ratio=config.vision_aspect_ratio, batch_num_images=vision["batch_num_images"],
            ).pooler_output
        parts = text.split(LLAVA_IMAGE)
        text = parts[0] + "".join(LLAVA_IMAGE * len(feature) + part for feature, part in zip(features, parts[1:]))
        return text, vision

    def sleep(self) -> None:
        """The weights to CPU memory and the GPU's cached blocks freed, so the painter fits (lowvram)."""
        if self._parked:
            return
        started = time.perf_counter()
        self._cache = None
        self._host.park([self.model])
        gpu.free_memory()
        self._parked = True
        log.info("director parked in CPU memory in %.2f s", time.perf_counter() - started)

    def wake(self) -> None:
        """The weights back on the device; `_complete` sends its inputs to `self.model.device`, so it follows."""
        if not self._parked:
            return
        started = time.perf_counter()
        self._host.unpark([self.model], self._device)
        self._parked = False
        log.info("director back on %s in %.2f s", self._device, time.perf_counter() - started)

    def close(self) -> None:
        del self.model
        self._cache = None
        gpu.free_memory()


def decode_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, scaling: float, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """One query token against the whole static cache, the padding masked, on the cache's key/value heads.

    SDPA cannot do this step well inside the compiled graph: with a mask it takes the memory-efficient kernel, fed
    keys and values repeated from 4 to 28 heads over the whole cache (transformers' `repeat_kv`), and that kernel does
    not split the sequence (one block per head): 0.70 ms a layer over a 16 384-token cache, 20 ms of a 29 ms token
    (H200). Here each group of query heads meets its key/value head by broadcasting, and the two products are sums
    that inductor fuses into reductions reading the fp16 cache once, accumulating in fp32 (as flash does), split
    along the sequence. Prompts (more than one query token) go to SDPA as before."""
    if query.shape[2] > 1 or attention_mask is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
    batch, heads, _, dim = query.shape
    kv_heads = key.shape[1]
    grouped = query.reshape(batch, kv_heads, heads // kv_heads, 1, dim).float()  # (b, kv heads, group, 1, dim)
    scores = (grouped * key[:, :, None]).sum(-1) * scaling  # (b, kv heads, group, cache)
    scores = scores.masked_fill(~attention_mask, float("-inf"))  # (b, 1, 1, cache): the query's row
    weights = scores.softmax(-1)
    output = (weights[..., None] * value[:, :, None]).sum(-2)  # (b, kv heads, group, dim)
    return output.to(query.dtype).reshape(batch, 1, heads, dim), None


AttentionInterface.register(DECODE_ATTENTION, decode_attention)
AttentionMaskInterface.register(DECODE_ATTENTION, sdpa_mask)


class GrammarMask(LogitsProcessor):
    """xgrammar's mask for the next token, filled on the host while the device runs the step's forward (generate
    calls this after queueing it) and applied on the logits' device; it never waits for the device. The sampled
    token reaches the matcher through `GrammarAccept`, which generate calls right after sampling, where its own stop
    check waits for the device anyway. (xgrammar.contrib.hf reads the token here instead, which waits for the
    forward, and copies the mask from pageable memory.)"""

    def __init__(self, grammar: xgr.CompiledGrammar, device: torch.device):
        self.matcher = xgr.GrammarMatcher(grammar)
        host = xgr.allocate_token_bitmask(1, grammar.tokenizer_info.vocab_size)
        # Pinned, so the copy below is asynchronous; the next fill comes after generate's next stop check, by
        # which time the copy is done.
        self.host = host.pin_memory() if device.type == "cuda" else host
        self.mask = torch.empty_like(self.host, device=device)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if not self.matcher.is_terminated():
            self.matcher.fill_next_token_bitmask(self.host)
        self.mask.copy_(self.host, non_blocking=True)
        xgr.apply_token_bitmask_inplace(scores, self.mask)
        return scores


class GrammarAccept(StoppingCriteria):
    """Feeds each sampled token to the grammar's matcher; never stops generation itself (the stop token does)."""

    def __init__(self, matcher: xgr.GrammarMatcher):
        self.matcher = matcher

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        self.matcher.accept_token(int(input_ids[0, -1]))
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
