"""Write the default profile's models at FULL SIZE with RANDOM weights, in the real Hub layouts (GPU benchmarks).

Pretrained weights cannot reach the benchmark machine, so this builds every model the default profile loads
(director, painter, IP-Adapter, animator, and the CLIP ViT-L, SAM ViT-H and DINOv2 the review and
scoring stages use) from the verbatim Hub configs in `model-configs/` (../shared/model-configs),
initialises it randomly on the GPU and saves it under `<root>/real/<owner>--<repo>/` with the registry's exact
file names, dtypes (fp16 variants, fp32 files, bf16 shards) and byte sizes. The shapes and therefore the
kernels, timings and memory are the pretrained ones; the pictures are noise.

Byte sizes: `animagent.weights.missing_files` checks real files against the registry's sizes. Every tensor
file here holds the same tensors (or a subset: transformers 5 no longer saves CLIP's `position_ids`) in the
same dtype, so its data is at most the real file's; the safetensors header is padded with spaces (the format
allows that) to give the real size. Text files whose real content we don't have (the Qwen and CLIP BPE files,
the fp16-fix VAE config) are valid stand-ins padded with trailing whitespace (JSON) or a padded first line
(merges.txt, whose `#version` line the readers skip). Tokenizers: small byte-level BPE vocabularies like the
tiny builders' (token ids stay in range); the Qwen vocabulary is filled up to 151643 entries so that Qwen's
added tokens keep their real ids (151643...) and the verbatim config's image-token ids match. The registry's
pinned sha256 values cannot match random weights: loaders that verify them must skip that check
(scripts/bench_gpu.py does, and logs it).

Usage: python scripts/make_fullsize.py --root WEIGHTS_ROOT --configs path/to/model-configs [--models qwen2_5_vl_7b]
Prints a JSON summary (seconds per model) and writes it to <root>/real/fullsize.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import shutil
import struct
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from animagent.weights import MODELS, missing_files, model_dir

log = logging.getLogger("make_fullsize")

BUILT = ("sdxl_base", "sdxl_vae_fp16_fix", "ip_adapter_sdxl_vit_h", "svd_xt", "qwen2_5_vl_7b", "sam_vit_h", "clip_vit_l",
         "dinov2_base")
QWEN_BASE_VOCAB = 151643  # real id of <|endoftext|>, Qwen's first added token
# Text the small BPE vocabularies are trained on: prompt words and JSON punctuation runs.
CORPUS = (
    "anime style, a girl in a red coat and a grey fox walk through the forest at dawn. Full body, standing.",
    "wide shot of the lighthouse at night, rain, close-up, medium shot, over the shoulder, low angle.",
    '{"style_class":"anime","description":"soft pastel palette, clean line, warm light"}',
    '{"title":"The Kite","characters":[{"name":"Mira","appearance":"red coat"}],"settings":[]}',
    "blurry, deformed, extra limbs, text, watermark, low quality, character sheet, plain white background",
)
SAFETENSORS_DTYPES = {torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32", torch.int64: "I64"}


# --- exact-size writers -------------------------------------------------------------------------------------


def registry_size(name: str, path: str) -> int | None:
    return next(f.size for f in MODELS[name].files if f.path == path)


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], size: int | None) -> None:
    """Write a safetensors file, padding its header with spaces so the file has exactly `size` bytes."""
    tensors = {k: v.detach().contiguous() for k, v in sorted(tensors.items())}
    header = safetensors_header(tensors, size)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        fh.write(struct.pack("<Q", len(header)) + header)
        for tensor in tensors.values():
            fh.write(tensor.cpu().view(-1).view(torch.uint8).numpy().tobytes())


def safetensors_header(tensors: dict[str, torch.Tensor], size: int | None) -> bytes:
    """The JSON header for `tensors` (in order), space-padded to fill `size` bytes with the data (else to 8)."""
    entries: dict[str, object] = {}
    offset = 0
    for key, tensor in tensors.items():
        end = offset + tensor.numel() * tensor.element_size()
        entries[key] = {"dtype": SAFETENSORS_DTYPES[tensor.dtype], "shape": list(tensor.shape),
                        "data_offsets": [offset, end]}
        offset = end
    text = json.dumps({"__metadata__": {"format": "pt"}, **entries}, separators=(",", ":")).encode()
    length = size - 8 - offset if size is not None else -(-len(text) // 8) * 8
    if length < len(text):  # some Hub files carry no metadata (the fp16-fix VAE, the adapters); loaders don't need it
        text = json.dumps(entries, separators=(",", ":")).encode()
    if length < len(text):
        raise ValueError(f"{offset} data bytes and a {len(text)}-byte header do not fit in {size} bytes")
    return text + b" " * (length - len(text))


def write_text(path: Path, text: str, size: int | None, first_line_pad: bool = False) -> None:
    """Write UTF-8 text padded to `size` bytes: trailing spaces, or spaces at the end of the first line."""
    data = text.encode()
    if size is not None:
        missing = size - len(data)
        if missing < 0:
            raise ValueError(f"{path}: {len(data)} bytes do not fit in {size}")
        if first_line_pad:
            head, _, rest = data.partition(b"\n")
            data = head + b" " * missing + b"\n" + rest
        else:
            data += b" " * missing
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def copy_configs(configs: Path, name: str, folder: Path, paths: tuple[str, ...]) -> None:
    """Copy verbatim Hub files from model-configs/<owner>--<repo>/ (same subpaths)."""
    source = configs / MODELS[name].folder
    for rel in paths:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / rel, folder / rel)


@contextmanager
def building(device: str, dtype: torch.dtype) -> Iterator[None]:
    """Construct modules directly on `device` in `dtype` (random init runs there; no fp32 copy on the host)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device), torch.no_grad():
            yield
    finally:
        torch.set_default_dtype(previous)


