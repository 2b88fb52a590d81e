"""SDXLPainter on the tiny SDXL + fp16-fix VAE + IP-Adapter plus (two instances), on CPU."""

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


def Ref(image, scale, box=None):
    """A reference as the tests write it: (the artifact, its picture)."""
    from animagent.artifacts import Reference

    return Reference(image="ref.png", scale=scale, box=box, layers="all"), image


def _pairs(refs, style):
    styled = [] if style is None else [(style[0].model_copy(update={"layers": "style"}), style[1])]
    pairs = [*refs, *styled]
    return [r for r, _ in pairs], [i for _, i in pairs]


def _draw(painter, prompt, refs, width, height, seeds, style=None, prompt_2=None):
    references, images = _pairs(refs, style)
    return painter.draw(prompt, references, images, width, height, seeds, prompt_2=prompt_2)


def _repair(painter, image, mask, prompt, ref, style, strength, seed):
    references, images = _pairs([ref], style)
    return painter.repair(image, mask, prompt, references, images, strength, seed)


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


def test_sketch_returns_one_image_per_seed_at_the_requested_size(painter) -> None:
    images = painter.sketch(PROMPT, 96, 64, [1, 2, 3])
    assert [(i.size, i.mode) for i in images] == [((96, 64), "RGB")] * 3
    assert not np.array_equal(_pixels(images[0]), _pixels(images[1]))


def test_a_candidate_depends_on_its_seed_not_on_the_batch(painter) -> None:
    batched = painter.sketch(PROMPT, 64, 64, [4, 5])
    alone = painter.sketch(PROMPT, 64, 64, [5])[0]
    # the same noise; batched convolutions may round the last bit differently
    assert np.abs(_pixels(alone) - _pixels(batched[1])).max() <= 2


def test_sketch_is_unchanged_by_loading_the_adapter(weights_root) -> None:
    from animagent.backends.painter_sdxl import SDXLPainter

    painter = SDXLPainter(_config(weights_root), weights_root)
    (before,) = painter.sketch(PROMPT, 64, 64, [3])
    (drawn,) = _draw(painter, PROMPT, [Ref(_noise(0), 0.8)], 64, 64, [3])  # loads the adapters
    (after,) = painter.sketch(PROMPT, 64, 64, [3])
    painter.close()
    assert drawn.size == (64, 64)
    assert not np.array_equal(_pixels(drawn), _pixels(before))
    assert np.array_equal(_pixels(after), _pixels(before))


def test_draw_without_references_is_a_sketch(painter) -> None:
    (drawn,) = _draw(painter, PROMPT, [], 64, 64, [5])
    assert np.array_equal(_pixels(drawn), _pixels(painter.sketch(PROMPT, 64, 64, [5])[0]))


def test_two_references_go_to_one_adapter_with_one_mask_and_scale_each(painter, calls) -> None:

    first, second = _noise(1), _noise(2)
    (image,) = _draw(painter, PROMPT, [Ref(first, 0.7, LEFT), Ref(second, 0.3, RIGHT)], 96, 64, [7])
    assert image.size == (96, 64)
    (call,) = calls
    assert len(call["ip_adapter_image"]) == 2 and len(call["ip_adapter_image"][0]) == 2  # characters, style
    masks, style_mask = call["cross_attention_kwargs"]["ip_adapter_masks"].masks
    assert tuple(masks.shape) == (1, 2, 64, 96) and tuple(style_mask.shape) == (1, 1, 64, 96)
    assert masks[0, 0, :, :48].min() == 1 and masks[0, 0, :, 48:].max() == 0  # first ref: left half
    assert masks[0, 1, :, :48].max() == 0 and masks[0, 1, :, 48:].min() == 1  # second ref: right half
    assert set(map(repr, call["scales_during"].values())) == {"[[0.7, 0.3], 0.0]"}  # no style reference


def test_the_style_reference_reaches_only_the_style_block(painter, calls) -> None:

    _draw(painter, PROMPT, [Ref(_noise(1), 0.6)], 64, 64, [7], style=Ref(_noise(3), 0.4))
    scales = calls[0]["scales_during"]
    style_layers = {name for name in scales if name.startswith("up_blocks.0.attentions.1.")}
    assert style_layers and all(scales[name] == [[0.6], 0.4] for name in style_layers)
    assert all(scales[name] == [[0.6], 0.0] for name in set(scales) - style_layers)


def test_a_style_reference_and_a_second_prompt_change_the_image(painter) -> None:

    refs = [Ref(_noise(1), 0.6)]
    (plain,) = _draw(painter, PROMPT, refs, 64, 64, [8])
    (styled,) = _draw(painter, PROMPT, refs, 64, 64, [8], style=Ref(_noise(3), 1.0))
    (second,) = _draw(painter, PROMPT, refs, 64, 64, [8], prompt_2="a lighthouse at night")
    assert not np.array_equal(_pixels(plain), _pixels(styled))
    assert not np.array_equal(_pixels(plain), _pixels(second))


