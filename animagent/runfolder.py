"""The run folder: paths, atomic writes, the manifest of finished steps with their keys, and the writer lock.

A run is a folder. Every output is written to a temp file in the same folder, fsynced and renamed into
place, and only then recorded in `manifest.json` (itself replaced atomically). A step is finished when the
manifest holds its key and every listed output still has its recorded sha256; anything else is redone.
A step key hashes everything that can change its outputs: the step name, its config fields, the hashes of
its inputs, the model ids and revisions, and the seed. Every path is confined to the run folder.
This module owns the folder's invariants; it knows nothing about what stages compute.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from animagent import faults, gpu
from animagent.errors import InputError, ResourceError, RunLockedError

A = TypeVar("A", bound=BaseModel)
# mkstemp creates 0600 files; published outputs get the mode a plain open() would give them.
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK
MANIFEST = "manifest.json"
LOCK = ".lock"
# Temp files carry a name no user file has: the lock deletes strays by it, and deletes nothing else.
TMP_PREFIX = ".animagent-tmp-"


class StepRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    outputs: dict[str, str]  # relative path -> sha256
    seconds: float
    peak_memory_bytes: int | None = None
    notes: list[str] = []  # recovery steps taken (the OOM ladder), in order


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: dict[str, StepRecord] = {}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def step_key(**parts: Any) -> str:
    """A stable hash of JSON-able parts (pydantic models are dumped in JSON mode)."""

    def plain(value: Any) -> Any:
        if isinstance(value, BaseModel):
            return value.model_dump(mode="json")
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        return value

    blob = json.dumps(plain(parts), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def derive_seed(seed: int, *parts: str, take: int = 0) -> int:
    """Per-item seed from (run seed, ids[, take]): adding or editing one shot changes no other shot's seed."""
    blob = ":".join([str(seed), *parts, *([f"take{take}"] if take else [])]).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "big") & 0x7FFFFFFF


class RunFolder:
    def __init__(self, root: Path):
        self.root = root.resolve()
        self.manifest = self._read_manifest()

    # --- paths -------------------------------------------------------------------------------------------

    def path(self, rel: str) -> Path:
        """Absolute path of `rel`, refused when it (or a symlink on the way) leads outside the run folder."""
        target = (self.root / rel).resolve()
        if target != self.root and self.root not in target.parents:
            raise InputError(f"refusing to touch {rel!r}: it resolves outside the run folder {self.root}")
        return target

    def exists(self, rel: str) -> bool:
        return self.path(rel).is_file()

    # --- atomic writes -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def writing(self, rel: str) -> Iterator[Path]:
        """Yield a temp path next to `rel`; on success fsync it and rename it over `rel`."""
        final = self.path(rel)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=final.suffix, dir=final.parent)
            os.close(fd)
        except OSError as exc:
            raise _io_error(exc, final) from exc
        tmp = Path(tmp_name)
        try:
            yield tmp
            faults.check("write")
            with tmp.open("rb+") as fh:
                os.fsync(fh.fileno())
            os.chmod(tmp, _FILE_MODE)
            os.replace(tmp, final)
            _fsync_dir(final.parent)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise _io_error(exc, final) from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def write_bytes(self, rel: str, data: bytes) -> None:
        with self.writing(rel) as tmp:
            tmp.write_bytes(data)

    def write_text(self, rel: str, text: str) -> None:
        self.write_bytes(rel, text.encode("utf-8"))

    def write_model(self, rel: str, model: BaseModel) -> None:
        self.write_text(rel, model.model_dump_json(indent=2, by_alias=True) + "\n")

    def read_model(self, rel: str, kind: type[A]) -> A:
        try:
            return kind.model_validate_json(self.path(rel).read_text(encoding="utf-8"))
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise InputError(f"{self.path(rel)} is not a valid {kind.__name__}: {where}: {err['msg']}") from None

    def write_image(self, rel: str, image: Any) -> None:
        with self.writing(rel) as tmp:
            image.save(tmp, format="PNG")

    def read_image(self, rel: str) -> Any:
        from PIL import Image

        with Image.open(self.path(rel)) as img:
            return img.convert("RGB")

    # --- steps -------------------------------------------------------------------------------------------

    def done(self, step: str, key: str) -> bool:
        """True when `step` finished with this key and all its outputs still hash as recorded."""
        record = self.manifest.steps.get(step)
        if record is None or record.key != key:
            return False
        return all(self.exists(rel) and sha256_file(self.path(rel)) == sha for rel, sha in record.outputs.items())

    def record(self, step: str, key: str, outputs: list[str], seconds: float, notes: list[str] = ()) -> None:
        """Mark `step` finished: its outputs' hashes, seconds and the GPU memory peak since the last record."""
        hashes = {rel: sha256_file(self.path(rel)) for rel in outputs}
        self.manifest.steps[step] = StepRecord(key=key, outputs=hashes, seconds=round(seconds, 3),
                                               peak_memory_bytes=gpu.peak_memory_bytes(), notes=list(notes))
        gpu.reset_peak_memory()
        self.write_text(MANIFEST, self.manifest.model_dump_json(indent=2) + "\n")
        faults.check("record")

    def sha(self, rel: str) -> str:
        return sha256_file(self.path(rel))

    def _read_manifest(self) -> Manifest:
        path = self.root / MANIFEST
        if not path.is_file():
            return Manifest()
        try:
            return Manifest.model_validate_json(path.read_text(encoding="utf-8"))
        except ValidationError:
            # A manifest we cannot read proves nothing finished: every step is redone and re-recorded.
            return Manifest()

    # --- lock --------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """One writer per run folder; a lock left by a dead process on this host is taken over."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / LOCK
        mine = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()})
        while True:
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _read_lock(path)
                if holder is not None and _alive(holder):
                    raise RunLockedError(
                        f"run folder {self.root} is in use by pid {holder['pid']} on {holder['host']}; "
                        "wait for it to finish or stop it"
                    ) from None
                path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(mine)
            break
        for stray in self.stray_temp_files():  # left by a process killed mid-write; never a finished output
            stray.unlink(missing_ok=True)
        try:
            yield
        finally:
            path.unlink(missing_ok=True)

    def lock_holder(self) -> dict[str, Any] | None:
        """The live process holding the writer lock ({"pid", "host", "started"}), or None when it is free."""
        holder = _read_lock(self.root / LOCK)
        return holder if holder is not None and _alive(holder) else None

    def stray_temp_files(self) -> list[Path]:
        """This run's temp files under the run folder (symlinked folders are not followed: never another's)."""
        return sorted(p for p in self.root.rglob(f"{TMP_PREFIX}*") if p.is_file() and not p.is_symlink())


def _read_lock(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _alive(holder: dict[str, Any]) -> bool:
    if holder.get("host") != socket.gethostname():
        return True  # another host's process cannot be checked from here: treat its lock as live
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _io_error(exc: OSError, path: Path) -> ResourceError:
    return ResourceError(f"could not write {path}: {exc.strerror or exc} (free space or fix the folder, then resume)")
