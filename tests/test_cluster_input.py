"""cluster.kind ray refused before any work (exit 4, nothing written) when Ray is missing or its address does not
answer; cluster.kind local never imports Ray and gives Models.map's results in order. No Ray needed: a `ray`
package that fails to import, or imports empty, stands in on PYTHONPATH."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = "tests/data/two_shots.json"


def _animagent(tmp_path: Path, ray_init: str, *args: str) -> subprocess.CompletedProcess:
    """The CLI with `ray_init` as the `ray` package's __init__.py."""
    fake = tmp_path / "site" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(ray_init)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake.parent), os.getcwd()]), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "animagent.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def _cli(tmp_path: Path, ray_init: str, *sets: str) -> subprocess.CompletedProcess:
    return _animagent(tmp_path, ray_init, "run", "--script", SCRIPT, "--profile", "tiny", "--cluster", "ray",
                      "--out", str(tmp_path / "run"), *(a for s in sets for a in ("--set", s)))


NO_RAY = "raise ImportError(\"No module named 'ray'\")\n"


@pytest.fixture
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_ray_installed_exits_4_with_the_install_line(tiny_all, tmp_path):
    result = _cli(tmp_path, NO_RAY, f"weights.root={tiny_all}")
    assert result.returncode == 4, result.stderr[-500:]
    assert "pip install 'animagent[ray]'" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_doctor_names_ray_when_the_cluster_needs_it(tiny_all, tmp_path):
    result = _animagent(tmp_path, NO_RAY, "doctor", "--profile", "tiny", "--dir", str(tiny_all),
                        "--set", "cluster.kind=ray")
    assert result.returncode == 4 and "pip install 'animagent[ray]'" in result.stdout, result.stdout[-500:]


def test_an_address_that_does_not_answer_exits_4_naming_it(tiny_all, tmp_path, free_port):
    result = _cli(tmp_path, "", f"weights.root={tiny_all}", f"cluster.address=127.0.0.1:{free_port}")
    assert result.returncode == 4, result.stderr[-500:]
    assert f"127.0.0.1:{free_port}" in result.stderr and "ray start --head" in result.stderr
    assert not (tmp_path / "run").exists()


def test_gpus_with_a_joined_cluster_is_bad_config(tmp_path):
    result = _cli(tmp_path, "", "cluster.address=10.0.0.1:6379", "cluster.gpus=2")
    assert result.returncode == 2 and "cluster.gpus applies to address auto" in result.stderr


def test_local_kind_maps_in_order_lazily_and_never_imports_ray():
    probe = (
        "import sys; from pathlib import Path\n"
        "from animagent.config import Config; from animagent.models import Models\n"
        "seen = []\n"
        "def task(models, x):\n"
        "    seen.append(x); return (x * 2, models.config.cluster.kind)\n"
        "results = Models(Config(), Path('logs')).map(task, [(3,), (1,), (2,)])\n"
        "assert seen == [], seen  # nothing runs before it is consumed\n"
        "assert next(results) == (6, 'local') and seen == [3]\n"
        "assert list(results) == [(2, 'local'), (4, 'local')]\n"
        "assert 'ray' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-500:]
