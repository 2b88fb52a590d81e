"""Weights registry: real layouts for every tiny model, presence checks, hash verification before loading."""

from __future__ import annotations

import shutil

import pytest

from animagent.config import load_config
from animagent.errors import MissingError
from animagent.weights import MODELS, ensure_present, missing_files, model_dir, required_models, verify_hashes


def test_every_tiny_model_carries_the_real_file_names(tiny_all):
    for name, spec in MODELS.items():
        folder = model_dir(tiny_all, name, "tiny")
        on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
        assert {f.path for f in spec.files} == on_disk, name


def test_registry_pins_revisions_and_licenses():
    for spec in MODELS.values():
        assert len(spec.revision) == 40 and int(spec.revision, 16) >= 0, spec.name
        assert spec.license and spec.files
        # .model: SentencePiece. Kokoro publishes torch.save pickles only, read with torch.load(weights_only=True).
        pickles = (".pth", ".pt") if spec.name == "kokoro_82m" else ()
        assert all(f.path.endswith((".json", ".txt", ".safetensors", ".model", *pickles)) for f in spec.files), \
            spec.name


def test_profiles_name_registry_models():
    for profile in ("tiny", "default", "lowvram", "fast", "wan"):
        assert all(name in MODELS for name in required_models(load_config(profile)))


def test_real_weights_are_hash_checked_before_use(tiny_all, tmp_path, monkeypatch):
    """A file whose bytes do not match the registry's pinned sha256 is refused, naming the file."""
    from animagent import weights

    name = "sdxl_vae_fp16_fix"
    src = model_dir(tiny_all, name, "tiny")
    dst = model_dir(tmp_path, name, "real")
    shutil.copytree(src, dst)
    from animagent.runfolder import sha256_file

    good = sha256_file(dst / "diffusion_pytorch_model.safetensors")
    spec = MODELS[name]
    files = tuple(weights.WeightFile(f.path, None, good if f.path.endswith(".safetensors") else None)
                  for f in spec.files)
    monkeypatch.setitem(MODELS, name, weights.ModelSpec(name, spec.repo_id, spec.revision, files, spec.license,
                                                        spec.role))
    verify_hashes(tmp_path, name)  # matches: remembered
    assert (dst / ".verified.json").is_file()
    data = bytearray((dst / "diffusion_pytorch_model.safetensors").read_bytes())
    data[-1] ^= 0xFF  # flip one byte
    (dst / "diffusion_pytorch_model.safetensors").write_bytes(bytes(data))
    with pytest.raises(MissingError, match="sha256"):
        verify_hashes(tmp_path, name)


def test_missing_files_and_wrong_sizes(tmp_path):
    assert missing_files(tmp_path, "clip_vit_l", "real")[0] == "config.json"
    folder = model_dir(tmp_path, "clip_vit_l", "real")
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    assert any("size 2, expected 4519" in m for m in missing_files(tmp_path, "clip_vit_l", "real"))
    with pytest.raises(MissingError, match="weights pull"):
        ensure_present(load_config("default", overrides=[f"weights.root={tmp_path}"]))


def test_pull_downloads_exactly_the_registry_files_and_checks_sizes(tmp_path, monkeypatch):
    """The hub client is replaced at its boundary (no network here): pull asks for exactly the registry's files
    at the pinned revision, skips files already complete, and refuses a wrong size."""
    import huggingface_hub

    from animagent import weights

    spec = MODELS["sdxl_vae_fp16_fix"]
    asked = []

    def fake_download(repo_id, filename, revision, local_dir):
        asked.append((repo_id, filename, revision))
        size = next(f.size for f in spec.files if f.path == filename)
        (local_dir / filename).parent.mkdir(parents=True, exist_ok=True)
        (local_dir / filename).write_bytes(b"\0" * (size - (1 if "bad" in str(local_dir) else 0)))

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setattr(weights, "verify_hashes", lambda root, name: None)  # zero bytes cannot match real hashes
    seen = []
    weights.pull(tmp_path, ["sdxl_vae_fp16_fix"], lambda name, path, size: seen.append((path, size)))
    assert asked == [(spec.repo_id, f.path, spec.revision) for f in spec.files]
    assert seen == [(f.path, f.size) for f in spec.files]
    assert missing_files(tmp_path, "sdxl_vae_fp16_fix", "real") == []
    weights.pull(tmp_path, ["sdxl_vae_fp16_fix"])  # complete files are not fetched again
    assert len(asked) == len(spec.files)
    with pytest.raises(MissingError, match="expected"):
        weights.pull(tmp_path / "bad", ["sdxl_vae_fp16_fix"])
