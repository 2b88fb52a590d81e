"""SDXLPainter on the tiny SDXL + fp16-fix VAE + IP-Adapter plus, on CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from animagent.artifacts import Box
from animagent.config import Config

PROMPT = "a girl in the forest"
LEFT = Box(x0=0.0, y0=0.0, x1=0.5, y1=1.0)
RIGHT = Box(x0=0.5, y0=0.0, x1=1.0, y1=1.0)


def _config(root: Path) -> Config:
    return Config(
        device="cpu", dtype="float32", weights={"flavor": "tiny", "root": str(root)},
        painter={"width": 64, "height": 64, "steps": 2},
    )


def _noise(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (48, 40, 3), dtype=np.uint8))


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float32)


@pytest.fixture(scope="module")
def weights_root(tiny_model) -> Path:
    for name in ("sdxl_base", "sdxl_vae_fp16_fix", "ip_adapter_sdxl_vit_h"):
        tiny_model(name)
    return tiny_model.root


@pytest.fixture(scope="module")
def painter(weights_root):
    from animagent.backends.painter_sdxl import SDXLPainter

    painter = SDXLPainter(_config(weights_root), weights_root)
    yield painter
    painter.close()


@pytest.fixture
def calls(monkeypatch) -> list[dict]:
    """Records each pipeline call's kwargs and the adapter scales during it; the real call still runs."""
    from diffusers import StableDiffusionXLPipeline

    from animagent.backends.painter_sdxl import adapter_scales

    original = StableDiffusionXLPipeline.__call__
    recorded: list[dict] = []

    def spy(self, *args, **kwargs):
        recorded.append({**kwargs, "scales_during": adapter_scales(self)})
        return original(self, *args, **kwargs)

    monkeypatch.setattr(StableDiffusionXLPipeline, "__call__", spy)
    return recorded


def test_sketch_returns_the_requested_size(painter) -> None:
    image = painter.sketch(PROMPT, 96, 64, seed=1)
    assert image.size == (96, 64) and image.mode == "RGB"


def test_sketch_is_unchanged_by_loading_the_adapter(weights_root) -> None:
    from animagent.backends.painter_sdxl import Reference, SDXLPainter

    painter = SDXLPainter(_config(weights_root), weights_root)
    before = painter.sketch(PROMPT, 64, 64, seed=3)
    drawn = painter.draw(PROMPT, [Reference(_noise(0), 0.8)], 64, 64, seed=3)  # loads the adapter
    after = painter.sketch(PROMPT, 64, 64, seed=3)
    painter.close()
    assert drawn.size == (64, 64)
    assert not np.array_equal(_pixels(drawn), _pixels(before))
    assert np.array_equal(_pixels(after), _pixels(before))


def test_draw_without_references_is_a_sketch(painter) -> None:
    drawn = painter.draw(PROMPT, [], 64, 64, seed=5)
    assert np.array_equal(_pixels(drawn), _pixels(painter.sketch(PROMPT, 64, 64, seed=5)))


def test_two_references_go_to_one_adapter_with_one_mask_and_scale_each(painter, calls) -> None:
    from animagent.backends.painter_sdxl import Reference

    first, second = _noise(1), _noise(2)
    image = painter.draw(PROMPT, [Reference(first, 0.7, LEFT), Reference(second, 0.3, RIGHT)], 96, 64, seed=7)
    assert image.size == (96, 64)
    (call,) = calls
    assert len(call["ip_adapter_image"]) == 1 and len(call["ip_adapter_image"][0]) == 2
    (masks,) = call["cross_attention_kwargs"]["ip_adapter_masks"]
    assert tuple(masks.shape) == (1, 2, 64, 96)
    assert masks[0, 0, :, :48].min() == 1 and masks[0, 0, :, 48:].max() == 0  # first ref: left half
    assert masks[0, 1, :, :48].max() == 0 and masks[0, 1, :, 48:].min() == 1  # second ref: right half
    assert set(map(repr, call["scales_during"].values())) == {"[[0.7, 0.3]]"}


def test_reference_without_box_covers_the_whole_frame(painter, calls) -> None:
    from animagent.backends.painter_sdxl import Reference

    painter.draw(PROMPT, [Reference(_noise(1), 0.6, LEFT), Reference(_noise(2), 0.3)], 64, 64, seed=7)
    (masks,) = calls[0]["cross_attention_kwargs"]["ip_adapter_masks"]
    assert masks[0, 1].min() == 1 and masks[0, 0, :, 32:].max() == 0


def test_scales_are_restored_after_draw_even_when_it_fails(painter) -> None:
    from animagent.backends.painter_sdxl import Reference, adapter_scales

    painter.draw(PROMPT, [Reference(_noise(1), 0.5)], 64, 64, seed=1)  # make sure the adapter is loaded
    before = adapter_scales(painter._pipe)
    assert before and set(map(repr, before.values())) == {"[1.0]"}
    refs = [Reference(_noise(1), 0.7, LEFT), Reference(_noise(2), 0.3, RIGHT)]
    painter.draw(PROMPT, refs, 64, 64, seed=7)
    assert adapter_scales(painter._pipe) == before
    with pytest.raises(ValueError):  # SDXL needs sizes divisible by 8; the failure comes from inside the call
        painter.draw(PROMPT, refs, 60, 60, seed=7)
    assert adapter_scales(painter._pipe) == before


def test_draw_follows_the_references(painter) -> None:
    from animagent.backends.painter_sdxl import Reference

    def draw(first: Image.Image, scale: float = 0.8) -> np.ndarray:
        refs = [Reference(first, scale, LEFT), Reference(_noise(9), 0.3, RIGHT)]
        return _pixels(painter.draw(PROMPT, refs, 64, 64, seed=11))

    base = draw(_noise(1))
    assert np.array_equal(draw(_noise(1)), base)  # deterministic for a seed
    assert not np.array_equal(draw(_noise(2)), base)  # another reference image
    assert not np.array_equal(draw(_noise(1), scale=0.2), base)  # another scale
