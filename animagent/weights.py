"""The weights registry: every model animagent loads, by logical name → Hub repo, pinned revision, exact files.

One weights root serves everything (`--dir`, else $ANIMAGENT_WEIGHTS, else ./weights). Inside it each
flavor has its own tree, so tiny and real models never collide:

    <root>/real/<owner>--<repo>/...   what `animagent weights pull` downloads (the Hub repo's own layout)
    <root>/tiny/<owner>--<repo>/...   what `animagent weights make-tiny` writes (same layout, random weights)

Backends load both with the same `from_pretrained(folder, dtype=...)` code. This module owns the registry,
folder resolution, presence checks and downloading; the tiny builders live in `animagent/tiny/`.
Nothing here contacts a hub unless `pull` is called.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

from animagent.config import Config
from animagent.errors import InputError, MissingError

log = logging.getLogger(__name__)
Flavor = Literal["real", "tiny"]


@dataclass(frozen=True)
class WeightFile:
    path: str
    size: int | None = None  # bytes on the Hub; None where the registry does not know it
    sha256: str | None = None  # LFS sha256 where known


@dataclass(frozen=True)
class ModelSpec:
    name: str
    repo_id: str
    revision: str
    files: tuple[WeightFile, ...]
    license: str
    role: str

    @property
    def folder(self) -> str:
        return self.repo_id.replace("/", "--")


def _files(*entries: str | tuple[str, int] | tuple[str, int, str]) -> tuple[WeightFile, ...]:
    return tuple(WeightFile(e) if isinstance(e, str) else WeightFile(*e) for e in entries)


_CLIP_TOKENIZER = ("merges.txt", "special_tokens_map.json", "tokenizer_config.json", "vocab.json")
_T5_TOKENIZER = ("special_tokens_map.json", "spiece.model", "tokenizer.json", "tokenizer_config.json")

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "sdxl_base",
            "stabilityai/stable-diffusion-xl-base-1.0",
            "462165984030d82259a11f4367a4eed129e94a7b",
            _files(
                ("model_index.json", 609),
                ("scheduler/scheduler_config.json", 479),
                ("text_encoder/config.json", 565),
                ("text_encoder/model.fp16.safetensors", 246144152,
                 "660c6f5b1abae9dc498ac2d21e1347d2abdb0cf6c0c0c8576cd796491d9a6cdd"),
                ("text_encoder_2/config.json", 575),
                ("text_encoder_2/model.fp16.safetensors", 1389382176,
                 "ec310df2af79c318e24d20511b601a591ca8cd4f1fce1d8dff822a356bcdb1f4"),
                *(f"tokenizer/{f}" for f in _CLIP_TOKENIZER),
                *(f"tokenizer_2/{f}" for f in _CLIP_TOKENIZER),
                ("unet/config.json", 1680),
                ("unet/diffusion_pytorch_model.fp16.safetensors", 5135149760,
                 "83e012a805b84c7ca28e5646747c90a243c65c8ba4f070e2d7ddc9d74661e139"),
                ("vae/config.json", 642),
                ("vae/diffusion_pytorch_model.fp16.safetensors", 167335342,
                 "bcb60880a46b63dea58e9bc591abe15f8350bde47b405f9c38f4be70c6161e68"),
            ),
            "openrail++",
            "painter: SDXL base 1.0 (keyframes, sheets, inpainting)",
        ),
        ModelSpec(
            "sdxl_vae_fp16_fix",
            "madebyollin/sdxl-vae-fp16-fix",
            "207b116dae70ace3637169f1ddd2434b91b3a8cd",
            _files(("config.json", 631), ("diffusion_pytorch_model.safetensors", 334643238)),
            "mit",
            "painter: SDXL VAE that decodes in fp16 without upcasting",
        ),
        ModelSpec(
            "ip_adapter_sdxl_vit_h",
            "h94/IP-Adapter",
            "018e402774aeeddd60609b4ecdb7e298259dc729",
            _files(
                ("models/image_encoder/config.json", 560),
                ("models/image_encoder/model.safetensors", 2528373448,
                 "6ca9667da1ca9e0b0f75e46bb030f7e011f44f86cbfb8d5a36590fcd7507b030"),
                ("sdxl_models/ip-adapter-plus_sdxl_vit-h.safetensors", 847517512,
                 "3f5062b8400c94b7159665b21ba5c62acdcd7682262743d7f2aefedef00e6581"),
            ),
            "apache-2.0",
            "painter: IP-Adapter plus (ViT-H) for character and setting references",
        ),
        ModelSpec(
            "svd_xt",
            "stabilityai/stable-video-diffusion-img2vid-xt",
            "9e43909513c6714f1bc78bcb44d96e733cd242aa",
            _files(
                ("model_index.json", 496),
                ("feature_extractor/preprocessor_config.json", 518),
                ("image_encoder/config.json", 685),
                ("image_encoder/model.fp16.safetensors", 1264217240,
                 "ae616c24393dd1854372b0639e5541666f7521cbe219669255e865cb7f89466a"),
                ("scheduler/scheduler_config.json", 533),
                ("unet/config.json", 984),
                ("unet/diffusion_pytorch_model.fp16.safetensors", 3049435868,
                 "9fbc02e90f37d422f5e3a4aeaee95f6629dc8c45ca211b951626e930daf2bddf"),
                ("vae/config.json", 607),
                ("vae/diffusion_pytorch_model.fp16.safetensors", 195531910,
                 "af602cd0eb4ad6086ec94fbf1438dfb1be5ec9ac03fd0215640854e90d6463a3"),
            ),
            "stable-video-diffusion-community",
            "animator: SVD-XT image-to-video, 25 frames",
        ),
        ModelSpec(
            "animatediff_sdxl",
            "guoyww/animatediff-motion-adapter-sdxl-beta",
            "26c864717b4d4b002bb48ae6c9d6bb431548c6cb",
            _files("config.json", ("diffusion_pytorch_model.fp16.safetensors", 474328896)),
            "unverified (see the model card)",
            "animator (alternative): AnimateDiff SDXL motion adapter",
        ),
        ModelSpec(
            # Revision: the snapshot public code pins (HF cache paths models--Wan-AI--Wan2.2-TI2V-5B-Diffusers/
            # snapshots/b8fff73...). Shards: diffusers' conversion script saves with max_shard_size="5GB"; on the
            # full-size configs that gives 5 transformer shards (fp32, 19.999 GB of tensors), 3 UMT5-XXL shards
            # (bf16, 11.36 GB) and one fp32 VAE file (2.819 GB of tensors). Byte sizes of the files are not
            # published where we could read them, so none is pinned.
            "wan2_2_ti2v_5b",
            "Wan-AI/Wan2.2-TI2V-5B-Diffusers",
            "b8fff7315c768468a5333511427288870b2e9635",
            _files(
                "model_index.json",
                "scheduler/scheduler_config.json",
                "text_encoder/config.json",
                *(f"text_encoder/model-{i:05d}-of-00003.safetensors" for i in range(1, 4)),
                "text_encoder/model.safetensors.index.json",
                *(f"tokenizer/{f}" for f in _T5_TOKENIZER),
                "transformer/config.json",
                *(f"transformer/diffusion_pytorch_model-{i:05d}-of-00005.safetensors" for i in range(1, 6)),
                "transformer/diffusion_pytorch_model.safetensors.index.json",
                "vae/config.json",
                "vae/diffusion_pytorch_model.safetensors",
            ),
            "apache-2.0",
            "animator (alternative): Wan2.2-TI2V-5B image+text-to-video, 1280×704 at 24 fps, up to 121 frames",
        ),
        ModelSpec(
            "qwen2_5_vl_7b",
            "Qwen/Qwen2.5-VL-7B-Instruct",
            "cc594898137f460bfe9f0759e9844b3ce807cfb5",
            _files(
                ("chat_template.json", 1050),
                ("config.json", 1374),
                ("generation_config.json", 216),
                ("merges.txt", 1671839),
                ("model-00001-of-00005.safetensors", 3900233256,
                 "e97b877e47fde53a6c6e77aafb36e58e91ee9d95c4a3eeac6f1b5c0e6a1c986e"),
                ("model-00002-of-00005.safetensors", 3864726320,
                 "a9a300a43b4724eee2abe7c18ceb26768d0ab011eb0cad19d9bfd2476a24d024"),
                ("model-00003-of-00005.safetensors", 3864726424,
                 "111223d173e00bbee81cba1216fad28668df3476706b7fd26f4d5b50f8b3a507"),
                ("model-00004-of-00005.safetensors", 3864733680,
                 "ef47f634fa57d46ee134edcc09f34085a47da1e16c12a2abe0d67118be6d72ed"),
                ("model-00005-of-00005.safetensors", 1089994880,
                 "0c859795ad3a627a9b95bcb762e059d5b768a4a36fdd4affeff269d93fdecc67"),
                ("model.safetensors.index.json", 57619),
                ("preprocessor_config.json", 350),
                ("tokenizer.json", 7031645),
                ("tokenizer_config.json", 5702),
                ("vocab.json", 2776833),
            ),
            "apache-2.0",
            "director: Qwen2.5-VL-7B-Instruct",
        ),
        ModelSpec(
            "qwen3_vl_8b",
            "Qwen/Qwen3-VL-8B-Instruct",
            "0c351dd01ed87e9c1b53cbc748cba10e6187ff3b",
            _files(
                ("chat_template.json", 5499),
                ("config.json", 1474),
                ("generation_config.json", 269),
                ("merges.txt", 1671839),
                "model-00001-of-00004.safetensors",
                "model-00002-of-00004.safetensors",
                "model-00003-of-00004.safetensors",
                "model-00004-of-00004.safetensors",
                ("model.safetensors.index.json", 67759),
                ("preprocessor_config.json", 390),
                "tokenizer.json",
                ("tokenizer_config.json", 10868),
                ("video_preprocessor_config.json", 385),
                ("vocab.json", 2776833),
            ),
            "apache-2.0",
            "director (alternative): Qwen3-VL-8B-Instruct (box_convention qwen3)",
        ),
        # Revision: the snapshot public code loads from the HF cache
        # (models--llava-hf--llava-onevision-qwen2-7b-ov-hf/snapshots/0d50680..., in several unrelated repos).
        # Files: what transformers' convert_llava_onevision_weights_to_hf.py saves (model + processor, four 5 GB
        # shards of the 8B fp16 model); sizes not captured.
        ModelSpec(
            "llava_onevision_7b",
            "llava-hf/llava-onevision-qwen2-7b-ov-hf",
            "0d50680527681998e456c7b78950205bedd8a068",
            _files(
                "added_tokens.json",
                "chat_template.json",
                "config.json",
                "generation_config.json",
                "merges.txt",
                "model-00001-of-00004.safetensors",
                "model-00002-of-00004.safetensors",
                "model-00003-of-00004.safetensors",
                "model-00004-of-00004.safetensors",
                "model.safetensors.index.json",
                "preprocessor_config.json",
                "processor_config.json",
                "special_tokens_map.json",
                "tokenizer.json",
                "tokenizer_config.json",
                "vocab.json",
            ),
            "apache-2.0",
            "director (alternative): LLaVA-OneVision-Qwen2-7B (box_convention llava)",
        ),
        ModelSpec(
            "sam_vit_h",
            "facebook/sam-vit-huge",
            "87aecf0df4ce6b30cd7de76e87673c49644bdf67",
            _files(
                ("config.json", 6569),
                ("model.safetensors", 2564432288, "edfb0462392541fca9af44ff039bfb32dbd0c939997f3abb77a26e23af7afd7c"),
                ("preprocessor_config.json", 466),
            ),
            "apache-2.0",
            "segmenter: SAM ViT-H (transformers format)",
        ),
        ModelSpec(
            "clip_vit_l",
            "openai/clip-vit-large-patch14",
            "32bd64288804d66eefd0ccbe215aa642df71cc41",
            _files(
                ("config.json", 4519),
                ("merges.txt", 524619),
                ("model.safetensors", 1710540580, "a2bf730a0c7debf160f7a6b50b3aaf3703e7e88ac73de7a314903141db026dcb"),
                ("preprocessor_config.json", 316),
                ("special_tokens_map.json", 389),
                ("tokenizer.json", 2224003),
                ("tokenizer_config.json", 905),
                ("vocab.json", 961143),
            ),
            "none declared (OpenAI CLIP)",
            "embedder: CLIP ViT-L/14 (identity, CLIP-T, memory)",
        ),
        ModelSpec(
            "dinov2_base",
            "facebook/dinov2-base",
            "f9e44c814b77203eaa57a6bdbbd535f21ede1415",
            _files(("config.json", 548), ("model.safetensors", 346345912), "preprocessor_config.json"),
            "apache-2.0",
            "embedder: DINOv2 features for subject consistency (VBench-style)",
        ),
        ModelSpec(
            # Revision, sizes and hashes: the snapshot public code pins (HF cache paths models--hexgrad--Kokoro-82M/
            # snapshots/f3ff357...). The checkpoint and voice packs are torch.save pickles of tensors only; they are
            # read with torch.load(weights_only=True), which refuses any other object. Voices: hexgrad's English
            # voices graded C or better in the repo's VOICES.md (a: American, b: British; f: female, m: male).
            "kokoro_82m",
            "hexgrad/Kokoro-82M",
            "f3ff3571791e39611d31c381e3a41a3af07b4987",
            _files(
                ("config.json", None, "5abb01e2403b072bf03d04fde160443e209d7a0dad49a423be15196b9b43c17f"),
                ("kokoro-v1_0.pth", 327212226, "496dba118d1a58f5f3db2efc88dbdc216e0483fc89fe6e47ee1f2c53f18ad1e4"),
                ("voices/af_heart.pt", 523425, "0ab5709b8ffab19bfd849cd11d98f75b60af7733253ad0d67b12382a102cb4ff"),
                *(f"voices/{v}.pt" for v in (
                    "af_alloy", "af_aoede", "af_bella", "af_kore", "af_nicole", "af_nova", "af_sarah",
                    "am_fenrir", "am_michael", "am_puck", "bf_emma", "bf_isabella", "bm_fable", "bm_george",
                )),
            ),
            "apache-2.0",
            "voice: Kokoro-82M text-to-speech, 24 kHz (narrator and characters)",
        ),
    )
}


def spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise InputError(f"unknown model '{name}'; the registry has: {', '.join(MODELS)}")
    return MODELS[name]


def model_dir(root: Path, name: str, flavor: Flavor) -> Path:
    return root / flavor / spec(name).folder


def required_models(config: Config) -> list[str]:
    """Registry names the config's stages load, in load order."""
    names = [config.painter.model, config.painter.vae, config.painter.ip_adapter, config.animator.model,
             config.embedder.clip, config.embedder.dino]
    if config.segmenter.kind == "sam":
        names.append(config.segmenter.model)
    if config.director.kind in ("transformers", "vllm"):
        names.insert(0, config.director.weights)
    if config.assemble.voice:
        names.append(config.voice.weights)
    return list(dict.fromkeys(names))