def state(module: torch.nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in module.state_dict().items()}


# --- builders -----------------------------------------------------------------------------------------------


def build_sdxl(folder: Path, configs: Path, device: str) -> None:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    name = "sdxl_base"
    copy_configs(configs, name, folder, (
        "model_index.json", "scheduler/scheduler_config.json", "text_encoder/config.json",
        "text_encoder_2/config.json", "unet/config.json", "vae/config.json",
    ))
    vocab, merges = clip_bpe()
    for sub in ("tokenizer", "tokenizer_2"):
        write_text(folder / sub / "vocab.json", json.dumps(vocab, ensure_ascii=False), None)
        write_text(folder / sub / "merges.txt", "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), None)
        copy_configs(configs, name, folder, (f"{sub}/tokenizer_config.json", f"{sub}/special_tokens_map.json"))
    for sub, cls in (("text_encoder", CLIPTextModel), ("text_encoder_2", CLIPTextModelWithProjection)):
        with building(device, torch.float16):
            model = cls(CLIPTextConfig.from_pretrained(folder / sub))
        rel = f"{sub}/model.fp16.safetensors"
        save_tensors(folder / rel, state(model, torch.float16), registry_size(name, rel))
        del model
    for sub, cls in (("unet", UNet2DConditionModel), ("vae", AutoencoderKL)):
        with building(device, torch.float16):
            model = cls.from_config(cls.load_config(folder / sub))
        rel = f"{sub}/diffusion_pytorch_model.fp16.safetensors"
        save_tensors(folder / rel, state(model, torch.float16), registry_size(name, rel))
        del model


def build_vae_fp16_fix(folder: Path, configs: Path, device: str) -> None:
    """madebyollin/sdxl-vae-fp16-fix: its config.json is not captured. The SDXL VAE config with the values the
    model-configs README reports for it (force_upcast false, sample_size 512), padded to the registry's size."""
    from diffusers import AutoencoderKL

    name = "sdxl_vae_fp16_fix"
    config = json.loads((configs / MODELS["sdxl_base"].folder / "vae/config.json").read_text())
    config.pop("_name_or_path")
    config.update({"_diffusers_version": "0.18.0.dev0", "force_upcast": False, "sample_size": 512})
    write_text(folder / "config.json", json.dumps(config, indent=2) + "\n", registry_size(name, "config.json"))
    with building(device, torch.float32):
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder))
    rel = "diffusion_pytorch_model.safetensors"
    save_tensors(folder / rel, state(vae, torch.float32), registry_size(name, rel))


