"""Tiny DINOv2-base: the real repo's files, byte-identical builds, and the embedder's unit CLS features."""

from __future__ import annotations

import json

import numpy as np
import pytest

from animagent.config import load_config
from animagent.tiny.dino import REAL_CONFIG, REAL_PREPROCESSOR_CONFIG, build_dinov2
from animagent.weights import missing_files, spec


def test_build_writes_the_registry_files_identically(tmp_path, tiny_model):
    folder = tiny_model("dinov2_base")
    assert missing_files(tiny_model.root, "dinov2_base", "tiny") == []
    assert sorted(p.name for p in folder.iterdir()) == sorted(f.path for f in spec("dinov2_base").files)
    config = json.loads((folder / "config.json").read_text())
    assert list(config) == list(REAL_CONFIG) and config["model_type"] == "dinov2"
    assert json.loads((folder / "preprocessor_config.json").read_text()) == REAL_PREPROCESSOR_CONFIG
    build_dinov2(tmp_path / "again")
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        assert (tmp_path / "again" / name).read_bytes() == (folder / name).read_bytes(), name


def test_embedder_gives_unit_cls_features(tiny_model):
    from PIL import Image

    from animagent.backends.embedder_dino import DinoEmbedder

    tiny_model("dinov2_base")
    embedder = DinoEmbedder(load_config("tiny", overrides=[f"weights.root={tiny_model.root}"]), tiny_model.root)
    red, blue = Image.new("RGB", (80, 50), (220, 30, 30)), Image.new("RGB", (40, 60), (30, 30, 220))
    features = embedder.images([red, blue, red.copy()])
    assert features.shape == (3, 32) and features.dtype == np.float32
    assert np.linalg.norm(features, axis=1) == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)
    assert features[0] == pytest.approx(features[2], abs=1e-6)
    assert float(features[0] @ features[1]) < 0.9999
    with pytest.raises(ValueError):
        embedder.images([])
    embedder.close()
