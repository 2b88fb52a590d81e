"""The cast library: characters kept across stories, so a series keeps its characters.

A library entry is a name, optional description and one or more reference images. When a story's character has
the same name (compared as slugs: "Mira", "mira" and "MIRA!" match), the cast stage copies the entry's images
into the run instead of drawing candidates: the first image becomes the character's sheet (its IP-Adapter
reference), every image goes into the run's memory, and a description replaces the script's appearance text in
prompts. An entry also keeps the voice the character was first cast in, so it sounds the same in every story.
The entry's image hashes enter the cast step's key, so editing an entry redoes that character (and what
depends on it) on resume; removing it makes the story draw the character again.

Where it lives: `cast.library` in the config, else `$ANIMAGENT_HOME/cast`, else `~/.local/share/animagent/cast`.
Layout: `<library>/<slug>/entry.json` (a LibraryEntry) and `<library>/<slug>/<n>.png`, images converted to RGB
PNG when added. Writes go through RunFolder's atomic writes under its lock, so a crash never leaves half an
entry and two writers never interleave. This module owns the layout and add/list/remove/find; the CLI
(`animagent cast add|list|remove`) presents them and the cast stage uses `find`.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from pydantic import Field

from animagent.artifacts import Artifact, Slug, slugify
from animagent.errors import InputError
from animagent.runfolder import RunFolder, sha256_file

log = logging.getLogger(__name__)

ENTRY = "entry.json"
MAX_IMAGES = 8  # the images of one entry all go into memory and are shown to the director with the keyframe


class LibraryEntry(Artifact):
    id: Slug
    name: str = Field(min_length=1, max_length=80)
    description: str | None = Field(None, max_length=600)
    images: tuple[str, ...] = Field(min_length=1, max_length=MAX_IMAGES, description="file names in the entry folder")
    sha256: tuple[str, ...] = Field(min_length=1, max_length=MAX_IMAGES)
    voice: str | None = Field(None, max_length=40, description="the voice id it speaks in, kept across stories")


def library_root(explicit: str | Path | None = None) -> Path:
    """`explicit` (cast.library), else $ANIMAGENT_HOME/cast, else ~/.local/share/animagent/cast."""
    if explicit is not None:
        return Path(explicit).expanduser().resolve()
    home = os.environ.get("ANIMAGENT_HOME")
    if home:
        return (Path(home).expanduser() / "cast").resolve()
    return (Path.home() / ".local" / "share" / "animagent" / "cast").resolve()


def entry_id(name: str) -> str:
    return slugify(name, fallback="")


def add(name: str, images: list[Path], description: str | None = None, root: Path | None = None) -> LibraryEntry:
    """Add (or replace) the entry for `name` with `images` (any format PIL reads) and an optional description."""
    from PIL import Image, UnidentifiedImageError

    cid = entry_id(name)
    if not cid:
        raise InputError(f"cast name '{name}' has no letters or digits to name it by")
    if not 1 <= len(images) <= MAX_IMAGES:
        raise InputError(f"give 1 to {MAX_IMAGES} images for '{name}', got {len(images)}")
    converted = []
    for path in images:
        if not path.is_file():
            raise InputError(f"image not found: {path}")
        try:
            with Image.open(path) as image:
                converted.append(image.convert("RGB"))
        except (UnidentifiedImageError, OSError) as exc:
            raise InputError(f"{path} is not an image PIL can read: {exc}") from None
    library = RunFolder(library_root(root))
    folder = library.path(cid)
    with library.lock():
        if folder.exists():
            shutil.rmtree(folder)  # a replaced entry keeps no stale image
        files = [f"{n}.png" for n in range(len(converted))]
        for file, image in zip(files, converted):
            library.write_image(f"{cid}/{file}", image)
        entry = LibraryEntry(
            id=cid, name=name.strip(), description=description.strip() if description else None, images=tuple(files),
            sha256=tuple(library.sha(f"{cid}/{file}") for file in files),
        )
        library.write_model(f"{cid}/{ENTRY}", entry)  # written last: a folder with entry.json is a whole entry
    log.info("cast library: %s (%d images) in %s", entry.name, len(files), folder)
    return entry


def entries(root: Path | None = None) -> list[LibraryEntry]:
    """Every complete entry, by id."""
    folder = library_root(root)
    if not folder.is_dir():
        return []
    library = RunFolder(folder)
    return [library.read_model(f"{p.name}/{ENTRY}", LibraryEntry) for p in sorted(folder.iterdir())
            if (p / ENTRY).is_file()]


def find(name: str, root: Path | None = None) -> LibraryEntry | None:
    """The entry whose id is the slug of `name`, or None."""
    cid = entry_id(name)
    library = RunFolder(library_root(root))
    if not cid or not library.exists(f"{cid}/{ENTRY}"):
        return None
    return library.read_model(f"{cid}/{ENTRY}", LibraryEntry)


def image_paths(entry: LibraryEntry, root: Path | None = None) -> list[Path]:
    """The entry's images, checked against their recorded hashes (an edited file would silently change a run)."""
    folder = library_root(root) / entry.id
    paths = [folder / file for file in entry.images]
    for path, sha in zip(paths, entry.sha256):
        if not path.is_file() or sha256_file(path) != sha:
            raise InputError(f"cast library image {path} is missing or changed; re-add it with `animagent cast add`")
    return paths


def set_voice(entry: LibraryEntry, voice: str, root: Path | None = None) -> LibraryEntry:
    """Record the voice `entry`'s character speaks in (the speak stage does, the first time it casts it)."""
    library = RunFolder(library_root(root))
    updated = entry.model_copy(update={"voice": voice})
    with library.lock():
        library.write_model(f"{entry.id}/{ENTRY}", updated)
    log.info("cast library: %s speaks in %s", entry.name, voice)
    return updated


def remove(name: str, root: Path | None = None) -> LibraryEntry:
    entry = find(name, root)
    if entry is None:
        known = ", ".join(e.name for e in entries(root)) or "none"
        raise InputError(f"no cast library entry named '{name}' (entries: {known})")
    library = RunFolder(library_root(root))
    with library.lock():
        shutil.rmtree(library.path(entry.id))
    return entry