def build_ip_adapter(folder: Path, configs: Path, device: str) -> None:
    """h94/IP-Adapter: the ViT-H image encoder (fp32) and ip-adapter-plus_sdxl_vit-h in the original
    tencent-ailab key layout (feasibility.md §2): `image_proj.*` = the Resampler, `ip_adapter.{i}.to_{k,v}_ip`
    for every cross-attention processor i of the full SDXL UNet (fp16)."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    name = "ip_adapter_sdxl_vit_h"
    copy_configs(configs, name, folder, ("models/image_encoder/config.json",))
    encoder_config = CLIPVisionConfig.from_pretrained(folder / "models/image_encoder")
    with building(device, torch.float32):
        encoder = CLIPVisionModelWithProjection(encoder_config)
    rel = "models/image_encoder/model.safetensors"
    save_tensors(folder / rel, state(encoder, torch.float32), registry_size(name, rel))
    del encoder

    unet_config = UNet2DConditionModel.load_config(configs / MODELS["sdxl_base"].folder / "unet")
    cross = unet_config["cross_attention_dim"]
    with building(device, torch.float16):
        weights = {f"image_proj.{k}": v for k, v in resampler(encoder_config.hidden_size, cross).items()}
        with torch.device("meta"):
            unet = UNet2DConditionModel.from_config(unet_config)
        channels = unet_config["block_out_channels"]
        for index, processor in enumerate(unet.attn_processors):
            if processor.endswith("attn1.processor"):
                continue
            block = processor.split(".")
            if block[0] == "mid_block":
                hidden = channels[-1]
            elif block[0] == "up_blocks":
                hidden = channels[::-1][int(block[1])]
            else:
                hidden = channels[int(block[1])]
            for projection in ("to_k_ip", "to_v_ip"):
                weights[f"ip_adapter.{index}.{projection}.weight"] = torch.randn(hidden, cross) * 0.02
    rel = "sdxl_models/ip-adapter-plus_sdxl_vit-h.safetensors"
    save_tensors(folder / rel, {k: v.to(torch.float16) for k, v in weights.items()}, registry_size(name, rel))


def resampler(embedding_dim: int, output_dim: int, dim: int = 1280, depth: int = 4, heads: int = 20,
              dim_head: int = 64, num_queries: int = 16, ff_mult: int = 4) -> dict[str, torch.Tensor]:
    """State dict of the original IP-Adapter plus `Resampler` (tencent-ailab resampler.py) at SDXL plus sizes."""
    from torch import nn

    inner = heads * dim_head
    module = nn.Module()
    module.latents = nn.Parameter(torch.randn(1, num_queries, dim) / dim**0.5)
    module.proj_in = nn.Linear(embedding_dim, dim)
    module.proj_out = nn.Linear(dim, output_dim)
    module.norm_out = nn.LayerNorm(output_dim)
    module.layers = nn.ModuleList(
        nn.ModuleList([
            nn.ModuleDict({
                "norm1": nn.LayerNorm(dim), "norm2": nn.LayerNorm(dim),
                "to_q": nn.Linear(dim, inner, bias=False), "to_kv": nn.Linear(dim, 2 * inner, bias=False),
                "to_out": nn.Linear(inner, dim, bias=False),
            }),
            nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim * ff_mult, bias=False), nn.GELU(),
                          nn.Linear(dim * ff_mult, dim, bias=False)),
        ])
        for _ in range(depth)
    )
    return {k: v.detach() for k, v in module.state_dict().items()}


def build_svd(folder: Path, configs: Path, device: str) -> None:
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    name = "svd_xt"
    copy_configs(configs, name, folder, (
        "model_index.json", "feature_extractor/preprocessor_config.json", "image_encoder/config.json",
        "scheduler/scheduler_config.json", "unet/config.json", "vae/config.json",
    ))
    with building(device, torch.float16):
        encoder = CLIPVisionModelWithProjection(CLIPVisionConfig.from_pretrained(folder / "image_encoder"))
    rel = "image_encoder/model.fp16.safetensors"
    save_tensors(folder / rel, state(encoder, torch.float16), registry_size(name, rel))
    del encoder
    for sub, cls in (("unet", UNetSpatioTemporalConditionModel), ("vae", AutoencoderKLTemporalDecoder)):
        with building(device, torch.float16):
            model = cls.from_config(cls.load_config(folder / sub))
        rel = f"{sub}/diffusion_pytorch_model.fp16.safetensors"
        save_tensors(folder / rel, state(model, torch.float16), registry_size(name, rel))
        del model


def build_qwen2_5_vl(folder: Path, configs: Path, device: str) -> None:
    """Qwen2.5-VL-7B-Instruct: verbatim configs, the 729 tensors split into the five bf16 shards exactly as the
    verbatim model.safetensors.index.json says, and a byte-level BPE tokenizer with Qwen's real special ids."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    name = "qwen2_5_vl_7b"
    copy_configs(configs, name, folder, (
        "chat_template.json", "config.json", "generation_config.json", "model.safetensors.index.json",
        "preprocessor_config.json", "tokenizer_config.json",
    ))
    write_qwen_tokenizer(folder)
    with building(device, torch.bfloat16):
        model = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig.from_pretrained(folder))
    tensors = {checkpoint_name(k): v for k, v in state(model, torch.bfloat16).items()}
    weight_map = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
    if set(tensors) != set(weight_map):
        raise ValueError(f"tensor names differ from the index: {sorted(set(tensors) ^ set(weight_map))[:5]}")
    for shard in sorted(set(weight_map.values())):
        save_tensors(folder / shard, {k: v for k, v in tensors.items() if weight_map[k] == shard},
                     registry_size(name, shard))


