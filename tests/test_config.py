"""Config: profiles, --set overrides and their errors."""

import pytest

from animagent.config import load_config, profile_names
from animagent.errors import InputError


def test_profiles_load_and_validate():
    assert {"tiny", "default", "lowvram", "fast"} <= set(profile_names())
    for name in profile_names():
        assert load_config(name).profile == name
    assert load_config("tiny").weights.flavor == "tiny"
    assert load_config("default").painter.width == 1024
    assert load_config("default").animator.frames == 25


def test_set_overrides_types_and_nesting():
    cfg = load_config("tiny", overrides=["painter.steps=7", "director.temperature=0.5", "seed=9"])
    assert cfg.painter.steps == 7 and cfg.director.temperature == 0.5 and cfg.seed == 9


@pytest.mark.parametrize(
    "override, needle",
    [
        ("painter.stepz=3", "unknown key 'painter.stepz'"),
        ("painter=3", "is a section"),
        ("novalue", "expects key=value"),
        ("painter.steps=abc", "painter.steps"),
        ("painter.width=65", "multiple of 8"),
        ("limits.min_shot_seconds=9", "min_shot_seconds"),
    ],
)
def test_bad_overrides_raise_input_error(override, needle):
    with pytest.raises(InputError, match=needle):
        load_config("tiny", overrides=[override])


def test_unknown_profile_names_choices():
    with pytest.raises(InputError, match="unknown profile 'huge'.*tiny"):
        load_config("huge")


def test_config_file_merges(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("painter:\n  steps: 11\n")
    assert load_config("tiny", config_file=path).painter.steps == 11
    path.write_text("- not a mapping\n")
    with pytest.raises(InputError, match="mapping"):
        load_config("tiny", config_file=path)


def test_director_key_ignores_the_transport():
    a = load_config("default")
    b = load_config("default", overrides=["director.base_url=http://10.0.0.2:9000/v1", "director.api_key=k",
                                          "director.timeout_s=5", "director.sleep_mode=true"])
    c = load_config("default", overrides=["director.temperature=0.1"])
    assert a.director_key() == b.director_key() != c.director_key()
    assert "api_key" not in a.director_key()


def test_every_config_field_is_described():
    """The README says every field is documented: the schema is where (`--help`-style descriptions)."""
    from pydantic import BaseModel

    from animagent.config import Config

    def undocumented(model: type[BaseModel], prefix: str = "") -> list[str]:
        missing = []
        for name, field in model.model_fields.items():
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                missing += undocumented(field.annotation, f"{prefix}{name}.")
            elif not field.description:
                missing.append(prefix + name)
        return missing

    assert undocumented(Config) == []
