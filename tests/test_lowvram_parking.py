"""gpu.one_heavy_model (lowvram): Models.get parks the other of the director and the painter in CPU memory
and bring the one asked for back. Fakes at the getters' seams for the rule; then a tiny run on CPU through the real
sleep/wake, checking that the model in use was never the parked one and that the film does not change."""

from __future__ import annotations

import pytest

from animagent import models as models_module
from animagent.config import Config, load_config
from animagent.models import Models
from animagent.runfolder import RunFolder
from animagent.runs import make_film

TWO_SHOTS = "tests/data/two_shots.json"


class Heavy:
    """A fake director or painter that records its sleep/wake calls in a shared list."""

    def __init__(self, name: str, events: list[str]):
        self.name, self.events = name, events

    def sleep(self) -> None:
        self.events.append(f"sleep {self.name}")

    def wake(self) -> None:
        self.events.append(f"wake {self.name}")

    def close(self) -> None:
        pass


def _studio(tmp_path, one_heavy_model: bool, director_kind: str = "transformers",
            sleep_mode: bool = False) -> tuple[Models, list[str], dict]:
    config = Config(gpu={"one_heavy_model": one_heavy_model}, director={"kind": director_kind, "sleep_mode": sleep_mode})
    events: list[str] = []
    heavy = {"director": Heavy("director", events), "painter": Heavy("painter", events)}
    return Models(config, tmp_path, loaded=dict(heavy)), events, heavy


def test_the_lowvram_profile_keeps_one_heavy_model_and_the_default_both():
    assert load_config("lowvram").gpu.one_heavy_model is True
    assert load_config("default").gpu.one_heavy_model is False


def test_each_getter_parks_the_other_and_unparks_its_own(tmp_path):
    models, events, heavy = _studio(tmp_path, one_heavy_model=True)
    assert models.get("painter") is heavy["painter"]
    assert events == ["sleep director", "wake painter"]
    events.clear()
    assert models.get("director") is heavy["director"]
    assert events == ["sleep painter", "wake director"]


def test_without_the_flag_nothing_is_parked(tmp_path):
    models, events, _ = _studio(tmp_path, one_heavy_model=False)
    models.get("painter")
    models.get("director")
    assert events == []


def test_an_openai_director_parks_nothing(tmp_path):
    # its model is in another process: moving the painter off the GPU would free nothing for it
    models, events, _ = _studio(tmp_path, one_heavy_model=True, director_kind="openai")
    models.get("painter")
    models.get("director")
    assert events == []


def test_an_openai_director_with_sleep_mode_takes_turns_with_the_painter(tmp_path):
    # a vLLM server on the same GPU frees its memory when asleep (and needs it back when awake)
    models, events, _ = _studio(tmp_path, one_heavy_model=True, director_kind="openai", sleep_mode=True)
    models.get("painter")
    assert events == ["sleep director", "wake painter"]


def test_the_painter_is_parked_before_a_director_loads(tmp_path, monkeypatch):
    models, events, _ = _studio(tmp_path, one_heavy_model=True)
    models.release("director")
    monkeypatch.setattr(models_module, "build",
                        lambda role, config, logs: events.append(f"load {role}") or Heavy(role, events))
    models.get("director")
    assert events == ["sleep painter", "load director"]


# --- a real tiny run ---------------------------------------------------------------------------------------


def _outputs(run: RunFolder) -> dict[str, str]:
    return {rel: sha for record in run.manifest.steps.values() for rel, sha in record.outputs.items()}


@pytest.fixture(scope="module")
def parked(tiny_all, tmp_path_factory):
    """A tiny run with gpu.one_heavy_model=true. The real sleep/wake are wrapped to count calls, and every
    director completion and painter call checks that it runs unparked while the other is parked."""
    from animagent.backends.director_transformers import TransformersDirector
    from animagent.backends.painter_sdxl import SDXLPainter

    calls: list[str] = []
    live: dict[str, list] = {"painter": [], "director": []}

    def loaded(kind: str) -> list:  # instances not yet closed (close deletes the model)
        return [b for b in live[kind] if hasattr(b, "_pipe" if kind == "painter" else "model")]

    def record(cls, kind: str):
        init, sleep, wake = cls.__init__, cls.sleep, cls.wake

        def init_spy(self, *args, **kwargs):
            init(self, *args, **kwargs)
            live[kind].append(self)

        def park_spy(self):
            calls.append(f"sleep {kind}")
            sleep(self)

        def unpark_spy(self):
            calls.append(f"wake {kind}")
            wake(self)

        return {"__init__": init_spy, "sleep": park_spy, "wake": unpark_spy}

    complete, paint = TransformersDirector._complete, SDXLPainter._paint

    def complete_spy(self, *args, **kwargs):
        assert not self._parked and all(p._parked for p in loaded("painter"))
        return complete(self, *args, **kwargs)

    def paint_spy(self, *args, **kwargs):
        assert not self._parked and all(d._parked for d in loaded("director"))
        return paint(self, *args, **kwargs)

    out = tmp_path_factory.mktemp("parked")
    with pytest.MonkeyPatch.context() as patch:
        for cls, kind in ((SDXLPainter, "painter"), (TransformersDirector, "director")):
            for name, spy in record(cls, kind).items():
                patch.setattr(cls, name, spy)
        patch.setattr(TransformersDirector, "_complete", complete_spy)
        patch.setattr(SDXLPainter, "_paint", paint_spy)
        make_film(None, profile="tiny", out=out, script=TWO_SHOTS,
                  overrides=[f"weights.root={tiny_all}", "gpu.one_heavy_model=true"])
    return RunFolder(out), calls


def test_a_tiny_run_parks_and_unparks_and_finishes(parked):
    run, calls = parked
    assert run.exists("film.mp4")
    for call in ("sleep painter", "wake painter", "sleep director", "wake director"):
        assert call in calls


def test_parking_does_not_change_the_film(parked, tiny_all, tmp_path):
    run, _ = parked
    make_film(None, profile="tiny", out=tmp_path, script=TWO_SHOTS, overrides=[f"weights.root={tiny_all}"])
    plain = RunFolder(tmp_path)
    assert _outputs(plain) == _outputs(run) and "film.mp4" in _outputs(run)


def test_the_host_copy_is_made_once_and_covers_weights_that_arrive_later():
    import torch

    from animagent.gpu import HostCopy

    torch.manual_seed(0)
    shared = torch.nn.Linear(3, 3)
    a, b = torch.nn.Sequential(shared, torch.nn.BatchNorm1d(3)), torch.nn.Sequential(shared)  # one module in both
    before = {name: t.clone() for name, t in a.state_dict().items()}
    loaded = {name: t.data_ptr() for name, t in a.state_dict().items()}
    host = HostCopy()
    host.park([a, b])
    first = {name: t.data_ptr() for name, t in a.state_dict().items()}
    assert all(first[name] != loaded[name] for name in loaded)  # parking made a copy of every tensor
    host.unpark([a, b], "cpu")
    host.park([a, b])
    assert {name: t.data_ptr() for name, t in a.state_dict().items()} == first  # a later park reuses it
    assert all(torch.equal(t, before[name]) for name, t in a.state_dict().items())
    host.unpark([a, b], "cpu")
    a.append(torch.nn.Linear(3, 2))  # e.g. an adapter loaded while awake, after the first park
    host.park([a, b])
    assert len(host._host) == len(before) + 2  # shared weights once, the new layer's two tensors added
    assert a(torch.ones(2, 3)).shape == (2, 2)
