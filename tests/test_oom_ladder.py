"""The animator's out-of-memory ladder, driven by injected OOM errors (ANIMAGENT_FAULT) on the tiny SVD."""

from __future__ import annotations

import pytest
from PIL import Image

from animagent import faults
from animagent.config import Config
from animagent.errors import ResourceError


def _config(root, allow_degrade=False) -> Config:
    return Config(
        device="cpu", dtype="float32", weights={"flavor": "tiny", "root": str(root)},
        animator={"width": 64, "height": 64, "frames": 4, "steps": 2, "decode_chunk_size": 4},
        gpu={"allow_degrade": allow_degrade},
    )


@pytest.fixture
def animator(tiny_model, monkeypatch):
    from animagent.backends.animator_svd import SVDAnimator

    tiny_model("svd_xt")
    made = []

    def make(fault: str, allow_degrade: bool = False):
        monkeypatch.setenv("ANIMAGENT_FAULT", fault)
        faults._passes.clear()
        a = SVDAnimator(_config(tiny_model.root, allow_degrade), tiny_model.root)
        calls = {"denoise": 0}
        pipe_call = type(a._pipe).__call__

        def counting(self, *args, **kwargs):
            calls["denoise"] += 1
            return pipe_call(self, *args, **kwargs)

        monkeypatch.setattr(type(a._pipe), "__call__", counting)
        made.append(a)
        return a, calls

    yield make
    for a in made:
        a.close()


def _animate(a):

    return a.animate(Image.new("RGB", (64, 64), "orange"), "", "gentle", 1.0, 7)


def test_decode_oom_never_re_denoises(animator):
    a, calls = animator("oom@decode:1,oom@decode:2")
    frames = _animate(a)
    assert len(frames) == 4
    assert calls["denoise"] == 1
    assert a.take_ladder() == ["decode out of memory: decode_chunk_size 2", "decode out of memory: decode_chunk_size 1"]


def test_denoise_oom_walks_the_ladder_in_order(animator):
    a, calls = animator("oom@animator:1,oom@animator:2")
    assert len(_animate(a)) == 4
    assert calls["denoise"] == 1  # the injected errors strike before the pipeline runs
    assert a.take_ladder() == ["denoise out of memory: cpu offload", "denoise out of memory: forward chunking"]


def test_degrading_only_when_allowed(animator):
    a, _ = animator("oom@animator:1,oom@animator:2,oom@animator:3")
    with pytest.raises(ResourceError, match="allow_degrade"):
        _animate(a)
    b, _ = animator("oom@animator:1,oom@animator:2,oom@animator:3", allow_degrade=True)
    assert len(_animate(b)) == 2
    assert b.take_ladder()[-1] == "denoise out of memory: half the frames"


def test_other_errors_are_not_swallowed(animator, monkeypatch):
    a, _ = animator("")
    monkeypatch.setattr(type(a._pipe), "decode_latents", lambda *args: (_ for _ in ()).throw(ValueError("bug")))
    with pytest.raises(ValueError, match="bug"):
        _animate(a)
    assert a.take_ladder() == []


@pytest.fixture
def painter(tiny_model, monkeypatch):
    from animagent.backends.painter_sdxl import SDXLPainter

    for name in ("sdxl_base", "sdxl_vae_fp16_fix"):
        tiny_model(name)
    made = []

    def make(fault: str):
        monkeypatch.setenv("ANIMAGENT_FAULT", fault)
        faults._passes.clear()
        config = Config(device="cpu", dtype="float32", weights={"flavor": "tiny", "root": str(tiny_model.root)},
                        painter={"width": 64, "height": 64, "steps": 2})
        p = SDXLPainter(config, tiny_model.root)
        calls = {"denoise": 0}
        denoise = p._denoise

        def counting(*args, **kwargs):
            result = denoise(*args, **kwargs)
            calls["denoise"] += 1
            return result

        monkeypatch.setattr(p, "_denoise", counting)
        made.append(p)
        return p, calls

    yield make
    for p in made:
        p.close()


def test_painter_decode_oom_keeps_the_latents(painter):
    p, calls = painter("oom@painter_decode:1,oom@painter_decode:2")
    images = p.sketch("a fox", 64, 64, [1, 2])
    assert len(images) == 2 and images[0].size == (64, 64)
    assert calls["denoise"] == 1
    assert p.take_ladder() == ["decode out of memory: vae slicing", "decode out of memory: vae tiling"]


def test_painter_denoise_oom_falls_back_to_one_candidate_at_a_time(painter):
    p, calls = painter("oom@painter:1,oom@painter:2")
    assert len(p.sketch("a fox", 64, 64, [1, 2])) == 2
    assert calls["denoise"] == 2  # the two candidates, one call each
    assert p.take_ladder() == ["denoise out of memory: cpu offload", "denoise out of memory: one candidate at a time"]
    q, _ = painter("oom@painter:1,oom@painter:2,oom@painter:3")
    with pytest.raises(ResourceError, match="lowvram"):
        q.sketch("a fox", 64, 64, [1, 2])


def test_cpu_runs_pin_one_thread_and_give_the_count_back():
    import torch

    from animagent import gpu

    gpu.restore_threads()  # backends built by earlier tests pin without a Studio to give the count back
    before = torch.get_num_threads()
    assert gpu.device(Config(device="cpu")) == "cpu" and torch.get_num_threads() == 1
    gpu.restore_threads()
    assert torch.get_num_threads() == before
