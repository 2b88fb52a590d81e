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


def test_a_worker_s_gpu_too_small_for_the_profile_names_the_node_and_a_profile_that_fits():
    from animagent.cluster import check_memory
    from animagent.config import load_config
    from animagent.errors import ResourceError

    check_memory(load_config("default"), "10.0.0.7", int(80e9))  # an 80 GB card holds the default profile
    check_memory(load_config("tiny"), "10.0.0.7", int(1e9))  # the tiny profile asks nothing of a GPU
    with pytest.raises(ResourceError) as exc:
        check_memory(load_config("default"), "10.0.0.7", int(24e9))
    message = str(exc.value)
    assert "Ray node 10.0.0.7" in message and "24.0 GB" in message and "48 GB" in message
    assert "--profile lowvram" in message and exc.value.exit_code == 5
    with pytest.raises(ResourceError, match="no profile fits it"):
        check_memory(load_config("lowvram"), "10.0.0.8", int(12e9))


def test_the_workers_start_before_any_work(tiny_all, tmp_path, monkeypatch):
    """A node found wanting when the workers start (here: its weights) stops the run before the plan is made."""
    from animagent.errors import MissingError
    from animagent.models import Models
    from animagent.runs import make_film

    def start(self):
        raise MissingError("Ray node 10.0.0.9: tiny/sdxl_base is not on this node")

    monkeypatch.setattr(Models, "start", start)
    with pytest.raises(MissingError, match="Ray node 10.0.0.9"):
        make_film(None, profile="tiny", out=tmp_path / "run", overrides=[f"weights.root={tiny_all}"], script=SCRIPT)
    assert not (tmp_path / "run" / "logs" / "events.jsonl").exists()  # no stage began


def test_the_ray_compose_file_gives_each_node_its_own_gpu_and_the_same_token():
    import yaml

    repo = Path(__file__).parents[1]
    compose = yaml.safe_load((repo / "docker-compose.ray.yml").read_text())
    nodes = compose["services"]
    gpus = [d for s in nodes.values() for d in s["deploy"]["resources"]["reservations"]["devices"]]
    assert sorted(i for d in gpus for i in d["device_ids"]) == ["0", "1"]  # one GPU per node, none shared
    assert all(s["environment"]["RAY_AUTH_MODE"] == "token" and "ANIMAGENT_RAY_TOKEN" in s["environment"]["RAY_AUTH_TOKEN"]
               for s in nodes.values())
    head, worker = nodes["ray-head"]["command"], nodes["ray-worker-1"]["command"]
    port = head[head.index("--port") + 1]
    assert worker[worker.index("--address") + 1] == f"ray-head:{port}"
    assert f"cluster.address=ray-head:{port}" in (repo / "docker-compose.ray.yml").read_text()  # the exec line
    assert nodes["ray-head"]["build"]["args"]["EXTRAS"] == "ray" and "ARG EXTRAS" in (repo / "Dockerfile").read_text()


def test_every_animagent_container_keeps_the_compile_cache_on_the_cache_volume():
    """The inductor cache defaults to /tmp, which dies with a container: every film would compile afresh."""
    import yaml

    repo = Path(__file__).parents[1]
    dockerfile = (repo / "Dockerfile").read_text()
    assert "TORCHINDUCTOR_CACHE_DIR=/cache/" in dockerfile and '"/cache"' in dockerfile
    services = {**yaml.safe_load((repo / "docker-compose.yml").read_text())["services"],
                **yaml.safe_load((repo / "docker-compose.ray.yml").read_text())["services"]}
    ours = [name for name, s in services.items() if s.get("image") == "animagent" or "build" in s]
    assert sorted(ours) == ["animagent", "ray-head", "ray-worker-1"]
    assert all("cache:/cache" in services[name]["volumes"] for name in ours)
