"""The configuration schema: one pydantic tree that drives the YAML profiles, the CLI and the Python API.

A profile is a YAML file in `configs/` (shipped inside the package as `animagent.configs`). Loading order:
profile YAML → optional user YAML (`--config`) → `--set key=value` overrides (dotted keys) → validation.
Every field that changes an output enters the stage keys (runfolder.py), so fields are frozen.
This module owns parsing and validation; it does not know about stages or backends.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from animagent.errors import InputError


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class WeightsConfig(_Section):
    flavor: Literal["real", "tiny"] = Field("real", description="real: pulled weights; tiny: make-tiny output")
    root: str | None = Field(None, description="weights root; default $ANIMAGENT_WEIGHTS, else ./weights")


class LimitsConfig(_Section):
    max_story_bytes: int = Field(100_000, ge=1, le=1_000_000, description="the largest story file accepted")
    max_characters: int = Field(
        3, ge=1, le=8, description="characters the director may plan (each one is an image in a review question)"
    )
    max_settings: int = Field(3, ge=1, le=8, description="settings (places) the director may plan")
    max_scenes: int = Field(4, ge=1, le=20, description="scenes the director may plan; a user script is held to it too")
    max_shots_per_scene: int = Field(
        3, ge=1, le=12, description="shots per scene the director may plan; a user script is held to it too"
    )
    min_shot_seconds: int = Field(2, ge=1, le=30, description="shortest shot the director may plan, in seconds")
    max_shot_seconds: int = Field(5, ge=1, le=30, description="longest shot the director may plan, in seconds")

    @model_validator(mode="after")
    def _ordered(self) -> LimitsConfig:
        if self.min_shot_seconds > self.max_shot_seconds:
            raise ValueError(
                f"min_shot_seconds ({self.min_shot_seconds}) exceeds max_shot_seconds ({self.max_shot_seconds})"
            )
        return self


class DirectorConfig(_Section):
    kind: Literal["transformers", "openai", "vllm"] = Field(
        "transformers", description="transformers: in-process with xgrammar; openai: an OpenAI-compatible server "
        "(vllm serve); vllm: in-process vllm.LLM"
    )
    weights: str = Field("qwen2_5_vl_7b", description="registry name of the in-process director model")
    max_attempts: int = Field(3, ge=1, le=10, description="replies tried per task before DirectorOutputError")
    max_new_tokens: int = Field(
        1536, ge=16, le=16384, description="tokens one reply may have; a longer one is cut off and retried"
    )
    temperature: float = Field(
        0.7, ge=0.0, le=2.0, description="the director's sampling temperature (tiny: 1.0, so every branch runs)"
    )
    max_field_chars: int = Field(
        2000, ge=4, le=4000, description="upper bound on every free-text field the director fills"
    )
    # openai kind (any OpenAI-compatible server, `vllm serve` first of all)
    base_url: str = Field(
        "http://127.0.0.1:8000/v1",
        pattern=r"^https?://[^\s/]+",
        description="chat-completions server of the openai kind",
    )
    api_key: SecretStr | None = Field(
        None, description="bearer token; default $ANIMAGENT_DIRECTOR_API_KEY (never written to a run folder)"
    )
    model: str | None = Field(None, description="served model name; default the weights' Hub repo id")
    timeout_s: float = Field(120.0, gt=0, le=3600, description="one request's timeout")
    deadline_s: float = Field(
        60.0, gt=0, le=86400,
        description="total time one request may spend on transport retries: how long a server that went away "
        "mid-run is waited for",
    )
    sleep_mode: bool = Field(False, description="the server has vLLM's /sleep and /wake_up endpoints")
    box_convention: Literal["qwen2.5", "qwen3", "llava"] = Field(
        "qwen2.5",
        description="qwen2.5: absolute pixels of the resized image; qwen3: 0-1000 relative; llava: 0-1 fractions",
    )
    max_pixels: int = Field(1024 * 28 * 28, ge=4 * 28 * 28, description="image pixel budget for the director")
    gpu_memory_utilization: float = Field(0.35, gt=0, le=0.95, description="vLLM's share of the GPU")
    max_model_len: int = Field(
        16384, ge=1024, le=131072, description="vllm kind: context length the engine reserves memory for"
    )


class PainterConfig(_Section):
    model: str = Field("sdxl_base", description="registry name of the SDXL base model")
    vae: str = Field("sdxl_vae_fp16_fix", description="registry name of the VAE (the fp16-fix one decodes in fp16)")
    ip_adapter: str = Field("ip_adapter_sdxl_vit_h", description="registry name of the IP-Adapter plus (ViT-H)")
    width: int = Field(1024, ge=64, le=2048, multiple_of=8, description="keyframe width in pixels")
    height: int = Field(1024, ge=64, le=2048, multiple_of=8, description="keyframe height in pixels")
    steps: int = Field(30, ge=1, le=150, description="denoising steps per keyframe and repair")
    guidance: float = Field(5.0, ge=1.0, le=20.0, description="classifier-free guidance scale of the painter")
    character_scale: float = Field(0.6, ge=0.0, le=1.0, description="IP-Adapter scale of each character ref")
    setting_scale: float = Field(0.3, ge=0.0, le=1.0, description="IP-Adapter scale of the setting ref")
    negative_prompt: str = Field(
        "blurry, deformed, extra limbs, text, watermark, low quality", description="what every picture avoids"
    )


# Images one director prompt may carry: equal to backends/director_vllm.MAX_IMAGES_PER_PROMPT, which vLLM
# reserves memory for (a test keeps the two equal). Bounds the candidates and frames shown in one question.
MAX_DIRECTOR_IMAGES = 8


class CastConfig(_Section):
    width: int = Field(1024, ge=64, le=2048, multiple_of=8, description="cast sheet width in pixels")
    height: int = Field(1024, ge=64, le=2048, multiple_of=8, description="cast sheet height in pixels")
    candidates: int = Field(
        4, ge=1, le=MAX_DIRECTOR_IMAGES, description="images drawn per character and per setting; the director picks"
    )
    library: str | None = Field(
        None, description="cast library folder; default $ANIMAGENT_HOME/cast, else ~/.local/share/animagent/cast"
    )


class DrawConfig(_Section):
    candidates: int = Field(4, ge=1, le=16, description="keyframe candidates per shot, drawn in one batch")


class ReviewConfig(_Section):
    identity_threshold: float = Field(
        0.8, ge=-1.0, le=1.0,
        description="cosine of a character's masked crop to its memory below which the character is repaired",
    )
    max_rounds: int = Field(2, ge=0, le=4, description="repair rounds per keyframe candidate")
    repair_strength: float = Field(0.9, gt=0.0, le=1.0, description="inpainting strength of a repair")


class EmbedderConfig(_Section):
    clip: str = Field("clip_vit_l", description="CLIP (registry name): identity memory, CLIP-T, background consistency")
    dino: str = Field("dinov2_base", description="DINOv2 (registry name): subject consistency of clip candidates")


class SegmenterConfig(_Section):
    kind: Literal["sam", "segment_anything"] = Field(
        "sam", description="sam: transformers SamModel; segment_anything: the original package and a .pth checkpoint"
    )
    model: str = Field("sam_vit_h", description="registry name of the transformers SAM (kind sam)")
    checkpoint: str | None = Field(
        None, description="an official sam_vit_{h,l,b}_*.pth file (kind segment_anything); checked by sha256"
    )

    @model_validator(mode="after")
    def _checkpoint_for_segment_anything(self) -> SegmenterConfig:
        if self.kind == "segment_anything" and self.checkpoint is None:
            raise ValueError("segmenter.kind segment_anything needs segmenter.checkpoint (a sam_vit_*.pth file)")
        return self


# The motion model each animator kind loads (registry names): a kind with another model's weights cannot load.
ANIMATOR_MODELS = {"svd": "svd_xt", "animatediff": "animatediff_sdxl", "wan": "wan2_2_ti2v_5b"}


class AnimatorConfig(_Section):
    kind: Literal["svd", "animatediff", "wan"] = Field(
        "svd",
        description="svd: image-to-video; animatediff: SDXL text-to-video held to the keyframe by IP-Adapter; "
        "wan: Wan2.2-TI2V-5B, image- and text-to-video, frames from the shot's duration",
    )
    width: int = Field(1024, ge=64, le=2048, multiple_of=8, description="clip width in pixels")
    height: int = Field(576, ge=64, le=2048, multiple_of=8, description="clip height in pixels")
    frames: int = Field(
        25, ge=2, le=64, description="frames per clip of fixed-length animators (svd, animatediff); wan: from the shot"
    )
    steps: int = Field(25, ge=1, le=100, description="denoising steps per clip")
    min_guidance: float = Field(
        1.0, ge=1.0, le=10.0, description="svd: guidance at the first frame (SVD ramps guidance over the clip)"
    )
    max_guidance: float = Field(3.0, ge=1.0, le=10.0, description="svd: guidance at the last frame")
    decode_chunk_size: int = Field(
        8, ge=1, le=64, description="svd: frames decoded per VAE call (fewer: less memory; the OOM ladder halves it)"
    )
    candidates: int = Field(3, ge=1, le=8, description="clip candidates per shot, one seed each")
    top_k: int = Field(2, ge=1, le=8, description="best-scored candidates the director chooses among")
    frames_shown: int = Field(3, ge=1, le=8, description="frames of each top-k candidate the director sees")
    keyframe_scale: float = Field(
        0.7, ge=0.0, le=1.0, description="animatediff: IP-Adapter scale of the keyframe (holds identity)"
    )
    guidance: float = Field(5.0, ge=1.0, le=20.0, description="wan: classifier-free guidance scale")
    cpu_offload: bool = Field(
        False,
        description="wan: each model on the GPU only while it runs and the VAE decoding in tiles, from the start: "
        "what a 24 GB card needs (19.7 GB reserved for a 5 s clip at 1280×704; 33.4 GB untiled)",
    )
    negative_prompt: str = Field(
        # The Wan2.2 repo's default negative prompt (wan/configs/shared_config.py, sample_neg_prompt).
        "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，"
        "丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，"
        "静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走",
        description="wan: what the clip must not show",
    )

    @property
    def model(self) -> str:
        """The motion model's registry name: each kind loads its own (ANIMATOR_MODELS)."""
        return ANIMATOR_MODELS[self.kind]

    @model_validator(mode="after")
    def _consistent(self) -> AnimatorConfig:
        if self.kind == "wan" and (self.width % 32 or self.height % 32):
            # Wan2.2's VAE divides by 16 and its transformer patches 2×2 latents
            raise ValueError(f"animator.kind wan needs width and height multiples of 32, got {self.width}×{self.height}")
        if self.top_k > self.candidates:
            raise ValueError(f"animator.top_k ({self.top_k}) exceeds animator.candidates ({self.candidates})")
        if self.top_k * self.frames_shown > MAX_DIRECTOR_IMAGES:
            raise ValueError(
                f"animator.top_k × frames_shown ({self.top_k * self.frames_shown}) exceeds the "
                f"{MAX_DIRECTOR_IMAGES} images one director question may carry"
            )
        return self