def checkpoint_name(name: str) -> str:
    """transformers 5 module names -> the checkpoint names of the real repo's index (model.layers.*, visual.*)."""
    if name.startswith("model.language_model."):
        return "model." + name[len("model.language_model."):]
    if name.startswith("model.visual."):
        return name[len("model."):]
    return name


def write_qwen_tokenizer(folder: Path) -> None:
    """Qwen2's pipeline (NFC, Qwen's split regex, byte level) around a small BPE trained on CORPUS, its vocabulary
    filled with unmerged letter strings up to 151643 entries, then the added tokens of the verbatim
    tokenizer_config.json, which thereby get their real ids (151643...)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    def pipeline(tokenizer: Tokenizer) -> Tokenizer:
        tokenizer.normalizer = normalizers.NFC()
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ])
        tokenizer.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
        return tokenizer

    trained = pipeline(Tokenizer(models.BPE()))
    trained.train_from_iterator(CORPUS, trainer=trainers.BpeTrainer(
        vocab_size=512, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    vocab = trained.get_vocab()
    merges = [tuple(pair) for pair in json.loads(trained.to_str())["model"]["merges"]]
    letters = "abcdefghijklmnopqrstuvwxyz"
    fillers = ("\u0120" * space + "".join(chars) for n in itertools.count(2)
               for chars in itertools.product(letters, repeat=n) for space in (0, 1))
    for token in fillers:
        if len(vocab) == QWEN_BASE_VOCAB:
            break
        vocab.setdefault(token, len(vocab))
    tokenizer = pipeline(Tokenizer(models.BPE(vocab=vocab, merges=merges)))
    added = json.loads((folder / "tokenizer_config.json").read_text())["added_tokens_decoder"]
    for token_id, token in sorted(added.items(), key=lambda kv: int(kv[0])):
        tokenizer.add_tokens([AddedToken(token["content"], special=token["special"], normalized=False)])
        if tokenizer.token_to_id(token["content"]) != int(token_id):
            raise ValueError(f"{token['content']} got id {tokenizer.token_to_id(token['content'])}, not {token_id}")

    name = "qwen2_5_vl_7b"
    write_text(folder / "tokenizer.json", tokenizer.to_str(), registry_size(name, "tokenizer.json"))
    ordered = dict(sorted(vocab.items(), key=lambda kv: kv[1]))
    write_text(folder / "vocab.json", json.dumps(ordered, ensure_ascii=False, separators=(",", ":")),
               registry_size(name, "vocab.json"))
    write_text(folder / "merges.txt", "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges),
               registry_size(name, "merges.txt"), first_line_pad=True)


def clip_bpe() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A CLIP-style byte-level BPE: the 256 byte symbols, the same with `</w>`, whole-word merges for the words
    of CORPUS, then <|startoftext|> and <|endoftext|> (ids far below the configs' vocab_size of 49408)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols = [chr(c) for c in printable] + [chr(256 + i) for i in range(256 - len(printable))]
    tokens = symbols + [s + "</w>" for s in symbols]
    merges: list[tuple[str, str]] = []
    words = sorted({w for line in CORPUS for w in line.lower().replace(",", " ").replace(".", " ").split()
                    if w.isalpha()})
    for word in words:
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            if (pieces[0], pieces[1]) not in merges:
                merges.append((pieces[0], pieces[1]))
                tokens.append(pieces[0] + pieces[1])
            pieces = [pieces[0] + pieces[1], *pieces[2:]]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(tokens)}, merges


def build_sam(folder: Path, configs: Path, device: str) -> None:
    from transformers import SamConfig, SamModel

    name = "sam_vit_h"
    copy_configs(configs, name, folder, ("config.json", "preprocessor_config.json"))
    with building(device, torch.float32):
        model = SamModel(SamConfig.from_pretrained(folder))
    tensors = state(model, torch.float32)
    for tied in model._tied_weights_keys:  # stored once in the checkpoint, tied again on load
        tensors.pop(tied)
    save_tensors(folder / "model.safetensors", tensors, registry_size(name, "model.safetensors"))


def build_clip(folder: Path, configs: Path, device: str) -> None:
    from transformers import AutoTokenizer, CLIPConfig, CLIPModel

    name = "clip_vit_l"
    copy_configs(configs, name, folder, (
        "config.json", "preprocessor_config.json", "special_tokens_map.json", "tokenizer_config.json",
    ))
    vocab, merges = clip_bpe()
    vocab_text = json.dumps(vocab, ensure_ascii=False)
    merges_text = "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges)
    write_text(folder / "vocab.json", vocab_text, None)
    write_text(folder / "merges.txt", merges_text, None)
    tokenizer_json = AutoTokenizer.from_pretrained(folder).backend_tokenizer.to_str()
    write_text(folder / "tokenizer.json", tokenizer_json, registry_size(name, "tokenizer.json"))
    write_text(folder / "vocab.json", vocab_text, registry_size(name, "vocab.json"))
    write_text(folder / "merges.txt", merges_text, registry_size(name, "merges.txt"), first_line_pad=True)
    with building(device, torch.float32):
        model = CLIPModel(CLIPConfig.from_pretrained(folder))
    save_tensors(folder / "model.safetensors", state(model, torch.float32), registry_size(name, "model.safetensors"))


def build_dinov2(folder: Path, configs: Path, device: str) -> None:
    """facebook/dinov2-base: not in model-configs; the config and preprocessor values captured in
    animagent/tiny/dino.py, written as JSON padded to the registry's size."""
    from transformers import Dinov2Config, Dinov2Model

    from animagent.tiny.dino import REAL_CONFIG, REAL_PREPROCESSOR_CONFIG

    name = "dinov2_base"
    write_text(folder / "config.json", json.dumps(REAL_CONFIG, indent=2) + "\n", registry_size(name, "config.json"))
    write_text(folder / "preprocessor_config.json", json.dumps(REAL_PREPROCESSOR_CONFIG, indent=2) + "\n", None)
    with building(device, torch.float32):
        model = Dinov2Model(Dinov2Config.from_pretrained(folder))
    save_tensors(folder / "model.safetensors", state(model, torch.float32), registry_size(name, "model.safetensors"))


