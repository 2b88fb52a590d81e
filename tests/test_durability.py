"""The run folder never loses work: kill -9 anywhere and resume, determinism, edits, disk full, safe loading."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from animagent import runs
from animagent.runfolder import RunFolder
from animagent.runs import make_film

SCRIPT = "tests/data/two_shots.json"


def _run_cli(out: Path, root: Path, *extra: str, fault: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if fault:
        env["ANIMAGENT_FAULT"] = fault
    return subprocess.run(
        [sys.executable, "-m", "animagent.cli", "run", "--script", SCRIPT, "--profile", "tiny",
         "--set", f"weights.root={root}", "--out", str(out), *extra],
        capture_output=True, text=True, env=env, timeout=300,
    )


def _outputs(run_dir: Path) -> dict[str, str]:
    steps = RunFolder(run_dir).manifest.steps
    return {rel: sha for record in steps.values() for rel, sha in record.outputs.items()}


def _inodes(run_dir: Path, rels) -> dict[str, int]:
    return {rel: (run_dir / rel).stat().st_ino for rel in rels if (run_dir / rel).exists()}


@pytest.fixture(scope="module")
def golden(tiny_all, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("golden")
    make_film(None, profile="tiny", out=out, overrides=[f"weights.root={tiny_all}"], script=SCRIPT)
    return out


def test_two_fresh_runs_are_byte_identical(golden, tiny_all, tmp_path):
    make_film(None, profile="tiny", out=tmp_path, overrides=[f"weights.root={tiny_all}"], script=SCRIPT)
    assert _outputs(tmp_path) == _outputs(golden)
    assert "film.mp4" in _outputs(golden)


def _kill_points() -> list[str]:
    # stage boundaries: after plan (1), the cast candidates (4), memory (8), the keyframes (12), the clip renders
    # (16) — and seeded random writes among a run's 75
    points = [f"kill@record:{n}" for n in (1, 4, 8, 12, 16)]
    points += [f"kill@write:{n}" for n in random.Random(1234).sample(range(2, 75), 8)]
    return points


@pytest.mark.parametrize("fault", _kill_points())
def test_kill_anywhere_then_resume_gives_the_same_film(fault, golden, tiny_all, tmp_path):
    out = tmp_path / "run"
    killed = _run_cli(out, tiny_all, fault=fault)
    assert killed.returncode == -9, killed.stderr[-500:]
    before = RunFolder(out).manifest.steps
    finished = {rel: sha for r in before.values() for rel, sha in r.outputs.items() if rel != "script.json"}
    inodes = _inodes(out, finished)

    if (out / "config.yaml").exists():
        runs.resume(out)
    else:  # killed before the folder became a run: rerunning the same command starts it
        assert _run_cli(out, tiny_all).returncode == 0

    after = _outputs(out)
    assert after == _outputs(golden)
    assert all(after[rel] == sha for rel, sha in finished.items())  # finished work kept its bytes ...
    assert _inodes(out, finished) == inodes  # ... and was not redone
    assert RunFolder(out).stray_temp_files() == []
    assert not (out / ".lock").exists()


def test_editing_one_shot_redoes_only_that_shot(golden, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(golden, run_dir)
    script = json.loads((run_dir / "script.json").read_text())
    script["scenes"][0]["shots"][1]["description"] = "the tortoise alone under a starry sky"
    (run_dir / "script.json").write_text(json.dumps(script))
    keep = [r for r in _outputs(golden) if "s01_k1" in r or r.startswith("cast/")]
    inodes = _inodes(run_dir, keep)

    runs.resume(run_dir)

    new, old = _outputs(run_dir), _outputs(golden)
    assert _inodes(run_dir, keep) == inodes
    changed = {r for r in old if new[r] != old[r]}
    assert {"keyframes/s01_k2.png", "keyframes/s01_k2.json", "clips/s01_k2.mp4", "film.mp4", "storyboard.png"} <= changed
    film_level = ("film.mp4", "storyboard.png", "scorecard.json", "report.html")
    assert all("s01_k2" in r or r in film_level for r in changed)  # nothing of the first shot


def test_rerender_one_shot_from_animate(golden, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(golden, run_dir)
    runs.rerender(run_dir, "s01_k1", "animate")
    new, old = _outputs(run_dir), _outputs(golden)
    changed = {r for r in old if new[r] != old[r]}
    assert "clips/s01_k1.mp4" in changed and "film.mp4" in changed
    assert not any(r.startswith(("keyframes/", "cast/")) or "s01_k2" in r for r in changed)
    assert json.loads((run_dir / "takes.json").read_text())["animate"] == {"s01_k1": 1}


def test_corrupt_output_is_found_by_verify_and_rebuilt_with_dependents(golden, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(golden, run_dir)
    clip = run_dir / "clips" / "s01_k2.mp4"
    clip.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])  # truncated: PyAV could not open it
    assert [(p.path, p.what) for p in runs.verify(run_dir)] == [("clips/s01_k2.mp4", "changed")]
    keep = [r for r in _outputs(golden) if r.startswith(("cast/", "keyframes/")) or "s01_k1" in r]
    inodes = _inodes(run_dir, keep)
    runs.resume(run_dir)
    assert runs.verify(run_dir) == []
    assert _outputs(run_dir) == _outputs(golden)
    assert _inodes(run_dir, keep) == inodes


def test_disk_full_exits_5_leaves_nothing_half_written_and_resumes(golden, tiny_all, tmp_path):
    out = tmp_path / "run"
    failed = _run_cli(out, tiny_all, fault="enospc@write:9")
    assert failed.returncode == 5, failed.stderr[-500:]
    assert "No space left" in failed.stderr and "Traceback" not in failed.stderr
    assert {p.what for p in runs.verify(out)} == {"not recorded"}  # unfinished, but nothing corrupt
    assert RunFolder(out).stray_temp_files() == []
    runs.resume(out)
    assert _outputs(out) == _outputs(golden) and runs.verify(out) == []


def test_a_pickle_in_a_model_folder_is_never_unpickled(tiny_all, tmp_path):
    """Loading is safetensors-only: a crafted pickle placed where a loader might look never runs."""
    import pickle

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    root = tmp_path / "weights"
    shutil.copytree(tiny_all / "tiny", root / "tiny")
    unet = root / "tiny" / "stabilityai--stable-diffusion-xl-base-1.0" / "unet"
    for name in ("diffusion_pytorch_model.bin", "diffusion_pytorch_model.fp16.bin"):
        (unet / name).write_bytes(pickle.dumps(Payload()))
    (unet / "diffusion_pytorch_model.fp16.safetensors").unlink()  # tempt the loader to fall back to the pickle

    result = _run_cli(tmp_path / "run", root)
    assert result.returncode == 4  # the registry's safetensors file is missing: refused before loading
    assert not marker.exists()


def test_sigterm_stops_like_ctrl_c_and_resume_gives_the_same_film(golden, tiny_all, tmp_path):
    """`docker stop` sends SIGTERM: exit 143, the lock released, no half-written file; resume finishes the film."""
    import signal
    import time

    out = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    argv = [sys.executable, "-m", "animagent.cli", "run", "--script", SCRIPT, "--profile", "tiny",
            "--set", f"weights.root={tiny_all}", "--out", str(out)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    while "memory" not in RunFolder(out).manifest.steps:  # cast done; draw, animate and assemble to go
        assert proc.poll() is None, proc.stderr.read()[-500:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-500:]
    assert f"terminated; continue with: animagent resume {out}" in stderr and "Traceback" not in stderr
    assert not (out / ".lock").exists() and RunFolder(out).stray_temp_files() == []
    assert "assemble" not in RunFolder(out).manifest.steps

    resumed = subprocess.run([sys.executable, "-m", "animagent.cli", "resume", str(out)], capture_output=True,
                             text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-500:]
    assert _outputs(out) == _outputs(golden)
    # no terminal: a line per shot and per finished stage, with its count and elapsed time
    lines = resumed.stderr.splitlines()
    assert any(line.split()[:3] == ["animate", "2/2", "done"] and line.endswith(" s") for line in lines), lines
    assert any(line.split()[:2] == ["animate", "1/2"] for line in lines)


def test_verify_names_each_step_a_film_needs_that_is_not_recorded(golden, tmp_path):
    from animagent.artifacts import Script
    from animagent.runs import needed_steps, open_run

    script = Script.model_validate_json((golden / "script.json").read_text())
    assert set(needed_steps(script, open_run(golden))) <= set(RunFolder(golden).manifest.steps)  # names agree
    run_dir = tmp_path / "run"
    shutil.copytree(golden, run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    del manifest["steps"]["choose/s01_k2"]
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    assert [(p.path, p.what) for p in runs.verify(run_dir)] == [("choose/s01_k2", "not recorded")]


def test_a_voice_the_model_lacks_in_script_json_is_exit_2_and_loses_nothing(golden, tmp_path):
    """An edited script.json naming a voice Kokoro-82M does not have: `resume` stops with exit 2 naming the valid
    voices, before speaking; every finished output is left as it was."""
    run_dir = tmp_path / "run"
    shutil.copytree(golden, run_dir)
    script = json.loads((run_dir / "script.json").read_text())
    script["characters"][0]["voice"] = "xx_robot"
    (run_dir / "script.json").write_text(json.dumps(script))
    files = {rel: RunFolder(run_dir).sha(rel) for rel in _outputs(run_dir) if rel != "script.json"}
    result = subprocess.run([sys.executable, "-m", "animagent.cli", "resume", str(run_dir)], capture_output=True,
                            text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert result.returncode == 2, result.stderr[-500:]
    assert "character mira the voice 'xx_robot'" in result.stderr and "af_heart" in result.stderr
    assert "Traceback" not in result.stderr
    assert {rel: RunFolder(run_dir).sha(rel) for rel in files} == files
    assert RunFolder(run_dir).stray_temp_files() == []