class GpuConfig(_Section):
    allow_degrade: bool = Field(
        False, description="on out-of-memory, after every quality-preserving step, allow fewer frames"
    )
    one_heavy_model: bool = Field(
        False,
        description="keep at most one of the director and the painter on the GPU; the other waits in CPU memory "
        "(lowvram)",
    )
    compile_animator: bool = Field(
        False,
        description="torch.compile the SVD UNet's transformer blocks: -10 % per clip on an H200, about 19 s of "
        "compiling once per run (needs a CUDA GPU with triton)",
    )
    compile_director: bool = Field(
        False,
        description="the transformers director decodes with one static KV cache and a compiled, CUDA-graphed decode "
        "step, its grammar mask filled while the GPU works; measured slower than eager so far (34.7 vs 46.4 tokens/s "
        "on an H200, 32 s of compiling once; docs/benchmarks.md section 11), hence off (needs a CUDA GPU with triton)",
    )
    graph_painter: bool = Field(
        False,
        description="replay the SDXL UNet's forward (IP-Adapters included) from CUDA graphs captured at the film's "
        "shapes, so the host no longer launches each of its kernels: the same pixels as eager; one keyframe 2.85 -> "
        "1.73 s, a batch of 4 5.64 -> 5.56 s on an H100 (docs/benchmarks.md section 13). On in default, fast and wan; "
        "off in lowvram, where parking would drop the graphs at every switch (needs a CUDA GPU; switched off with "
        "one log line where there is none)",
    )
    fp8_animator: bool = Field(
        False,
        description="SVD's linear layers in FP8 (torchao float8 dynamic quantization; per-tensor scales for an fp16 "
        "UNet, per-row for bf16): the clips differ from fp16's, hence on in the fast profile only "
        "(scripts/bench_gpu.py --phases fp8 measures it; docs/benchmarks.md section 13). "
        "Needs torchao (pip install 'animagent[fp8]') and a GPU with FP8 matmuls (Ada, Hopper); switched off with one "
        "log line where they are missing",
    )
    min_memory_gb: float | None = Field(
        None, gt=0,
        description="GPU memory this profile needs on each GPU that runs its models (its measured peak); a Ray "
        "worker on a smaller GPU stops the run before any work (exit 5) naming the node and a profile that fits; "
        "none: no check (CPU profiles)",
    )