def missing_files(root: Path, name: str, flavor: Flavor) -> list[str]:
    """Files of `name` that are absent (or, for real weights with a known size, of the wrong size)."""
    folder = model_dir(root, name, flavor)
    bad = []
    for f in spec(name).files:
        path = folder / f.path
        if not path.is_file():
            bad.append(f.path)
        elif flavor == "real" and f.size is not None and path.stat().st_size != f.size:
            bad.append(f"{f.path} (size {path.stat().st_size}, expected {f.size})")
    return bad


def fix_command(flavor: Flavor, root: Path, profile: str) -> str:
    where = f" --dir {root}"
    if flavor == "tiny":
        return f"animagent weights make-tiny{where}"
    return f"animagent weights pull --profile {profile}{where}"


def ensure_present(config: Config) -> Path:
    """Raise MissingError naming the first missing model of the config and the command that fetches it.

    Real weights are also checked against the registry's sha256 before anything deserialises them (once per
    file: the result is remembered by size and mtime in `.verified.json` inside the model folder).
    """
    root = config.weights_root()
    for name in required_models(config):
        bad = missing_files(root, name, config.weights.flavor)
        if bad:
            raise MissingError(
                f"{config.weights.flavor} weights for '{name}' ({spec(name).repo_id}) are missing in "
                f"{model_dir(root, name, config.weights.flavor)} ({bad[0]}{' ...' if len(bad) > 1 else ''}); "
                f"run: {fix_command(config.weights.flavor, root, config.profile)}"
            )
        if config.weights.flavor == "real":
            verify_hashes(root, name)
    return root


