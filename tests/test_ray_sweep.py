"""Sweeps on Ray (a local instance, 2 CPUs) with the demo model: the same images as single runs,
and every job exactly once when an actor is killed in the middle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ray = pytest.importorskip("ray")

from nodegen.runtime.engine import Engine  # noqa: E402
from nodegen.sweep.driver import SweepOptions, run_sweep  # noqa: E402
from nodegen.sweep.ray_backend import connect  # noqa: E402

GRAPH = "graphs/txt2img.json"
SEEDS = range(1, 9)
STEPS = 8


@pytest.fixture(scope="module")
def ray_session():
    connect("local", num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def singles(tmp_path_factory) -> dict[int, np.ndarray]:
    """The 8 images made one by one, at one thread (as the tests run)."""
    engine = Engine(output_dir=tmp_path_factory.mktemp("singles"), device="cpu")
    out = {}
    for seed in SEEDS:
        result = engine.run(GRAPH, set={"Sampler.seed": seed, "Sampler.steps": STEPS})
        assert result.ok
        out[seed] = np.asarray(result.images[0].convert("RGB"))
    return out


def sweep(out: Path, on_job=None):
    opts = SweepOptions(GRAPH, [f"Sampler.seed={SEEDS[0]}..{SEEDS[-1]}", f"Sampler.steps={STEPS}"],
                        out=str(out), ray="local", workers=2, device="cpu")
    return run_sweep(opts, on_job=on_job)


def check_all_once(out: Path, singles) -> None:
    records = [json.loads(x) for x in (out / "sweep.jsonl").read_text().splitlines()]
    jobs = [r for r in records if "job" in r]
    assert sorted(r["job"] for r in jobs) == list(range(8))  # each job recorded once
    assert all(r["status"] == "done" for r in jobs)
    pngs = sorted(out.glob("*/*.png"))
    assert len(pngs) == 8 and not list(out.glob("*.partial"))
    for r in jobs:
        (f,) = r["files"]
        got = np.asarray(Image.open(out / f).convert("RGB"))
        assert np.array_equal(got, singles[r["values"]["Sampler.seed"]]), r


def test_ray_sweep_matches_single_runs_even_when_an_actor_is_killed(ray_session, singles, tmp_path):
    """One sweep (Ray startup is slow): 8 seeds on 2 actors, one actor killed after the first
    result; every image equals its single run, every job is recorded and written once."""
    killed = []

    def kill_once(record, backend):
        if not killed:
            killed.append(backend)
            # the actor that just returned a job; Ray restarts it and retries the calls it had
            ray.kill(backend.actors[backend.last_slot], no_restart=False)

    report = sweep(tmp_path / "out", on_job=kill_once)
    assert killed and report.done == 8 and report.failed == 0
    assert len(killed[0].workers_seen) == 3  # two actors, and the restarted one ran the retried calls
    check_all_once(tmp_path / "out", singles)


def test_a_ray_worker_refuses_models_that_differ_from_the_recorded_hashes(ray_session, tmp_path):
    from nodegen.sweep.local import WorkerFailed

    doc = json.loads(Path(GRAPH).read_text())
    doc["models"] = [{"name": "nodegen-demo-shapes.safetensors", "kind": "checkpoints", "sha256": "ab" * 32}]
    graph = tmp_path / "locked.json"
    graph.write_text(json.dumps(doc))
    opts = SweepOptions(str(graph), ["Sampler.seed=1..2"], out=str(tmp_path / "out"), ray="local", workers=1,
                        device="cpu")
    with pytest.raises(WorkerFailed) as info:
        run_sweep(opts)
    text = str(info.value)
    assert "nodegen-demo-shapes.safetensors" in text and "ab" * 32 in text and "node 1 (Model)" in text
    assert not list((tmp_path / "out").glob("*/*.png"))
