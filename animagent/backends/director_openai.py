"""The `openai` director kind: any OpenAI-compatible chat-completions server, `vllm serve` first of all.

This module owns the wire: the request body (schema-constrained `response_format`, bounded `max_tokens`,
images inline as PNG data URLs sized for the model — never remote URLs), the bearer token, and the transport
retry policy. Connection failures, timeouts, 429 and 5xx are retried with jittered exponential backoff under
`director.deadline_s` per request (each try bounded by `director.timeout_s`); any other status is not
retried. Either way the run stops with one `DirectorUnavailableError` line. A 200 that is empty, refused or
cut off is handed back as a `Reply`: judging and re-asking is the base class's job (backends/director.py).
`check_reachable` is the one request made before a run's work, so a server that is down fails in seconds.
It also owns vLLM's `/sleep` and `/wake_up` calls, made only when `director.sleep_mode` says the server has
them. Starting the server is serve.py's job.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import BaseModel, Field, ValidationError

from animagent.backends.director import Director, Message, Reply, director_size
from animagent.config import Config, DirectorConfig
from animagent.errors import DirectorUnavailableError
from animagent.weights import spec

if TYPE_CHECKING:
    from PIL.Image import Image

log = logging.getLogger(__name__)

BACKOFF_BASE_S = 0.5  # first retry waits 0.25-0.5 s, doubling per retry
BACKOFF_CAP_S = 20.0
def served_model_name(director: DirectorConfig) -> str:
    """The model name requests carry and `animagent director serve` registers: `director.model`, else the
    Hub repo id of `director.weights`."""
    return director.model or spec(director.weights).repo_id


def image_data_url(image: Image, max_pixels: int) -> str:
    size = director_size(image.width, image.height, max_pixels)
    if size != image.size:
        from PIL.Image import Resampling

        image = image.resize(size, Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def chat_messages(messages: list[Message], max_pixels: int) -> list[dict[str, Any]]:
    """Messages in the OpenAI chat format (also what `vllm.LLM.chat` takes); images first, then the text."""
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.images:
            parts: list[dict[str, Any]] = [
                {"type": "image_url", "image_url": {"url": image_data_url(image, max_pixels)}}
                for image in message.images
            ]
            parts.append({"type": "text", "text": message.text})
            out.append({"role": message.role, "content": parts})
        else:
            out.append({"role": message.role, "content": message.text})
    return out


def auth_headers(director: DirectorConfig) -> dict[str, str]:
    key = director.api_key.get_secret_value() if director.api_key else os.environ.get("ANIMAGENT_DIRECTOR_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


CHECK_TIMEOUT_S = 10.0


def check_reachable(director: DirectorConfig) -> None:
    """One request before any work (GET /models): a server that cannot be reached (refused, unknown host, no
    answer within 10 s) or that refuses the key is one DirectorUnavailableError now, not retries for minutes."""
    url = f"{director.base_url.rstrip('/')}/models"
    try:
        response = httpx.get(url, headers=auth_headers(director), timeout=min(director.timeout_s, CHECK_TIMEOUT_S),
                             trust_env=False)
    except httpx.TransportError as exc:
        raise DirectorUnavailableError(
            f"the director server at {director.base_url} cannot be reached ({type(exc).__name__}: {exc}); start it "
            "with `animagent director serve` or fix director.base_url"
        ) from None
    if response.status_code in (401, 403):
        raise DirectorUnavailableError(
            f"the director server at {director.base_url} refused the API key (HTTP {response.status_code}); set "
            "$ANIMAGENT_DIRECTOR_API_KEY (or director.api_key) to the key it was started with"
        )


class _AssistantMessage(BaseModel):
    content: str | None = None
    refusal: str | None = None


class _Choice(BaseModel):
    message: _AssistantMessage
    finish_reason: str | None = None


class _Completion(BaseModel):
    choices: list[_Choice] = Field(min_length=1)


class _Error(BaseModel):
    message: str = ""
    param: str | None = None


class _ErrorBody(BaseModel):
    error: _Error


# The setting to change when a vLLM server refuses a request, by the `param` its error body names.
SERVER_SETTINGS = {
    "model": "set director.model to the name the server serves (`vllm serve --served-model-name`)",
    "input_tokens": "the prompt does not fit the server's context: raise its --max-model-len "
                    "(director.max_model_len of `animagent director serve`)",
    "image": 'raise the server\'s --limit-mm-per-prompt to {"image": 8}, the most images animagent sends',
}


def refusal_line(url: str, response: httpx.Response) -> str:
    """One line for a request the server refused (a 4xx other than 429), naming the setting to change where the
    error body says which parameter it refused (vLLM's OpenAI server does)."""
    try:
        error = _ErrorBody.model_validate_json(response.content).error
    except ValidationError:
        error = _Error(message=response.text)
    fix = SERVER_SETTINGS.get(error.param or "", "check director.base_url, director.model, director.api_key (or "
                              "$ANIMAGENT_DIRECTOR_API_KEY) and director.sleep_mode")
    return f"the director server refused {url} (HTTP {response.status_code}: {error.message[:300]!r}); {fix}"


class OpenAIDirector(Director):
    """Director over HTTP. `clock` and `sleep` are injectable so tests can check the backoff schedule."""

    kind = "openai"

    def __init__(
        self,
        config: Config,
        log_path: Path,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        super().__init__(config.director, log_path)
        self.model = served_model_name(config.director)
        self.url = config.director.base_url.rstrip("/")
        self.server_root = self.url.removesuffix("/v1")
        # trust_env=False: no proxy from the environment; the only socket is the configured director.
        self.client = httpx.Client(headers=auth_headers(config.director), trust_env=False)
        self.clock = clock
        self.pause = sleep
        self._asleep = False

    def _complete(self, messages: list[Message], schema: dict[str, Any], seed: int) -> Reply:
        url = f"{self.url}/chat/completions"
        body = {
            "model": self.model,
            "messages": chat_messages(messages, self.config.max_pixels),
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": schema["title"], "schema": schema, "strict": True},
            },
            "max_tokens": self.config.max_new_tokens,
            "temperature": self.config.temperature,
            "seed": seed,
        }
        response = self._post(url, body)
        try:
            completion = _Completion.model_validate_json(response.content)
        except ValidationError as exc:
            raise DirectorUnavailableError(
                f"the director server at {url} answered 200 with something that is not a chat completion "
                f"({exc.errors()[0]['msg']}: {response.text[:200]!r}); director.base_url must be the /v1 URL "
                "of an OpenAI-compatible server"
            ) from None
        choice = completion.choices[0]
        if choice.message.refusal:
            log.warning("the director refused: %s", choice.message.refusal[:500])
            return Reply("", "refusal")
        return Reply(choice.message.content or "", choice.finish_reason)

    def sleep(self) -> None:
        if self.config.sleep_mode and not self._asleep:
            self._post(f"{self.server_root}/sleep?level=1", None)
            self._asleep = True

    def wake(self) -> None:
        if self.config.sleep_mode and self._asleep:
            self._post(f"{self.server_root}/wake_up", None)
            self._asleep = False

    def close(self) -> None:
        self.client.close()

    def _post(self, url: str, body: dict[str, Any] | None) -> httpx.Response:
        """POST until a 200, retrying transport failures, 429 and 5xx until `deadline_s` has passed."""
        deadline = self.clock() + self.config.deadline_s
        retry = 0
        while True:
            timeout = min(self.config.timeout_s, max(deadline - self.clock(), 0.01))
            try:
                response = self.client.post(url, json=body, timeout=timeout)
            except httpx.TransportError as exc:
                failure = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    return response
                failure = f"HTTP {response.status_code} {response.text[:300]!r}"
                if response.status_code != 429 and response.status_code < 500:
                    raise DirectorUnavailableError(refusal_line(url, response))
            delay = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** min(retry, 16)) * random.uniform(0.5, 1.0)
            if self.clock() + delay >= deadline:
                raise DirectorUnavailableError(
                    f"no answer from the director at {url} within director.deadline_s="
                    f"{self.config.deadline_s:g} s (last failure: {failure}); start the server with "
                    "`animagent director serve` or check director.base_url"
                )
            # one warning line, not one per retry: the error line that may follow must not drown
            (log.warning if retry == 0 else log.info)(
                "director request to %s failed (%s); retrying for up to %g s", url, failure, self.config.deadline_s
            )
            self.pause(delay)
            retry += 1
