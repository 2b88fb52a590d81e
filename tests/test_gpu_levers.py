"""The GPU levers gpu.graph_painter and gpu.fp8_animator where they cannot run (CPU: one log line, then the same
work without them), why `lever_off` says they cannot, `animagent doctor` naming them, and the CUDA-graph key
(`gpu.graph_key`): the same graph for calls that differ only in their tensors' values. An opt-in GPU test
(ANIMAGENT_GPU_TESTS=1) replays the tiny painter's UNet from its graphs."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from animagent import gpu
from animagent.artifacts import Box, Reference
from animagent.config import Config, load_config

LEFT, RIGHT = Box(x0=0.0, y0=0.0, x1=0.5, y1=1.0), Box(x0=0.5, y0=0.0, x1=1.0, y1=1.0)


def _lever_records(caplog, lever: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if f"gpu.{lever}" in r.getMessage()]


# --- lever_off ------------------------------------------------------------------------------------------------


def test_levers_off_in_the_config_need_nothing():
    config = Config()
    assert gpu.lever_off(config, "graph_painter") is None and gpu.lever_off(config, "fp8_animator") is None


@pytest.mark.parametrize("lever", ["graph_painter", "fp8_animator"])
@pytest.mark.parametrize("device", ["auto", "cpu"])
def test_a_lever_without_cuda_names_itself(lever, device):
    reason = gpu.lever_off(Config(device=device, gpu={lever: True}), lever)
    assert reason == f"gpu.{lever} needs a CUDA GPU; running without it"


@pytest.mark.parametrize("kind", ["wan", "animatediff"])
def test_fp8_is_svds_lever_alone(kind):
    config = load_config("tiny", overrides=[f"animator.kind={kind}", "gpu.fp8_animator=true"])
    assert gpu.lever_off(config, "fp8_animator") is None


@pytest.fixture
def fake_cuda(monkeypatch):
    """torch sees a CUDA GPU (its capability settable); torchao is importable unless told otherwise."""
    import importlib.util

    capability = {"value": (9, 0)}
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: capability["value"])
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Fake GPU")
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "torchao" else find_spec(name, *a))
    return capability


def test_fp8_without_torchao_names_the_extra(fake_cuda, monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    reason = gpu.lever_off(Config(gpu={"fp8_animator": True}), "fp8_animator")
    assert reason is not None and "pip install 'animagent[fp8]'" in reason


def test_fp8_on_a_gpu_without_fp8_matmuls(fake_cuda):
    config = Config(gpu={"fp8_animator": True})
    fake_cuda["value"] = (8, 0)
    reason = gpu.lever_off(config, "fp8_animator")
    assert reason is not None and "Fake GPU is 8.0" in reason and "8.9" in reason
    fake_cuda["value"] = (8, 9)
    assert gpu.lever_off(config, "fp8_animator") is None
    assert gpu.lever_off(Config(gpu={"graph_painter": True}), "graph_painter") is None


def test_doctor_names_a_lever_that_cannot_run(tmp_path):
    from animagent.cli import app

    result = CliRunner().invoke(app, ["doctor", "--profile", "tiny", "--dir", str(tmp_path / "none"),
                                      "--set", "gpu.graph_painter=true", "--set", "gpu.fp8_animator=true"])
    output = " ".join(result.output.split())
    assert "gpu.graph_painter needs a CUDA GPU" in output and "gpu.fp8_animator needs a CUDA GPU" in output


# --- graph_key ------------------------------------------------------------------------------------------------


def _unet_call(batch: int, masks: list[torch.Tensor], seed: int, t: float) -> tuple[tuple, dict]:
    """The arguments the SDXL pipelines give the UNet, with random values."""
    from animagent.backends.sdxl_attention import RegionMasks

    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 4, 8, 8, generator=g), torch.tensor(t)), {
        "encoder_hidden_states": torch.randn(batch, 77, 32, generator=g), "timestep_cond": None,
        "cross_attention_kwargs": {"ip_adapter_masks": RegionMasks(masks)},
        "added_cond_kwargs": {"text_embeds": torch.randn(batch, 32, generator=g), "time_ids": torch.randn(batch, 6),
                              "image_embeds": [torch.randn(batch, 2, 1, 16, generator=g)]},
        "return_dict": False,
    }


def _masks(*boxes: tuple[int, int]) -> list[torch.Tensor]:
    mask = torch.zeros(1, len(boxes), 64, 64)
    for i, (x0, x1) in enumerate(boxes):
        mask[0, i, :, x0:x1] = 1
    return [mask]


def test_graph_key_ignores_tensor_values():
    first, _, _ = gpu.graph_key(*_unet_call(2, _masks((0, 32), (32, 64)), seed=0, t=999.0), state=("0.6",))
    other, leaves, _ = gpu.graph_key(*_unet_call(2, _masks((10, 20), (0, 64)), seed=1, t=15.0), state=("0.6",))
    assert first == other
    assert sum(isinstance(leaf, torch.Tensor) for leaf in leaves) == 7  # the masks are graph inputs too


def test_graph_key_tells_shapes_dtypes_and_state_apart():
    key, _, _ = gpu.graph_key(*_unet_call(2, _masks((0, 32)), seed=0, t=1.0), state=())
    assert key != gpu.graph_key(*_unet_call(8, _masks((0, 32)), seed=0, t=1.0), state=())[0]  # more candidates
    assert key != gpu.graph_key(*_unet_call(2, _masks((0, 32), (32, 64)), seed=0, t=1.0), state=())[0]  # references
    assert key != gpu.graph_key(*_unet_call(2, _masks((0, 32)), seed=0, t=1.0), state=("0.3",))[0]  # adapter scales
    args, kwargs = _unet_call(2, _masks((0, 32)), seed=0, t=1.0)
    assert key != gpu.graph_key((args[0].half(), args[1]), kwargs, state=())[0]
    assert key != gpu.graph_key(args, {**kwargs, "return_dict": True}, state=())[0]


def test_graph_key_refuses_an_object_it_would_key_by_identity():
    class Opaque:
        pass

    with pytest.raises(TypeError, match="Opaque argument; register its type as a pytree node"):
        gpu.graph_key((torch.zeros(1),), {"extra": Opaque()}, state=())


# --- the backends on CPU: one log line, then the same work -----------------------------------------------------


def _painter_config(root, **gpu_levers: bool) -> Config:
    return Config(device="cpu", dtype="float32", weights={"flavor": "tiny", "root": str(root)},
                  painter={"width": 64, "height": 64, "steps": 2}, gpu=gpu_levers)


@pytest.fixture(scope="module")
def painter_root(tiny_model):
    for name in ("sdxl_base", "sdxl_vae_fp16_fix", "ip_adapter_sdxl_vit_h"):
        tiny_model(name)
    return tiny_model.root


def _draw(painter, boxes: tuple[Box, Box] = (LEFT, RIGHT)) -> list[Image.Image]:
    ref = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8))
    refs = [Reference(image=f"{i}.png", scale=0.6, box=box, layers="all") for i, box in enumerate(boxes)]
    return painter.draw("a girl in the forest", refs, [ref, ref], 64, 64, seeds=[1, 2])


def test_graph_painter_on_cpu_logs_once_and_paints_the_same(painter_root, caplog):
    from animagent.backends.painter_sdxl import SDXLPainter

    plain = SDXLPainter(_painter_config(painter_root), painter_root)
    expected = _draw(plain)
    plain.close()
    with caplog.at_level(logging.INFO):
        painter = SDXLPainter(_painter_config(painter_root, graph_painter=True), painter_root)
        images = _draw(painter)
        painter.sleep()
        painter.wake()
    painter.close()
    records = _lever_records(caplog, "graph_painter")
    assert [r.getMessage() for r in records] == ["gpu.graph_painter needs a CUDA GPU; running without it"]
    assert records[0].levelno == logging.WARNING
    assert [np.asarray(i).tobytes() for i in images] == [np.asarray(i).tobytes() for i in expected]


def test_fp8_animator_on_cpu_logs_once(tiny_model, caplog):
    from animagent.backends.animator_svd import SVDAnimator

    tiny_model("svd_xt")
    config = Config(device="cpu", dtype="float32", weights={"flavor": "tiny", "root": str(tiny_model.root)},
                    animator={"width": 64, "height": 64, "frames": 2, "steps": 1, "decode_chunk_size": 2},
                    gpu={"fp8_animator": True})
    with caplog.at_level(logging.INFO):
        animator = SVDAnimator(config, tiny_model.root)
        frames = animator.animate(Image.new("RGB", (64, 64), "gray"), "", "moderate", 1.0, seed=1)
    animator.close()
    assert [r.getMessage() for r in _lever_records(caplog, "fp8_animator")] == [
        "gpu.fp8_animator needs a CUDA GPU; running without it"]
    assert len(frames) == 2


# --- opt-in: the graphs on a GPU -------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(os.environ.get("ANIMAGENT_GPU_TESTS") != "1", reason="opt-in: set ANIMAGENT_GPU_TESTS=1")
def test_graph_painter_on_cuda_replays_the_eager_images(painter_root):
    """Two draws with other masks replay the graph captured by the first (no new capture); the images are eager's
    up to fp16 noise; parking drops the graphs and the next draw captures again."""
    from animagent.backends.painter_sdxl import SDXLPainter

    def config(**levers: bool) -> Config:
        return _painter_config(painter_root, **levers).model_copy(update={"device": "cuda", "dtype": "float16"})

    eager = SDXLPainter(config(), painter_root)
    expected = [_draw(eager, boxes) for boxes in ((LEFT, RIGHT), (RIGHT, LEFT))]
    eager.close()
    painter = SDXLPainter(config(graph_painter=True), painter_root)
    assert painter._graphs is not None
    images = [_draw(painter, boxes) for boxes in ((LEFT, RIGHT), (RIGHT, LEFT))]
    assert painter._graphs.captured == 1
    for got, want in zip(images, expected):
        for a, b in zip(got, want):
            assert np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max() <= 2
    painter.sleep()
    painter.wake()
    _draw(painter)
    assert painter._graphs.captured == 2
    painter.close()


def test_fp8_enters_the_animate_step_key_only_where_it_runs(monkeypatch):
    from pathlib import Path

    from animagent import gpu
    from animagent.config import load_config
    from animagent.models import Models

    fast, default = load_config("fast"), load_config("default")
    assert fast.gpu.fp8_animator and "fp8" not in Models(fast, Path(".")).settings("animator")  # no GPU here
    monkeypatch.setattr(gpu, "lever_off", lambda config, lever: None)  # a GPU with FP8 matmuls and torchao
    assert Models(fast, Path(".")).settings("animator")["fp8"] is True
    assert "fp8" not in Models(default, Path(".")).settings("animator")  # keys of runs without FP8 unchanged


@pytest.mark.parametrize(("dtype", "granularity"), [("float16", "PerTensor"), ("bfloat16", "PerRow")])
def test_fp8_scales_per_tensor_for_fp16_and_per_row_for_bf16(monkeypatch, dtype, granularity):
    """torchao's row-wise FP8 asserts bf16 weights; the profiles' fp16 SVD stopped at its load on an H100."""
    import sys
    import types

    from animagent.backends.animator_svd import quantize_fp8

    asked = []
    fake = types.ModuleType("torchao.quantization")
    fake.PerRow, fake.PerTensor = type("PerRow", (), {}), type("PerTensor", (), {})
    fake.Float8DynamicActivationFloat8WeightConfig = lambda granularity, set_inductor_config: granularity
    fake.quantize_ = lambda module, config: asked.append(type(config).__name__)
    monkeypatch.setitem(sys.modules, "torchao", types.ModuleType("torchao"))
    monkeypatch.setitem(sys.modules, "torchao.quantization", fake)
    quantize_fp8(types.SimpleNamespace(dtype=getattr(torch, dtype)))  # a UNet, as far as the choice looks
    assert asked == [granularity]
