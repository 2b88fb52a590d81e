"""Any story, --set or script.json gives a documented exit code and one line — never a traceback."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from typer.testing import CliRunner

from animagent.cli import app
from animagent.config import Config

runner = CliRunner()
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            keys += _keys(field.annotation, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def _invoke(tmp_path, *args):
    result = runner.invoke(app, [*args, "--profile", "tiny", "--set", f"weights.root={tmp_path / 'none'}",
                                 "--out", str(tmp_path / "run")])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result


@FUZZ
@given(content=st.one_of(st.binary(max_size=400), st.text(max_size=400).map(lambda t: t.encode("utf-8"))))
def test_any_story_bytes(tmp_path_factory, content):
    tmp_path = tmp_path_factory.mktemp("story")
    story = tmp_path / "story.txt"
    story.write_bytes(content)
    result = _invoke(tmp_path, "run", str(story))
    # valid stories get as far as the (deliberately missing) weights
    assert result.exit_code in (2, 4), result.output


@FUZZ
@given(key=st.one_of(st.sampled_from(_keys(Config)), st.text(min_size=1, max_size=20)),
       value=st.text(max_size=20))
def test_any_set_override(tmp_path_factory, key, value):
    tmp_path = tmp_path_factory.mktemp("set")
    result = runner.invoke(app, ["run", "examples/stories/lantern.txt", "--profile", "tiny",
                                 "--set", f"{key}={value}", "--set", f"weights.root={tmp_path / 'none'}",
                                 "--out", str(tmp_path / "run")])
    assert "Traceback" not in result.output
    assert result.exit_code in (2, 4), result.output


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=15,
)


@FUZZ
@given(doc=st.one_of(json_values, st.fixed_dictionaries({"title": st.text(max_size=5), "scenes": json_values})))
def test_any_script_json(tmp_path_factory, doc):
    tmp_path = tmp_path_factory.mktemp("script")
    path = tmp_path / "script.json"
    path.write_text(json.dumps(doc))
    result = _invoke(tmp_path, "run", "--script", str(path))
    assert result.exit_code == 2, result.output
