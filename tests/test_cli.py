"""CLI: documented exit codes and one-line errors (never a traceback) for bad input."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from animagent.cli import app

runner = CliRunner()
STORY = "examples/stories/lantern.txt"


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output
    return result


@pytest.fixture
def empty_weights(tmp_path):
    return str(tmp_path / "no-weights")


def test_missing_story_file(tmp_path):
    result = invoke("run", str(tmp_path / "nope.txt"), "--profile", "tiny", "--out", str(tmp_path / "r"))
    assert result.exit_code == 2 and "story file not found" in result.output


@pytest.mark.parametrize("content, needle", [(b"", "empty"), (b"\x00\x01\x02binary", "not UTF-8|binary"),
                                             (b"a" * 100_001, "100000")])
def test_bad_story_content(tmp_path, content, needle):
    story = tmp_path / "story.txt"
    story.write_bytes(content)
    result = invoke("run", str(story), "--profile", "tiny", "--out", str(tmp_path / "r"))
    assert result.exit_code == 2
    assert any(n in result.output for n in needle.split("|"))


def test_unknown_profile(tmp_path):
    result = invoke("run", STORY, "--profile", "gigantic", "--out", str(tmp_path / "r"))
    assert result.exit_code == 2 and "unknown profile 'gigantic'" in result.output


def test_bad_set_key(tmp_path):
    result = invoke("run", STORY, "--profile", "tiny", "--set", "painter.colour=red", "--out", str(tmp_path / "r"))
    assert result.exit_code == 2 and "painter.colour" in result.output


def test_missing_weights_exit_4_names_model_and_fix(tmp_path, empty_weights):
    result = invoke("run", STORY, "--profile", "tiny", "--set", f"weights.root={empty_weights}",
                    "--out", str(tmp_path / "r"))
    assert result.exit_code == 4
    assert "qwen2_5_vl_7b" in result.output and "animagent weights make-tiny" in result.output


def test_doctor_lists_present_and_missing(tiny_all, empty_weights):
    ok = invoke("doctor", "--profile", "tiny", "--dir", str(tiny_all))
    assert ok.exit_code == 0 and ok.output.count("present") == 8
    bad = invoke("doctor", "--profile", "tiny", "--dir", empty_weights)
    assert bad.exit_code == 4 and bad.output.count("missing") == 8 and "make-tiny" in bad.output


def test_locked_run_exit_6(tmp_path, tiny_all):
    out = tmp_path / "r"
    out.mkdir()
    # a live holder: this test process itself
    (out / ".lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": 0}))
    result = invoke("run", STORY, "--profile", "tiny", "--set", f"weights.root={tiny_all}", "--out", str(out))
    assert result.exit_code == 6 and "in use" in result.output


def test_resume_of_a_non_run_folder(tmp_path):
    result = invoke("resume", str(tmp_path))
    assert result.exit_code == 2 and "not a run folder" in result.output


def test_import_animagent_does_not_import_torch():
    code = "import sys, animagent; print('torch' in sys.modules, 'diffusers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False False"


def test_entry_point_prints_one_line_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "animagent.cli", "run", str(tmp_path / "missing.txt"), "--profile", "tiny"],
        capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_script_with_more_characters_than_the_director_can_see(tmp_path, tiny_all):
    data = json.loads(open("tests/data/two_shots.json").read())
    extra = [{"id": f"x{i}", "name": f"X{i}", "appearance": "a grey cat"} for i in range(6)]
    data["characters"] += extra
    box = {"x0": 0.1, "y0": 0.1, "x1": 0.2, "y1": 0.2}
    data["scenes"][0]["shots"][1]["characters"] += [{"character": c["id"], "box": box} for c in extra]
    path = tmp_path / "crowd.json"
    path.write_text(json.dumps(data))
    result = invoke("run", "--script", str(path), "--profile", "tiny", "--set", f"weights.root={tiny_all}",
                    "--out", str(tmp_path / "r"))
    assert result.exit_code == 2 and "s01_k2 places 8 characters" in result.output


def test_doctor_names_the_compiler_the_default_profile_needs(empty_weights):
    """default compiles the animator's blocks, which needs triton: this machine's CPU torch has none."""
    result = invoke("doctor", "--profile", "default", "--dir", empty_weights)
    assert result.exit_code == 4 and "--set gpu.compile_animator=false" in result.output.replace("\n", " ")