BUILDERS = {
    "sdxl_base": build_sdxl,
    "sdxl_vae_fp16_fix": build_vae_fp16_fix,
    "ip_adapter_sdxl_vit_h": build_ip_adapter,
    "svd_xt": build_svd,
    "qwen2_5_vl_7b": build_qwen2_5_vl,
    "sam_vit_h": build_sam,
    "clip_vit_l": build_clip,
    "dinov2_base": build_dinov2,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="weights root; models go to <root>/real/")
    parser.add_argument("--configs", type=Path, required=True, help="the captured model-configs folder")
    parser.add_argument("--models", default=",".join(BUILT), help=f"comma-separated, from: {', '.join(BUILT)}")
    args = parser.parse_args()
    models = [name for name in args.models.split(",") if name]
    unknown = set(models) - set(BUILT)
    if unknown:
        raise SystemExit(f"unknown models {sorted(unknown)}; choose from {BUILT}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    for name in models:
        folder = model_dir(args.root, name, "real")
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        begin = time.perf_counter()
        BUILDERS[name](folder, args.configs, device)
        if device == "cuda":
            torch.cuda.empty_cache()
        seconds[name] = round(time.perf_counter() - begin, 2)
        bad = missing_files(args.root, name, "real")
        if bad:
            raise SystemExit(f"{name}: files missing or of the wrong size after the build: {bad}")
        log.info("%s: %.1f s", name, seconds[name])
    total_bytes = sum(p.stat().st_size for name in models for p in model_dir(args.root, name, "real").rglob("*")
                      if p.is_file())
    summary = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "seconds": seconds,
        "total_seconds": round(time.perf_counter() - started, 2),
        "total_gb": round(total_bytes / 1e9, 2),
        "torch": torch.__version__,
    }
    (args.root / "real" / "fullsize.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
