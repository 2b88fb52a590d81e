"""Opt-in GPU layer: the tiny profile's whole film on CUDA in fp16 (ANIMAGENT_GPU_TESTS=1 on a GPU machine).

The same loading code, now on the accelerator and in half precision: catches dtype mismatches (fp16 text
encoders against an fp32 UNet), device mismatches (masks or generators on the wrong device) and the fp16 VAE
path, none of which a CPU run can show. Full-size timings live in scripts/bench_gpu.py, not here.
"""

from __future__ import annotations

import os

import pytest

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(os.environ.get("ANIMAGENT_GPU_TESTS") != "1", reason="opt-in: set ANIMAGENT_GPU_TESTS=1"),
]


def test_tiny_film_on_cuda_in_fp16(tiny_all, tmp_path):
    import torch

    from animagent import video
    from animagent.runs import make_film

    assert torch.cuda.is_available(), "ANIMAGENT_GPU_TESTS=1 needs a CUDA GPU"
    film = make_film(
        None, profile="tiny", out=tmp_path, script="tests/data/two_shots.json",
        overrides=[f"weights.root={tiny_all}", "device=cuda", "dtype=float16"],
    )
    info = video.probe(tmp_path / film.video)
    assert info.frames == film.frames and info.subtitle_streams == 1
