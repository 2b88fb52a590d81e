"""Run folder: atomic writes, step records, confinement, lock."""

import json
import os

import pytest

from animagent.errors import InputError, ResourceError, RunLockedError
from animagent.runfolder import RunFolder, derive_seed, step_key


def test_record_and_done_detect_changed_outputs(tmp_path):
    run = RunFolder(tmp_path)
    run.write_text("a/b.txt", "hello")
    run.record("step", "k1", ["a/b.txt"], 0.1)
    assert run.done("step", "k1")
    assert not run.done("step", "k2")
    assert RunFolder(tmp_path).done("step", "k1")  # persisted in manifest.json
    (tmp_path / "a/b.txt").write_text("tampered")
    assert not run.done("step", "k1")
    (tmp_path / "a/b.txt").unlink()
    assert not run.done("step", "k1")


def test_failed_write_leaves_no_file_and_no_temp(tmp_path):
    run = RunFolder(tmp_path)
    with pytest.raises(RuntimeError):
        with run.writing("x.bin") as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("boom")
    assert not (tmp_path / "x.bin").exists()
    assert run.stray_temp_files() == []


def test_enospc_becomes_resource_error(tmp_path, monkeypatch):
    run = RunFolder(tmp_path)

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(ResourceError, match="No space left"):
        run.write_text("x.txt", "data")
    assert not (tmp_path / "x.txt").exists()
    assert run.stray_temp_files() == []


def test_paths_confined_to_run_folder(tmp_path):
    run = RunFolder(tmp_path / "run")
    with pytest.raises(InputError, match="outside the run folder"):
        run.path("../escape.txt")
    (tmp_path / "run").mkdir(exist_ok=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "run" / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(InputError, match="outside the run folder"):
        run.write_text("link/file.txt", "x")
    assert not (tmp_path / "outside" / "file.txt").exists()


def test_lock_refuses_live_holder_and_takes_over_dead_one(tmp_path):
    run = RunFolder(tmp_path)
    with run.lock():
        with pytest.raises(RunLockedError):
            with RunFolder(tmp_path).lock():
                pass
    import socket

    (tmp_path / ".lock").write_text(json.dumps({"pid": 2**22 + 12345, "host": socket.gethostname(), "started": 0}))
    with run.lock():
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    assert not (tmp_path / ".lock").exists()


def test_keys_and_seeds_are_stable_and_sensitive():
    assert step_key(a=1, b=[1, 2]) == step_key(b=[1, 2], a=1)
    assert step_key(a=1) != step_key(a=2)
    assert derive_seed(0, "draw", "s01_k1") == derive_seed(0, "draw", "s01_k1")
    assert derive_seed(0, "draw", "s01_k1") != derive_seed(0, "draw", "s01_k2")
    assert derive_seed(0, "draw", "s01_k1") != derive_seed(1, "draw", "s01_k1")


def test_lock_deletes_only_this_runs_temp_files(tmp_path):
    """A stray of ours (killed mid-write) goes; a user's `.tmp-` file, or ours behind a symlink, stays."""
    from animagent.runfolder import TMP_PREFIX

    (tmp_path / "run" / "keyframes").mkdir(parents=True)
    ours = tmp_path / "run" / "keyframes" / f"{TMP_PREFIX}abc.png"
    ours.write_bytes(b"half")
    users = tmp_path / "run" / ".tmp-notes.txt"
    users.write_text("mine")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / f"{TMP_PREFIX}x.png").write_bytes(b"not this run's")
    (tmp_path / "run" / "link").symlink_to(elsewhere)
    with RunFolder(tmp_path / "run").lock():
        pass
    assert not ours.exists()
    assert users.read_text() == "mine" and (elsewhere / f"{TMP_PREFIX}x.png").exists()