def test_repair_changes_only_the_masked_region_and_restores_scales(painter) -> None:
    from animagent.backends.painter_sdxl import adapter_scales

    (image,) = _draw(painter, PROMPT, [Ref(_noise(1), 0.6)], 64, 64, [9])
    before = adapter_scales(painter._pipe)
    mask = np.zeros((64, 64), dtype=bool)
    mask[8:40, 4:30] = True
    repaired = _repair(painter, image, mask, PROMPT, Ref(_noise(2), 0.8), Ref(_noise(3), 0.3), 0.9, 4)
    assert repaired.size == (64, 64)
    changed = np.abs(_pixels(repaired) - _pixels(image)).sum(axis=2) > 0
    assert not changed[~mask].any() and changed[mask].any()
    assert adapter_scales(painter._pipe) == before
    assert painter._inpaint.unet is painter._pipe.unet  # from_pipe: the same weights, no copy


def test_reference_without_box_covers_the_whole_frame(painter, calls) -> None:

    _draw(painter, PROMPT, [Ref(_noise(1), 0.6, LEFT), Ref(_noise(2), 0.3)], 64, 64, [7])
    masks, _ = calls[0]["cross_attention_kwargs"]["ip_adapter_masks"].masks
    assert masks[0, 1].min() == 1 and masks[0, 0, :, 32:].max() == 0


def test_scales_are_restored_after_draw_even_when_it_fails(painter) -> None:
    from animagent.backends.painter_sdxl import adapter_scales

    _draw(painter, PROMPT, [Ref(_noise(1), 0.5)], 64, 64, [1])  # make sure the adapters are loaded
    before = adapter_scales(painter._pipe)
    assert before and set(map(repr, before.values())) == {"[1.0, 1.0]"}
    refs = [Ref(_noise(1), 0.7, LEFT), Ref(_noise(2), 0.3, RIGHT)]
    _draw(painter, PROMPT, refs, 64, 64, [7], style=Ref(_noise(3), 0.3))
    assert adapter_scales(painter._pipe) == before
    with pytest.raises(ValueError):  # SDXL needs sizes divisible by 8; the failure comes from inside the call
        _draw(painter, PROMPT, refs, 60, 60, [7])
    assert adapter_scales(painter._pipe) == before


def test_draw_follows_the_references(painter) -> None:

    def draw(first: Image.Image, scale: float = 0.8) -> np.ndarray:
        refs = [Ref(first, scale, LEFT), Ref(_noise(9), 0.3, RIGHT)]
        return _pixels(_draw(painter, PROMPT, refs, 64, 64, [11])[0])

    base = draw(_noise(1))
    assert np.array_equal(draw(_noise(1)), base)  # deterministic for a seed
    assert not np.array_equal(draw(_noise(2)), base)  # another reference image
    assert not np.array_equal(draw(_noise(1), scale=0.2), base)  # another scale


def test_repair_keeps_the_shared_modules_in_the_configured_dtype(weights_root) -> None:
    """diffusers' from_pipe casts the modules it shares to float32 unless told a dtype; on a GPU that made every
    later draw several times slower. bfloat16 stands in for float16 here (the CPU runs it)."""
    import torch

    from animagent.backends.painter_sdxl import SDXLPainter

    painter = SDXLPainter(_config(weights_root).model_copy(update={"dtype": "bfloat16"}), weights_root)
    try:
        (image,) = _draw(painter, PROMPT, [Ref(_noise(1), 0.6)], 64, 64, [9])
        mask = np.zeros((64, 64), dtype=bool)
        mask[8:40, 4:30] = True
        _repair(painter, image, mask, PROMPT, Ref(_noise(2), 0.8), None, 0.9, 4)
        pipe = painter._pipe
        dtypes = {p.dtype for m in (pipe.unet, pipe.vae, pipe.text_encoder, pipe.text_encoder_2, pipe.image_encoder)
                  for p in m.parameters()}
        assert dtypes == {torch.bfloat16}
    finally:
        painter.close()


def test_masks_are_resized_once_per_call_and_grid_not_per_layer_and_step(painter, monkeypatch):
    from diffusers.image_processor import IPAdapterMaskProcessor

    from animagent.backends.sdxl_attention import RegionIPAdapterProcessor

    resizes: list[int] = []
    original = IPAdapterMaskProcessor.downsample

    def counted(mask, batch_size, num_queries, value_embed_dim):
        resizes.append(num_queries)
        return original(mask, batch_size, num_queries, value_embed_dim)

    monkeypatch.setattr(IPAdapterMaskProcessor, "downsample", staticmethod(counted))
    refs = [Ref(_noise(1), 0.7, LEFT), Ref(_noise(2), 0.3, RIGHT)]
    _draw(painter, PROMPT, refs, 64, 64, [7, 8], style=Ref(_noise(3), 0.4))
    processors = painter._pipe.unet.attn_processors
    adapter_layers = [p for p in processors.values() if isinstance(p, RegionIPAdapterProcessor)]
    assert len(adapter_layers) == len([n for n in processors if n.endswith("attn2.processor")])
    grids = set(resizes)
    # two character masks per token grid, the style mask on the style block's grid only; 2 steps, 8 layers
    assert len(resizes) == 2 * len(grids) + 1 < len(adapter_layers) * 2 * painter._config.painter.steps
