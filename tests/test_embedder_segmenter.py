"""CLIP embedder and SAM segmenter on the tiny random models, plus the two vision builders' layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from animagent.config import Config, WeightsConfig
from animagent.weights import MODELS


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _config(root: Path) -> Config:
    return Config(device="cpu", dtype="float32", weights=WeightsConfig(flavor="tiny", root=str(root)))


@pytest.mark.parametrize("name, builder", [("sam_vit_h", "build_sam"), ("clip_vit_l", "build_clip")])
def test_builders_write_exactly_the_registry_files_and_the_same_bytes(tiny_model, tmp_path, name, builder):
    from animagent.tiny import vision

    folder = tiny_model(name)
    assert set(_files(folder)) == {f.path for f in MODELS[name].files}
    getattr(vision, builder)(tmp_path / name)
    assert _files(tmp_path / name) == _files(folder)


@pytest.fixture(scope="module")
def embedder(tiny_model):
    from animagent.backends.embedder import ClipEmbedder

    tiny_model("clip_vit_l")
    e = ClipEmbedder(_config(tiny_model.root), tiny_model.root)
    yield e
    e.close()


@pytest.fixture(scope="module")
def segmenter(tiny_model):
    from animagent.backends.segmenter_sam import SamSegmenter

    tiny_model("sam_vit_h")
    s = SamSegmenter(_config(tiny_model.root), tiny_model.root)
    yield s
    s.close()


def test_image_embeddings_are_unit_float32_rows(embedder):
    images = [Image.new("RGB", (64, 48), (200, 30, 30)), Image.new("RGBA", (30, 90), (0, 90, 200, 128)),
              Image.new("L", (50, 50), 128)]
    vectors = embedder.images(images)
    assert vectors.dtype == np.float32 and vectors.shape[0] == 3
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(embedder.images(images[:1]), vectors[:1], atol=1e-5)


def test_text_embeddings_share_the_image_space(embedder):
    vectors = embedder.texts(["a girl in a red coat", "an old fox on a hill at dawn, watercolor " * 20])
    assert vectors.dtype == np.float32
    assert vectors.shape == (2, embedder.images([Image.new("RGB", (8, 8))]).shape[1])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(vectors[0], vectors[1])


@pytest.mark.parametrize("box", [(8, 12, 40, 40), (0, 0, 96, 64), (200, 300, 400, 500), (-20, -20, 5, 5)])
@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_mask_is_a_bool_array_of_the_image_size(segmenter, box, mode):
    mask = segmenter.mask(Image.new(mode, (96, 64), 90), box)
    assert mask.dtype == np.bool_ and mask.shape == (64, 96)