class AssembleConfig(_Section):
    fps: int = Field(
        24, ge=1, le=60, description="frame rate of film.mp4; each clip is retimed to its shot at this rate"
    )
    crf: int = Field(
        18, ge=0, le=51, description="x264 constant rate factor of every clip and the film (lower: better, larger)"
    )
    preset: str = Field("medium", description="x264 preset (slower: smaller files at the same quality)")
    storyboard_tile: int = Field(384, ge=64, le=1024, description="storyboard tile width in pixels")
    voice: bool = Field(
        True, description="speak each shot's narration (the voice section) into film.mp4's audio track and fit the "
        "shot to its speech; false: subtitles only, shots keep their planned lengths",
    )


class VoiceConfig(_Section):
    weights: str = Field("kokoro_82m", description="registry name of the text-to-speech model")
    speed: float = Field(1.0, ge=0.5, le=2.0, description="speaking rate; 1.0 is the voice's own")
    loudness_lufs: float = Field(
        -16.0, ge=-40.0, le=-6.0, description="integrated loudness (ITU-R BS.1770) every shot's speech is set to"
    )
    pause_s: float = Field(
        0.5, ge=0.0, le=5.0, description="silence after a shot's speech: a shot lasts at least its speech plus this"
    )


class EvalConfig(_Section):
    auto: bool = Field(True, description="evaluate at the end of `animagent run` (scorecard.json, report.html)")
    identity_encoder: Literal["clip", "dino"] = Field(
        "clip", description="encoder of the character crops for cross-scene identity (DreamFactory's CSFD: CLIP)"
    )
    masked_crops: bool = Field(True, description="SAM-mask character crops before scoring identity")


