"""The arrows point one way: stages see backend protocols, artifacts and our own light modules, never a concrete
backend module or a heavy library; only models.py maps kinds to backends."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

STAGES = sorted(Path("animagent/stages").glob("*.py"))
HEAVY = ("torch", "diffusers", "transformers", "vllm", "faiss", "av")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


@pytest.mark.parametrize("path", STAGES, ids=lambda p: p.name)
def test_a_stage_imports_no_concrete_backend_and_no_heavy_library(path):
    imported = _imports(path)
    concrete = {name for name in imported if name.startswith("animagent.backends.")
                and name not in ("animagent.backends.Director", "animagent.backends.Painter",
                                 "animagent.backends.Animator", "animagent.backends.Segmenter",
                                 "animagent.backends.Embedder", "animagent.backends.ImageEncoder",
                                 "animagent.backends.Grounding", "animagent.backends.Voice")}
    assert concrete == set(), f"{path} imports {sorted(concrete)}"
    assert not {name for name in imported if name.split(".")[0] in HEAVY}, f"{path} imports a heavy library"


def test_no_stage_branches_on_a_kind():
    for path in STAGES:
        text = path.read_text(encoding="utf-8")
        assert ".kind ==" not in text and ".kind !=" not in text, f"{path} branches on a kind"
