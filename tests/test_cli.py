"""CLI: documented exit codes and one-line errors (never a traceback) for bad input."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

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
    from animagent.config import load_config
    from animagent.weights import required_models

    count = len(required_models(load_config("tiny")))
    ok = invoke("doctor", "--profile", "tiny", "--dir", str(tiny_all))
    assert ok.exit_code == 0 and ok.output.count("present") == count
    bad = invoke("doctor", "--profile", "tiny", "--dir", empty_weights)
    assert bad.exit_code == 4 and bad.output.count("missing") == count and "make-tiny" in bad.output


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


# --- what a newcomer and an adversary meet (issue 20) ---------------------------------------------------------


def _tree(folder):
    return sorted((str(p.relative_to(folder)), p.read_bytes() if p.is_file() else None) for p in folder.rglob("*"))


@pytest.mark.parametrize("own", [["film.mp4", "report.html", ".tmp-draft.txt"], ["notes/.tmp-1", "photo.png"]])
def test_out_holding_the_users_files_is_refused_and_untouched(tmp_path, tiny_all, own):
    out = tmp_path / "mine"
    for rel in own:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(b"the user's own bytes")
    before = _tree(out)
    result = invoke("run", STORY, "--profile", "tiny", "--set", f"weights.root={tiny_all}", "--out", str(out))
    assert result.exit_code == 2 and "not a run's" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert _tree(out) == before


def test_out_naming_a_file_is_exit_2(tmp_path, tiny_all):
    target = tmp_path / "film.mp4"
    target.write_bytes(b"x")
    result = invoke("run", STORY, "--profile", "tiny", "--set", f"weights.root={tiny_all}", "--out", str(target))
    assert result.exit_code == 2 and "is a file" in result.output and str(target) in result.output.replace("\n", "")
    assert target.read_bytes() == b"x"


def test_a_binary_config_file_is_one_line_exit_2(tmp_path):
    config = tmp_path / "my.yaml"
    config.write_bytes(bytes(range(256)) * 40)
    result = invoke("run", STORY, "--profile", "tiny", "--config", str(config), "--out", str(tmp_path / "r"))
    assert result.exit_code == 2 and "my.yaml" in result.output and "not UTF-8" in result.output
    assert len(result.output) < 300 and not (tmp_path / "r").exists()


def test_a_story_path_that_is_a_directory(tmp_path):
    result = invoke("run", str(tmp_path), "--profile", "tiny", "--out", str(tmp_path / "r"))
    assert result.exit_code == 2 and "is a directory" in result.output


def test_missing_weights_leave_no_run_folder(tmp_path, empty_weights):
    result = invoke("run", STORY, "--profile", "tiny", "--set", f"weights.root={empty_weights}",
                    "--out", str(tmp_path / "r"))
    assert result.exit_code == 4 and not (tmp_path / "r").exists()


def test_a_user_script_is_held_to_the_limits(tmp_path, tiny_all):
    data = json.loads(open("tests/data/two_shots.json").read())
    shot = data["scenes"][0]["shots"][0]
    data["scenes"][0]["shots"] = [{**shot, "id": f"s01_k{i}"} for i in range(1, 5001)]
    path = tmp_path / "huge.json"
    path.write_text(json.dumps(data))
    result = invoke("run", "--script", str(path), "--profile", "tiny", "--set", f"weights.root={tiny_all}",
                    "--out", str(tmp_path / "r"))
    assert result.exit_code == 2 and "5000 shots" in result.output and "max_shots_per_scene" in result.output
    assert not (tmp_path / "r").exists()


def test_the_demo_script_fits_the_tiny_profile_with_its_limits_file():
    from animagent.artifacts import Script
    from animagent.config import load_config
    from animagent.stages.plan import check_script

    script = Script.model_validate_json(open("examples/scripts/lantern.json").read())
    check_script(script, load_config("tiny", "examples/scripts/lantern.yaml").limits)
    assert 6 <= len(script.shots()) <= 8 and len(script.scenes) >= 3
    assert sum(len(s.characters) >= 2 for s in script.shots()) >= 2  # characters share shots
    with pytest.raises(Exception, match="max_scenes"):  # the file is needed: tiny's own limits refuse it
        check_script(script, load_config("tiny").limits)


def test_the_api_key_never_reaches_the_run_folder_and_resume_takes_it_from_the_environment(
        tmp_path, tiny_all, monkeypatch):
    from animagent.config import load_config
    from animagent.runs import open_run, prepare_run

    secret = "sk-do-not-write-me-0123456789"
    config = load_config("tiny", overrides=[f"director.api_key={secret}", f"weights.root={tiny_all}"])
    run = prepare_run(Path(STORY), config, tmp_path / "r")
    text = (run / "config.yaml").read_text()
    assert secret not in text and "api_key: set" in text
    assert f"root: {Path(tiny_all).resolve()}" in text  # absolute: a resume from elsewhere finds the weights
    assert open_run(run).director.api_key is None  # the director then reads $ANIMAGENT_DIRECTOR_API_KEY
    assert prepare_run(Path(STORY), config, tmp_path / "r") == run  # the same command reopens it

    def crash(self):
        raise RuntimeError(f"a bug that shows the config: {self.config!r}")

    monkeypatch.setattr("animagent.studio.Studio.run", crash)
    result = invoke("run", STORY, "--profile", "tiny", "--set", f"director.api_key={secret}",
                    "--set", f"weights.root={tiny_all}", "--out", str(tmp_path / "r"))
    assert result.exit_code == 1 and secret not in result.output
    crash_log = (run / "logs" / "crash.log").read_text()
    assert "a bug that shows the config" in crash_log and secret not in crash_log


def test_a_crash_outside_a_run_folder_goes_to_a_private_file(monkeypatch):
    def crash(*args, **kwargs):
        raise RuntimeError("a bug before any run folder")

    monkeypatch.setattr("animagent.config.load_config", crash)
    result = invoke("run", STORY, "--profile", "tiny")
    assert result.exit_code == 1
    path = Path(result.output.split("traceback in ")[1].split(")")[0].replace("\n", ""))
    assert path.name.startswith("animagent-crash-") and (path.stat().st_mode & 0o777) == 0o600
    assert "a bug before any run folder" in path.read_text()
    path.unlink()


@pytest.mark.parametrize("command", [["eval"], ["resume"], ["rerender", "--shot", "s01_k1"], ["verify"]])
def test_commands_on_a_path_that_is_no_run_create_nothing(tmp_path, command):
    missing, empty = tmp_path / "missing", tmp_path / "empty"
    empty.mkdir()
    for path in (missing, empty):
        result = invoke(command[0], str(path), *command[1:])
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert not missing.exists() and list(empty.iterdir()) == []


def test_resume_of_a_folder_whose_story_was_damaged_is_one_line(tmp_path, tiny_all):
    from animagent.config import load_config
    from animagent.runs import prepare_run

    run = prepare_run(Path(STORY), load_config("tiny", overrides=[f"weights.root={tiny_all}"]), tmp_path / "r")
    (run / "story.txt").write_bytes(b"\xff\xfe not text")
    result = invoke("resume", str(run))
    assert result.exit_code == 2 and "not UTF-8" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("manifest, needle", [(None, "is missing"), ("", "not a manifest"),
                                              ("garbage {", "not a manifest"), ('{"steps": {}}', "records no step")])
def test_verify_with_nothing_to_verify_is_exit_2(tmp_path, tiny_all, manifest, needle):
    from animagent.config import load_config
    from animagent.runs import prepare_run

    run = prepare_run(Path(STORY), load_config("tiny", overrides=[f"weights.root={tiny_all}"]), tmp_path / "r")
    if manifest is not None:
        (run / "manifest.json").write_text(manifest)
    result = invoke("verify", str(run))
    assert result.exit_code == 2 and "nothing to verify" in result.output and needle in result.output


def test_weights_pull_for_tiny_says_tiny_weights_are_made(tmp_path):
    result = invoke("weights", "pull", "--profile", "tiny", "--dir", str(tmp_path / "w"))
    assert result.exit_code == 2 and "make-tiny" in result.output and "not pulled" in result.output
    assert not (tmp_path / "w").exists()


def test_log_records_are_one_line_and_progress_without_a_terminal_is_a_line_per_item(capsys):
    import logging

    from animagent import cli

    cli._setup_logging(None)
    logging.getLogger("animagent.stages.review").warning("review s01_k1: no candidate reached identity 0.90 after "
                                                         "1 repair round(s);\nthe best is kept " + "x" * 200)
    with cli._StageLines() as progress:
        for done in (0, 1, 1, 2):
            progress("draw", done, 2)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("warning: review s01_k1") and lines[0].endswith("x" * 200)
    assert lines[1] == "loading"
    assert [line.split()[:2] for line in lines[2:]] == [["draw", "0/2"], ["draw", "1/2"], ["draw", "2/2"]]
    assert lines[-1].split()[2] == "done" and lines[-1].endswith(" s")