class ClusterConfig(_Section):
    kind: Literal["local", "ray"] = Field(
        "local", description="local: every model in this process (Ray is never imported); ray: the clip and cast "
        "candidates and their scoring fan out to Ray workers, one per GPU, each keeping its models loaded "
        "(pip install 'animagent[ray]')",
    )
    address: str = Field(
        "auto", pattern=r"^(auto|[^\s:]+:\d+)$",
        description="auto: start a Ray instance on this machine with its GPUs, stopped when the run ends; "
        "HOST:PORT: join the running cluster whose head listens there (`ray start --head --port PORT`)",
    )
    gpus: int | None = Field(
        None, ge=1, le=1024,
        description="address auto: the GPUs the local Ray offers (one worker each); default every GPU of the "
        "machine. Logical GPUs work too: a CPU machine can test the fan-out with the tiny profile",
    )
    max_retries: int = Field(
        2, ge=0, le=10, description="times a task whose worker died (killed, node lost) is sent to another worker"
    )

    @model_validator(mode="after")
    def _gpus_only_for_auto(self) -> ClusterConfig:
        if self.gpus is not None and self.address != "auto":
            raise ValueError(f"cluster.gpus applies to address auto; a joined cluster ({self.address}) offers the "
                             "GPUs its nodes were started with (`ray start --num-gpus N`)")
        return self


class Config(_Section):
    profile: str = Field("default", description="the profile this config was resolved from (set by load_config)")
    seed: int = Field(
        0, ge=0, le=2**31 - 1, description="run seed; each decision derives its own (a new shot changes no other)"
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="where models run; auto: cuda when torch sees a GPU"
    )
    dtype: Literal["float32", "float16", "bfloat16"] = Field("float16", description="weights and activations dtype")
    weights: WeightsConfig = WeightsConfig()
    limits: LimitsConfig = LimitsConfig()
    director: DirectorConfig = DirectorConfig()
    cast: CastConfig = CastConfig()
    painter: PainterConfig = PainterConfig()
    draw: DrawConfig = DrawConfig()
    review: ReviewConfig = ReviewConfig()
    embedder: EmbedderConfig = EmbedderConfig()
    segmenter: SegmenterConfig = SegmenterConfig()
    animator: AnimatorConfig = AnimatorConfig()
    assemble: AssembleConfig = AssembleConfig()
    voice: VoiceConfig = VoiceConfig()
    gpu: GpuConfig = GpuConfig()
    eval: EvalConfig = EvalConfig()
    cluster: ClusterConfig = ClusterConfig()

    @model_validator(mode="after")
    def _director_images(self) -> Config:
        # A keyframe verdict shows the keyframe and the reference sheet of every character in the shot.
        if self.limits.max_characters + 1 > MAX_DIRECTOR_IMAGES:
            raise ValueError(
                f"limits.max_characters ({self.limits.max_characters}) leaves no room for the keyframe among the "
                f"{MAX_DIRECTOR_IMAGES} images one director question may carry"
            )
        return self

    def director_key(self) -> dict:
        """The director fields that can change a reply (for step keys): not the transport's address, key,
        timeouts or memory share, so moving the server or rotating its key redoes nothing."""
        return self.director.model_dump(include={
            "kind", "weights", "model", "max_attempts", "max_new_tokens", "temperature", "max_field_chars",
            "box_convention", "max_pixels",
        })

    def weights_root(self) -> Path:
        """`weights.root`, else $ANIMAGENT_WEIGHTS, else ./weights (the rule `weights pull|make-tiny` share)."""
        return resolve_weights_root(self.weights.root)


