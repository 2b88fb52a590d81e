"""Character memory: a FAISS index of each character's reference images, for the review's identity gate.

The index is `IndexIDMap2(IndexFlatIP)` over L2-normalised CLIP image embeddings, so an inner product is a
cosine and every vector keeps a stable id. It lives in the run folder as `memory.faiss` next to its sidecar
`memory.json` (`MemoryFile`): the embedder, and per vector id its character, image and view, the vector itself
(base64 float32, little-endian) and the sha256 of the index bytes. The sidecar is the source of truth and the
recorded output of the `memory` step; the index is a cache of it, verified by hash on load and rebuilt from the
stored vectors (and rewritten) when it is missing, changed or unreadable — FAISS files are not portable across
builds, the sidecar is. Both are written through the run folder's atomic writes.
This module owns the file format, search and the identity score; the studio decides what goes in.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field

from animagent.artifacts import Artifact, RelPath, Slug
from animagent.runfolder import RunFolder

if TYPE_CHECKING:
    import faiss

log = logging.getLogger(__name__)

INDEX, SIDECAR = "memory.faiss", "memory.json"
# sheet: a chosen cast image or a library reference; alternate: another cast candidate of the same character
View = Literal["sheet", "alternate"]


class MemoryEntry(Artifact):
    id: int = Field(ge=0)
    character: Slug
    image: RelPath
    view: View
    vector: str = Field(description="the unit embedding: base64 of float32 little-endian")


class MemoryFile(Artifact):
    embedder: str = Field(description="registry name of the image encoder of every vector")
    dim: int = Field(ge=1)
    index_sha256: str
    entries: tuple[MemoryEntry, ...] = Field(min_length=1)


@dataclass(frozen=True)
class Item:
    """What one vector stands for."""

    character: str
    image: str
    view: View


@dataclass(frozen=True)
class Hit:
    character: str
    image: str
    view: View
    score: float  # cosine


class Memory:
    def __init__(self, sidecar: MemoryFile, index: faiss.Index):
        self.sidecar = sidecar
        self._index = index
        self._entries = {e.id: e for e in sidecar.entries}

    @classmethod
    def build(cls, run: RunFolder, embedder: str, items: list[Item], vectors: np.ndarray) -> Memory:
        """Write memory.faiss and memory.json for `items` (ids 0..n-1, in order) and their embeddings."""
        unit = _unit(vectors)
        index = _index(unit)
        data = _serialize(index)
        run.write_bytes(INDEX, data)
        sidecar = MemoryFile(
            embedder=embedder,
            dim=unit.shape[1],
            index_sha256=hashlib.sha256(data).hexdigest(),
            entries=tuple(
                MemoryEntry(id=i, character=item.character, image=item.image, view=item.view,
                            vector=base64.b64encode(unit[i].astype("<f4").tobytes()).decode("ascii"))
                for i, item in enumerate(items)
            ),
        )
        run.write_model(SIDECAR, sidecar)
        return cls(sidecar, index)

    @classmethod
    def load(cls, run: RunFolder) -> Memory:
        """Read the sidecar, then the index if its bytes hash as recorded; otherwise rebuild the index from the
        sidecar's vectors and write it back."""
        import faiss

        sidecar = run.read_model(SIDECAR, MemoryFile)
        if run.exists(INDEX):
            data = run.path(INDEX).read_bytes()
            if hashlib.sha256(data).hexdigest() == sidecar.index_sha256:
                try:
                    return cls(sidecar, faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8)))
                except RuntimeError as exc:  # FAISS raises this for a file its build cannot read
                    log.warning("%s is unreadable here (%s)", INDEX, exc)
        log.warning("%s is missing, changed or unreadable; rebuilding it from %s's vectors", INDEX, SIDECAR)
        index = _index(stored_vectors(sidecar))
        data = _serialize(index)
        if hashlib.sha256(data).hexdigest() != sidecar.index_sha256:
            # Another FAISS build serialises differently: the sidecar's vectors stay the truth either way.
            log.warning("the rebuilt %s differs in bytes from the recorded one (another FAISS build)", INDEX)
        run.write_bytes(INDEX, data)
        return cls(sidecar, index)

    def search(self, vector: np.ndarray, k: int) -> list[Hit]:
        """The `k` nearest entries to one embedding, nearest first."""
        scores, ids = self._index.search(_unit(vector.reshape(1, -1)), min(k, self._index.ntotal))
        return [
            Hit(self._entries[i].character, self._entries[i].image, self._entries[i].view, float(s))
            for s, i in zip(scores[0], ids[0])
        ]

    def identity(self, vector: np.ndarray, character: str) -> tuple[float, str]:
        """(best cosine of `vector` to any entry of `character`, the character of the nearest entry overall).

        The whole memory is searched, so the nearest character also shows when a crop looks more like someone
        else (two characters swapped) than like the one it should be."""
        hits = self.search(vector, self._index.ntotal)
        own = [h.score for h in hits if h.character == character]
        if not own:
            raise KeyError(f"memory holds no image of character '{character}'")
        return max(-1.0, min(1.0, own[0])), hits[0].character

    def characters(self) -> set[str]:
        return {e.character for e in self.sidecar.entries}


def stored_vectors(sidecar: MemoryFile) -> np.ndarray:
    return np.stack([np.frombuffer(base64.b64decode(e.vector), dtype="<f4") for e in sidecar.entries])


def _unit(vectors: np.ndarray) -> np.ndarray:
    import faiss

    unit = np.ascontiguousarray(vectors, dtype=np.float32).copy()
    faiss.normalize_L2(unit)
    return unit


def _index(unit: np.ndarray) -> faiss.Index:
    import faiss

    index = faiss.IndexIDMap2(faiss.IndexFlatIP(unit.shape[1]))
    index.add_with_ids(unit, np.arange(len(unit), dtype=np.int64))
    return index


def _serialize(index: faiss.Index) -> bytes:
    import faiss

    return faiss.serialize_index(index).tobytes()
