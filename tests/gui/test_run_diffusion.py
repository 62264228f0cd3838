"""The editor runs graphs/txt2img.json on the small SD1 fixture model: the sampler shows its
progress and live latent previews while it runs, the image appears on the Save node, and
changing the seed re-runs only the sampler and what follows it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nodegen.gui import commands

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def txt2img(tmp_path):
    fixtures = pytest.importorskip("tests.support.fixtures")
    sd1 = fixtures.sd1_fixture()
    models = tmp_path / "models"
    (models / "checkpoints").mkdir(parents=True)
    os.symlink(sd1.single_file, models / "checkpoints" / "sd1.safetensors")
    doc = json.loads((ROOT / "graphs" / "txt2img.json").read_text())
    for n in doc["nodes"].values():
        if n["type"] == "CheckpointLoader":
            n["inputs"]["ckpt_name"] = "sd1.safetensors"
        if n["type"] == "KSampler":
            n["inputs"]["steps"] = 4
    path = tmp_path / "txt2img.json"
    path.write_text(json.dumps(doc, indent=2))
    return path, models


def test_txt2img_runs_with_live_previews_and_reruns_only_the_sampler(make_window, txt2img, tmp_path, qtbot):
    from nodegen.runtime.engine import Engine

    path, models = txt2img
    engine = Engine(models=models, input_dir=tmp_path / "input", output_dir=tmp_path / "output", device="cpu")
    window = make_window(engine)
    assert window.open_file(str(path), ask=False)
    sampler = next(nid for nid, n in window.doc.nodes.items() if n["type"] == "KSampler")
    save = next(nid for nid, n in window.doc.nodes.items() if n["type"] == "SaveImage")
    previews = []
    window.runner.event.connect(
        lambda kind, nid, data: previews.append(data.get("preview")) if kind == "node_progress" and nid == sampler else None)
    assert window.run_graph(), [window.problems.item(i).text() for i in range(window.problems.count())]
    qtbot.waitUntil(lambda: not window.runner.busy, timeout=180000)
    assert window.last_status == "ok"
    assert len(previews) == 4 and all(p is not None and not p.isNull() for p in previews)
    assert window.scene.items_by_id[sampler].preview is None  # replaced by the results
    images = window.scene.items_by_id[save].images
    assert len(images) == 1 and (images[0].width(), images[0].height()) == (64, 64)
    assert list((tmp_path / "output").glob("*.png"))

    window.run_log.clear()
    window.scene.push(commands.set_value(window.doc, sampler, "seed", 2))
    assert window.run_graph()
    qtbot.waitUntil(lambda: not window.runner.busy, timeout=180000)
    started = {nid for kind, nid in window.run_log if kind == "node_started"}
    cached = {nid for kind, nid in window.run_log if kind == "node_cached"}
    assert sampler in started and save in started
    loader = next(nid for nid, n in window.doc.nodes.items() if n["type"] == "CheckpointLoader")
    assert loader in cached and loader not in started
    assert "seed changed" in window.scene.items_by_id[sampler].reason
