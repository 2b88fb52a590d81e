"""Character memory: FAISS IndexIDMap2(IndexFlatIP) + JSON sidecar in the run folder, verified and rebuilt."""

from __future__ import annotations

import json

import numpy as np
import pytest

from animagent.memory import INDEX, SIDECAR, Item, Memory, stored_vectors
from animagent.runfolder import RunFolder

ITEMS = [Item("mira", "cast/characters/mira/0.png", "sheet"), Item("mira", "cast/characters/mira/1.png", "alternate"),
         Item("tobin", "cast/characters/tobin/0.png", "sheet")]


def _vectors() -> np.ndarray:
    v = np.zeros((3, 8), dtype=np.float32)
    v[0, 0], v[1, 0], v[1, 1], v[2, 2] = 2.0, 1.0, 1.0, 5.0  # unnormalised on purpose
    return v


@pytest.fixture
def run(tmp_path) -> RunFolder:
    run = RunFolder(tmp_path)
    Memory.build(run, "clip_vit_l", ITEMS, _vectors())
    return run


def test_identity_is_the_best_cosine_to_the_characters_own_entries(run):
    memory = Memory.load(run)
    same = np.array([1, 0, 0, 0, 0, 0, 0, 0], dtype=np.float32)
    assert memory.identity(same, "mira") == (pytest.approx(1.0), "mira")  # identical to mira's sheet
    assert memory.identity(same, "tobin") == (pytest.approx(0.0), "mira")  # orthogonal to tobin's only entry
    between = np.array([0, 1, 0, 0, 0, 0, 0, 0], dtype=np.float32)  # 45 degrees from mira's alternate
    assert memory.identity(between, "mira")[0] == pytest.approx(np.sqrt(0.5), abs=1e-6)
    with pytest.raises(KeyError):
        memory.identity(same, "owl")


def test_search_returns_entries_nearest_first(run):
    hits = Memory.load(run).search(np.array([1, 0, 3, 0, 0, 0, 0, 0], dtype=np.float32), k=2)
    assert [(h.character, h.view) for h in hits] == [("tobin", "sheet"), ("mira", "sheet")]
    assert hits[0].score > hits[1].score


def test_the_sidecar_holds_ids_characters_views_unit_vectors_and_the_index_hash(run):
    data = json.loads(run.path(SIDECAR).read_text())
    assert [(e["id"], e["character"], e["view"]) for e in data["entries"]] == [
        (0, "mira", "sheet"), (1, "mira", "alternate"), (2, "tobin", "sheet")]
    assert data["embedder"] == "clip_vit_l" and data["dim"] == 8
    assert data["index_sha256"] == run.sha(INDEX)
    from animagent.memory import MemoryFile

    vectors = stored_vectors(MemoryFile.model_validate(data))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("damage", ["garbage", "missing", "another index"])
def test_an_unreadable_or_changed_index_is_rebuilt_from_the_stored_vectors(run, damage, caplog):
    original = run.path(INDEX).read_bytes()
    if damage == "garbage":
        run.path(INDEX).write_bytes(b"not a faiss index")
    elif damage == "missing":
        run.path(INDEX).unlink()
    else:  # a valid index of other vectors: only the hash can tell
        Memory.build(RunFolder(run.root / "other"), "clip_vit_l", ITEMS, _vectors()[::-1].copy())
        run.path(INDEX).write_bytes((run.root / "other" / INDEX).read_bytes())
    memory = Memory.load(run)
    assert "rebuilding" in caplog.text
    assert run.path(INDEX).read_bytes() == original  # the same bytes again, written atomically
    assert memory.identity(np.eye(8, dtype=np.float32)[2], "tobin") == (pytest.approx(1.0), "tobin")
    assert run.stray_temp_files() == []
