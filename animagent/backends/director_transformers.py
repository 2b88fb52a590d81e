"""The `transformers` director kind: a Qwen-VL or LLaVA-OneVision in-process, every reply constrained by xgrammar.

This module owns loading the director model, tokenizer and image processor from the registry folder, turning
director messages into the model's chat input (images as image parts; Qwen-VL's `<|image_pad|>` expanded per
image by its patch grid, LLaVA-OneVision's `<image>` by its packed anyres features), compiling and caching one grammar per schema, one seeded `generate()` per completion, and parking the
model in CPU memory while the painter has the GPU (`gpu.one_heavy_model`). It uses
the tokenizer + image processor route rather than `AutoProcessor`, which needs torchvision for Qwen2.5-VL's
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
from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

from animagent import gpu
from animagent.backends.director import Director, Message, Reply
from animagent.config import Config
from animagent.weights import model_dir

log = logging.getLogger(__name__)

IMAGE_PAD = "<|image_pad|>"
LLAVA_IMAGE = "<image>"
# Not cuDNN attention: it builds a graph for every new sequence length (about 17 ms of CPU each, H200, torch 2.11),
# and decoding meets a new length at every step: a first 280-token reply took 10.4 s with it, 1.9 s without.
ATTENTION = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


class TransformersDirector(Director):
    kind = "transformers"

    def __init__(self, config: Config, log_path: Path):
        super().__init__(config.director, log_path)
        folder = model_dir(config.weights_root(), config.director.weights, config.weights.flavor)
        started = time.perf_counter()
        self._device = gpu.device(config)
        self._parked = False
        self.model = AutoModelForImageTextToText.from_pretrained(
            folder, dtype=gpu.dtype(config), device_map=self._device
        )
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
        torch.manual_seed(seed)
        with torch.inference_mode(), sdpa_kernel(ATTENTION):
            output = self.model.generate(
                **inputs,
                max_new_tokens=self.config.max_new_tokens,
                logits_processor=[xgr.contrib.hf.LogitsProcessor(self.grammars[key])],
                **sampling,
            )
        new = output[0, inputs["input_ids"].shape[1]:].tolist()
        finish = "stop" if new and new[-1] in self.stop_ids else "length"
        seconds = time.perf_counter() - started
        log.debug("director: %d prompt tokens, %d new tokens (%s) in %.2f s", inputs["input_ids"].shape[1],
                  len(new), finish, seconds)
        return Reply(self.tokenizer.decode(new, skip_special_tokens=True), finish)

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
        self.model.to("cpu")
        gpu.free_memory()
        self._parked = True
        log.info("director parked in CPU memory in %.2f s", time.perf_counter() - started)

    def wake(self) -> None:
        """The weights back on the device; `_complete` sends its inputs to `self.model.device`, so it follows."""
        if not self._parked:
            return
        started = time.perf_counter()
        self.model.to(self._device)
        self._parked = False
        log.info("director back on %s in %.2f s", self._device, time.perf_counter() - started)

    def close(self) -> None:
        del self.model
        gpu.free_memory()