def verify_hashes(root: Path, name: str) -> None:
    """Check every file of a real model whose sha256 the registry pins; MissingError on a mismatch."""
    from animagent.runfolder import sha256_file

    folder = model_dir(root, name, "real")
    record_path = folder / ".verified.json"
    verified = json.loads(record_path.read_text()) if record_path.is_file() else {}
    changed = False
    for f in spec(name).files:
        if f.sha256 is None:
            continue
        stat = (folder / f.path).stat()
        stamp = [stat.st_size, stat.st_mtime_ns, f.sha256]
        if verified.get(f.path) == stamp:
            continue
        log.info("checking sha256 of %s/%s", spec(name).repo_id, f.path)
        actual = sha256_file(folder / f.path)
        if actual != f.sha256:
            raise MissingError(
                f"{folder / f.path} has sha256 {actual[:16]}..., the registry pins {f.sha256[:16]}...; "
                f"delete it and run: animagent weights pull --dir {root}"
            )
        verified[f.path] = stamp
        changed = True
    if changed:
        record_path.write_text(json.dumps(verified, indent=1, sort_keys=True))


def pull(root: Path, names: list[str], on_file: Callable[[str, str, int], None] | None = None) -> None:
    """Download exactly the registry files of `names` into `<root>/real/`, resuming partial downloads.

    `on_file(model, path, bytes)` is called after each file, for progress display. Sizes are checked after
    each file and pinned sha256 hashes after each model.
    """
    import huggingface_hub

    for name in names:
        model = spec(name)
        folder = model_dir(root, name, "real")
        for f in model.files:
            target = folder / f.path
            if not (target.is_file() and (f.size is None or target.stat().st_size == f.size)):
                log.info("downloading %s/%s", model.repo_id, f.path)
                try:
                    huggingface_hub.hf_hub_download(model.repo_id, f.path, revision=model.revision, local_dir=folder)
                except (huggingface_hub.errors.LocalEntryNotFoundError, huggingface_hub.errors.HfHubHTTPError) as exc:
                    raise MissingError(
                        f"could not download {model.repo_id}/{f.path} at {model.revision[:12]}: {exc}; check the "
                        "network, and for gated repos accept the license on the Hub and run `hf auth login`; "
                        "finished files are kept, so rerunning the command resumes"
                    ) from None
            size = target.stat().st_size
            if f.size is not None and size != f.size:
                raise MissingError(f"{model.repo_id}/{f.path}: downloaded {size} bytes, expected {f.size}")
            if on_file is not None:
                on_file(name, f.path, size)
        verify_hashes(root, name)


def make_tiny(root: Path) -> dict[str, Path]:
    """Write a tiny random version of every registry model under `<root>/tiny/`, in the real layouts."""
    from animagent.tiny import build_all

    return build_all(root / "tiny")
