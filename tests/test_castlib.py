"""The cast library: add, list, find, remove; where it lives; image hashes guard the entries."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from animagent import castlib
from animagent.errors import InputError


def _image(path, colour) -> object:
    Image.new("RGB", (24, 32), colour).save(path)
    return path


def test_the_library_lives_in_animagent_home_else_in_the_users_data_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("ANIMAGENT_HOME", str(tmp_path / "home"))
    assert castlib.library_root() == tmp_path / "home" / "cast"
    assert castlib.library_root(tmp_path / "elsewhere") == tmp_path / "elsewhere"
    monkeypatch.delenv("ANIMAGENT_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert castlib.library_root() == tmp_path / "user" / ".local" / "share" / "animagent" / "cast"


def test_add_list_find_remove(tmp_path):
    lib = tmp_path / "lib"
    red = _image(tmp_path / "red.jpg", (200, 30, 30))
    entry = castlib.add("Mira", [red, _image(tmp_path / "side.png", (180, 40, 40))], "a small red fox", root=lib)
    assert (entry.id, entry.name, entry.description, entry.images) == ("mira", "Mira", "a small red fox",
                                                                       ("0.png", "1.png"))
    assert castlib.find("MIRA!", root=lib) == entry and castlib.find("Tobin", root=lib) is None
    castlib.add("Tobin", [red], root=lib)
    assert [e.name for e in castlib.entries(root=lib)] == ["Mira", "Tobin"]
    paths = castlib.image_paths(entry, root=lib)
    assert np.asarray(Image.open(paths[0])).tolist() == np.asarray(Image.open(red).convert("RGB")).tolist()
    assert castlib.remove("mira", root=lib) == entry
    assert [e.name for e in castlib.entries(root=lib)] == ["Tobin"] and not (lib / "mira").exists()
    with pytest.raises(InputError, match="no cast library entry named 'Mira'.*Tobin"):
        castlib.remove("Mira", root=lib)


def test_adding_a_name_again_replaces_the_entry_and_its_images(tmp_path):
    lib = tmp_path / "lib"
    castlib.add("Mira", [_image(tmp_path / f"{n}.png", (n * 40, 0, 0)) for n in range(3)], root=lib)
    entry = castlib.add("Mira", [_image(tmp_path / "new.png", (0, 0, 250))], root=lib)
    assert entry.images == ("0.png",) and sorted(p.name for p in (lib / "mira").iterdir()) == ["0.png", "entry.json"]
    assert entry.description is None


def test_a_changed_library_image_is_refused(tmp_path):
    lib = tmp_path / "lib"
    entry = castlib.add("Mira", [_image(tmp_path / "a.png", (1, 2, 3))], root=lib)
    Image.new("RGB", (24, 32), (9, 9, 9)).save(lib / "mira" / "0.png")
    with pytest.raises(InputError, match="missing or changed"):
        castlib.image_paths(entry, root=lib)


@pytest.mark.parametrize("name, images, message", [
    ("!!!", 1, "no letters or digits"), ("Mira", 0, "give 1 to 8 images"), ("Mira", 9, "give 1 to 8 images"),
])
def test_bad_additions_are_refused(tmp_path, name, images, message):
    paths = [_image(tmp_path / f"{n}.png", (n, n, n)) for n in range(images)]
    with pytest.raises(InputError, match=message):
        castlib.add(name, paths, root=tmp_path / "lib")


def test_a_file_that_is_not_an_image_is_refused(tmp_path):
    (tmp_path / "notes.png").write_text("not pixels")
    with pytest.raises(InputError, match="not an image"):
        castlib.add("Mira", [tmp_path / "notes.png"], root=tmp_path / "lib")
    with pytest.raises(InputError, match="not found"):
        castlib.add("Mira", [tmp_path / "absent.png"], root=tmp_path / "lib")