def resolve_weights_root(explicit: str | Path | None = None) -> Path:
    return Path(explicit or os.environ.get("ANIMAGENT_WEIGHTS") or "weights").expanduser().resolve()


# What config.yaml holds in place of a secret: that one was given, never the secret itself.
SECRET_SET = "set"


def recorded(config: Config) -> str:
    """The text of a run folder's config.yaml: the resolved config, with the director's api_key replaced by
    `set` (the key is given again at resume, by $ANIMAGENT_DIRECTOR_API_KEY) and the weights root made
    absolute, so a resume from another directory loads the same weights."""
    data = config.model_dump(mode="json")
    data["director"]["api_key"] = SECRET_SET if config.director.api_key is not None else None
    data["weights"]["root"] = str(config.weights_root())
    return yaml.safe_dump(data, sort_keys=True)


def read_recorded(text: str, origin: str) -> Config:
    """The Config a config.yaml written by `recorded` holds; InputError (one line) for a hand-broken one."""
    data = _read_yaml(text, origin)
    director = data.get("director")
    if isinstance(director, dict) and director.get("api_key") == SECRET_SET:
        director["api_key"] = None  # the key itself comes from $ANIMAGENT_DIRECTOR_API_KEY
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"{origin} is not a valid config: {_first_error(exc)}") from None


def profile_names() -> list[str]:
    return sorted(p.name[: -len(".yaml")] for p in resources.files("animagent.configs").iterdir()
                  if p.name.endswith(".yaml"))


def load_config(
    profile: str = "default",
    config_file: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    seed: int | None = None,
) -> Config:
    """Resolve a profile, an optional YAML file and `key=value` overrides into a validated Config."""
    if profile not in profile_names():
        raise InputError(f"unknown profile '{profile}'; choose one of: {', '.join(profile_names())}")
    data = _read_yaml(resources.files("animagent.configs").joinpath(f"{profile}.yaml").read_text(), profile)
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise InputError(f"config file not found: {path}" + (" (it is a directory)" if path.is_dir() else ""))
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"config file {path} is not UTF-8 text (byte {exc.start}); give a YAML file") from None
        _merge(data, _read_yaml(text, str(path)))
    for item in overrides:
        _apply_override(data, item)
    data["profile"] = profile
    if seed is not None:
        data["seed"] = seed
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"invalid config: {_first_error(exc)}") from None


def _read_yaml(text: str, origin: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # the problem and where, never the quoted text (a binary file's would fill the screen)
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or type(exc).__name__
        raise InputError(f"{origin} is not valid YAML: {problem}{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{origin} must hold a mapping of config keys, got {type(data).__name__}")
    return data


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def _apply_override(data: dict[str, Any], item: str) -> None:
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise InputError(f"--set expects key=value, got '{item}'")
    parts = key.split(".")
    model: type[BaseModel] = Config
    node = data
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None or part == "profile":
            valid = ", ".join(k for k in model.model_fields if k != "profile")
            where = ".".join(parts[:i]) or "the config"
            raise InputError(f"--set: unknown key '{key}' ('{part}' is not in {where}; valid: {valid})")
        annotation = field.annotation
        is_section = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        if i == len(parts) - 1:
            if is_section:
                raise InputError(f"--set: '{key}' is a section; set one of its keys, e.g. {key}.<name>=...")
            try:
                node[part] = yaml.safe_load(raw) if raw else ""
            except yaml.YAMLError:
                node[part] = raw
            return
        if not is_section:
            raise InputError(f"--set: unknown key '{key}' ('{'.'.join(parts[:i + 1])}' has no sub-keys)")
        node = node.setdefault(part, {})
        model = annotation


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "config"
    return f"{where}: {err['msg']} (got {err.get('input')!r})"
