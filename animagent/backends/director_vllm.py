"""The `vllm` director kind: the director model in this process through `vllm.LLM`, for GPU users.

This module owns the engine and sampling arguments (pure functions, tested without vLLM) and the calls:
`llm.chat` with `StructuredOutputsParams(json=schema)`, `llm.sleep(level=1)` / `llm.wake_up()` so diffusion
gets the GPU between director phases. Parking (`gpu.one_heavy_model`) is that sleep mode too: level 1 moves the
weights to CPU memory and drops the KV cache. Messages and images are built exactly as for the `openai` kind
(director_openai.py), so both kinds see the same pixels. vLLM is imported only when this kind is built.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from animagent.backends.director import Director, Message, Reply
from animagent.backends.director_openai import chat_messages
from animagent.config import Config, DirectorConfig
from animagent.errors import MissingError
from animagent.weights import model_dir

log = logging.getLogger(__name__)

# Images one director prompt may carry (vLLM reserves memory for this many). The largest task, picking
# among the top-k clips, shows a few frames of each.
MAX_IMAGES_PER_PROMPT = 8
# The grammar the transformers kind compiles (no whitespace between tokens): a model that is unsure, the tiny
# random one always, otherwise fills max_tokens with whitespace the JSON grammar allows. serve.py passes it too.
STRUCTURED_OUTPUTS = {"backend": "xgrammar", "disable_any_whitespace": True}


def engine_args(config: Config, model_folder: Path) -> dict[str, Any]:
    """Keyword arguments of `vllm.LLM` for the config's director."""
    director = config.director
    args: dict[str, Any] = {
        "model": str(model_folder),
        "max_model_len": director.max_model_len,
        "limit_mm_per_prompt": {"image": MAX_IMAGES_PER_PROMPT},
        "gpu_memory_utilization": director.gpu_memory_utilization,
        # vLLM's CPU build has no sleep mode (it refuses enable_sleep_mode); on CPU nothing waits for the GPU.
        "enable_sleep_mode": config.device != "cpu",
        "trust_remote_code": False,
        # vLLM's own sampling defaults, not the model's generation_config.json (Qwen2.5-VL's sets top_k=1,
        # which would make every re-ask greedy): temperature and seed below are the only sampling knobs.
        "generation_config": "vllm",
        "structured_outputs_config": STRUCTURED_OUTPUTS,
    }
    if config.device == "cpu":
        # the tiny weights' float32, and no torch.compile warm-up (40-70 s that a tiny model never pays back)
        args |= {"dtype": config.dtype, "enforce_eager": True}
    return args


def sampling_args(director: DirectorConfig, seed: int) -> dict[str, Any]:
    """Keyword arguments of `vllm.SamplingParams` besides the structured-output constraint."""
    return {"max_tokens": director.max_new_tokens, "temperature": director.temperature, "seed": seed}


class VLLMDirector(Director):
    kind = "vllm"

    def __init__(self, config: Config, log_path: Path):
        super().__init__(config.director, log_path)
        try:
            import vllm
        except ImportError:
            raise MissingError("the vllm director needs vLLM: pip install 'animagent[vllm]'") from None
        folder = model_dir(config.weights_root(), config.director.weights, config.weights.flavor)
        args = engine_args(config, folder)
        self.llm = vllm.LLM(**args)
        self._can_sleep = args["enable_sleep_mode"]
        self._parked = False

    def _complete(self, messages: list[Message], schema: dict[str, Any], seed: int) -> Reply:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        params = SamplingParams(
            structured_outputs=StructuredOutputsParams(json=schema), **sampling_args(self.config, seed)
        )
        output = self.llm.chat(chat_messages(messages, self.config.max_pixels), params, use_tqdm=False)
        completion = output[0].outputs[0]
        return Reply(completion.text, completion.finish_reason)

    def sleep(self) -> None:
        """vLLM's own sleep mode (enabled in `engine_args` off CPU): the weights wait in CPU memory."""
        if self._parked or not self._can_sleep:
            return
        started = time.perf_counter()
        self.llm.sleep(level=1)
        self._parked = True
        log.info("director (vllm) asleep in %.2f s", time.perf_counter() - started)

    def wake(self) -> None:
        if not self._parked:
            return
        started = time.perf_counter()
        self.llm.wake_up()
        self._parked = False
        log.info("director (vllm) awake in %.2f s", time.perf_counter() - started)

    def close(self) -> None:
        del self.llm
