"""Issue 17.6: sweeps from the editor, through the same core as ``python main.py sweep``
(:mod:`nodegen.runtime.sweep`): the value syntax (ranges, stepped ranges, lists, random:N), one
queue job per sweep run in the run thread on the window's engine, ``sweep.jsonl`` in the sweep's
folder in the sweep command's form, resume, cancel, and the results as a grid in the gallery."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import QPointF

from nodegen.formats import open_any
from nodegen.gui import commands
from nodegen.gui.sweep_dialog import SweepDialog, SweepError, default_folder, parse_spec, sweepable_inputs

ROOT = Path(__file__).resolve().parents[2]
INT = {"widget": "int", "min": 1, "max": 100}
SEED = {"widget": "seed", "min": 0, "max": 2**32 - 1}
FLOAT = {"widget": "float", "min": 0.0, "max": 1.0}
CHOICE = {"widget": "choice", "choices": ["normal", "multiply", "screen"]}
#: the sweep command's manifest lines: the first of each run, then one per finished job
HEADER_KEYS = {"event", "graph", "over", "zip", "jobs", "started"}
JOB_KEYS = {"job", "folder", "values", "files", "seconds", "status"}


def manifest(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "sweep.jsonl").read_text().splitlines()]


def wait_idle(qtbot, window, timeout=60000) -> None:
    qtbot.waitUntil(lambda: not window.runner.busy and not window.runner.pending(), timeout=timeout)


def test_spec_syntax():
    assert parse_spec("1..8", INT) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert parse_spec("1..100:10", INT) == [1, 11, 21, 31, 41, 51, 61, 71, 81, 91]
    assert parse_spec("3, 5,9", INT) == [3, 5, 9]
    assert parse_spec("0..1:0.25", FLOAT) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert parse_spec("normal,screen", CHOICE) == ["normal", "screen"]
    seeds = parse_spec("random:4", SEED)
    assert len(seeds) == 4 and all(isinstance(s, int) and 0 <= s <= 2**32 - 1 for s in seeds)
    for bad, spec, words in (("x..3", INT, "not an integer"), ("1..200", INT, "outside"),
                             ("0..1", FLOAT, "needs a step"), ("vivid", CHOICE, "not one of"),
                             ("random:3", FLOAT, "integer input"), ("", INT, "no values")):
        with pytest.raises(SweepError, match=words):
            parse_spec(bad, spec, "Sampler.steps")


def test_dialog_lists_seeds_first_and_picks_a_folder_per_graph(window):
    window.add_node("ImageBlend", QPointF(0, 0))
    sampler = window.add_node("KSampler", QPointF(300, 0))
    rows = sweepable_inputs(window.doc.data, window.schema)
    assert (rows[0][0], rows[0][1]) == (sampler, "seed")
    dialog = SweepDialog(window.doc.data, window.schema, window, output_dir="out")
    dialog.first_values.setText("random:3")
    (axis,) = dialog.axes()
    assert axis.over == f"{sampler}.seed=random:3" and len(axis.values) == 3  # no title: the id
    window.scene.push(commands.set_field(window.doc, [sampler], "title", "Sampler", "Rename"))
    dialog = SweepDialog(window.doc.data, window.schema, window, output_dir="out")
    dialog.first_values.setText("random:3")
    (axis,) = dialog.axes()
    assert axis.over == "Sampler.seed=random:3"  # a unique title: as one types it for main.py sweep
    assert "3 run(s)" in dialog.summary.text()
    folder = dialog.folder()
    assert folder.parent == Path("out", "sweeps") and folder.name.startswith("untitled-seed-")
    # the swept input's own value does not matter; any other edit gives the sweep a new folder
    window.scene.push(commands.set_value(window.doc, sampler, "seed", 99))
    assert default_folder("out", window.doc.data, None, [axis]) == folder
    window.scene.push(commands.set_value(window.doc, sampler, "cfg", 3.5))
    assert default_folder("out", window.doc.data, None, [axis]) != folder
    dialog.folder_edit.setText("/somewhere/else")
    assert dialog.folder() == Path("/somewhere/else")


def test_sweep_runs_every_combination_and_shows_a_grid(window, red_png, qtbot, tmp_path):
    load = window.add_node("LoadImage", QPointF(0, 0), inputs={"image": str(red_png)})
    inv = window.add_node("ImageInvert", QPointF(300, 300))
    blend = window.add_node("ImageBlend", QPointF(300, 0))
    out = window.add_node("SaveImage", QPointF(600, 0))
    for src, name, dst, inp in ((load, "image", inv, "image"), (load, "image", blend, "image1"),
                                (inv, "image", blend, "image2"), (blend, "image", out, "images")):
        window.scene.push(commands.connect(window.doc, src, name, dst, inp))
    dialog = SweepDialog(window.doc.data, window.schema, window, preset=(blend, "blend_factor"))
    dialog.first_values.setText("0..1:0.5")
    idx = next(i for i in range(dialog.second.count()) if dialog.second.itemText(i).endswith("blend_mode"))
    dialog.second.setCurrentIndex(idx)
    dialog.second_values.setText("normal,multiply")
    assert "6 run(s)" in dialog.summary.text()
    before = window.doc.snapshot()
    folder = tmp_path / "blend-sweep"
    number = window.run_sweep([a.over for a in dialog.axes()], folder)
    wait_idle(qtbot, window)
    job = window.runner.jobs[number]
    assert job.status == "done" and job.progress == (6, 6) and len(job.outputs) == 6
    assert window.doc.snapshot() == before  # the open graph is not changed by a sweep
    records = [r for r in manifest(folder) if "job" in r]
    assert [r["job"] for r in records] == list(range(6)) and all(r["status"] == "done" for r in records)
    gallery = window.gallery
    assert gallery.pages.currentWidget() is gallery.grid
    assert (gallery.grid.rowCount(), gallery.grid.columnCount()) == (3, 2)
    assert gallery.grid.horizontalHeaderItem(1).text() == "blend_mode=multiply"
    assert gallery.grid.verticalHeaderItem(2).text() == "blend_factor=1.0"
    cells = {gallery.grid_path(r, c) for r in range(3) for c in range(2)}
    assert cells == {str(folder / r["files"][0]) for r in records}
    # each cell is the image of its values: the workflow in the PNG says so
    wf = open_any(gallery.grid_path(2, 1))
    assert wf.data["nodes"][blend]["inputs"]["blend_factor"] == 1.0
    assert wf.data["nodes"][blend]["inputs"]["blend_mode"] == "multiply"
    assert gallery.sweep_grids[job.tag["sweep"]] == str(folder / "grid.png")
    with Image.open(folder / "grid.png") as grid:
        assert grid.width > 2 * 32 and grid.height > 3 * 24


def test_the_demo_graph_sweeps_through_the_shared_core_and_resumes(window, qtbot, tmp_path, monkeypatch):
    """The open demo graph over seeds: the folder is the sweep command's (manifest lines, job
    folders, provenance), so the command resumes the editor's sweep and the editor the command's."""
    from nodegen.sweep.driver import SweepOptions, run_sweep

    graph = tmp_path / "txt2img.json"
    doc = json.loads((ROOT / "graphs" / "txt2img.json").read_text())
    doc["nodes"]["5"]["inputs"]["steps"] = 3
    graph.write_text(json.dumps(doc))
    assert window.open_file(str(graph), ask=False)
    folder = tmp_path / "seeds"
    typed = {"values": "1..3"}

    def fill_and_accept(dialog) -> int:
        dialog.first_values.setText(typed["values"])
        dialog.folder_edit.setText(str(folder))
        return 1

    monkeypatch.setattr(SweepDialog, "exec", fill_and_accept)
    assert window.open_sweep_dialog(("5", "seed"))
    wait_idle(qtbot, window, 120000)
    first = window.runner.jobs[max(window.runner.jobs)]
    assert first.status == "done", first.info
    lines = manifest(folder)
    assert set(lines[0]) == HEADER_KEYS and lines[0]["graph"] == str(graph.resolve())
    assert lines[0]["over"] == [{"key": "Sampler.seed", "spec": "1..3", "values": ["1", "2", "3"]}]
    jobs = lines[1:]
    assert [r["job"] for r in jobs] == [0, 1, 2] and all(JOB_KEYS <= set(r) for r in jobs)
    assert [r["values"] for r in jobs] == [{"Sampler.seed": s} for s in (1, 2, 3)]
    for r in jobs:  # provenance: each image records its seed
        assert open_any(folder / r["files"][0]).data["nodes"]["5"]["inputs"]["seed"] == r["values"]["Sampler.seed"]
    # the gallery shows the sweep as its grid: one input, so thumbnails in value order wrapping to
    # the panel, captioned with the values; the sweep's grid.png is listed with the images
    gallery = window.gallery
    assert gallery.view_combo.currentText() == first.tag["sweep"] and gallery.pages.currentWidget() is gallery.list
    assert gallery.paths() == [str(folder / r["files"][0]) for r in jobs]
    assert [gallery.list.item(i).text() for i in range(3)] == ["seed=1", "seed=2", "seed=3"]
    assert gallery.sweep_grids[first.tag["sweep"]] == str(folder / "grid.png")
    with Image.open(folder / "grid.png") as grid:
        assert grid.width > 3 * 64 and 64 < grid.height < 2 * 64
    # the canvas showed each job's image on the Save node; its file is where the job was published
    _images, paths = window.node_images["7"]
    assert paths == [str(folder / jobs[-1]["files"][0])]

    # the sweep command on the same folder takes the editor's jobs as done and adds seed 4
    report = run_sweep(SweepOptions(str(graph), ["Sampler.seed=1..4"], out=str(folder), device="cpu"))
    assert (report.skipped, report.done, report.failed) == (3, 1, 0)
    cli_header, cli_job = manifest(folder)[-2:]
    assert set(cli_header) == HEADER_KEYS and set(cli_job) == set(jobs[0]) and cli_job["job"] == 3

    # the editor's re-run resumes: nothing runs again, the grid holds all four
    typed["values"] = "1..4"
    assert window.open_sweep_dialog(("5", "seed"))
    wait_idle(qtbot, window)
    again = window.runner.jobs[max(window.runner.jobs)]
    assert again.status == "done" and (again.info["skipped"], again.info["done"]) == (4, 0)
    assert manifest(folder)[-1]["event"] == "sweep"  # a header, no job line
    assert gallery.view_combo.currentText() == again.tag["sweep"]
    assert gallery.paths() == [str(folder / r["files"][0]) for r in jobs + [cli_job]]


def test_cancel_keeps_finished_jobs_and_the_rerun_resumes(make_window, tmp_path, red_png, qtbot):
    from nodegen import Engine
    from nodegen.kernel.registry import NodeRegistry
    from tests.gui.test_run import slow_steps

    reg = NodeRegistry().discover(plugins=False, user_dirs=[])
    reg.register(slow_steps, "tests")
    window = make_window(Engine(registry=reg, input_dir=tmp_path / "input", output_dir=tmp_path / "output",
                                device="cpu"))
    load = window.add_node("LoadImage", QPointF(0, 0), inputs={"image": str(red_png)})
    slow = window.add_node("SlowSteps", QPointF(300, 200), inputs={"steps": 40})
    save = window.add_node("SaveImage", QPointF(300, 0))
    window.scene.push(commands.connect(window.doc, load, "image", slow, "image"))
    window.scene.push(commands.connect(window.doc, load, "image", save, "images"))
    folder = tmp_path / "prefixes"
    finished = []
    window.runner.sweepEvent.connect(lambda n, ev: finished.append(ev) if ev["event"] == "job_finished" else None)
    number = window.run_sweep([f"{save}.filename_prefix=a,b,c,d,e"], folder)
    qtbot.waitUntil(lambda: len(finished) >= 1, timeout=30000)
    assert window.queue_panel.rows()[0][1] == "running" and "1/5" in window.queue_panel.tree.topLevelItem(0).text(2)
    window.runner.cancel_job(number)
    wait_idle(qtbot, window)
    job = window.runner.jobs[number]
    assert job.status == "cancelled" and 1 <= job.info["done"] < 5
    done = [r for r in manifest(folder) if "job" in r]
    assert len(done) == job.info["done"] and not list(folder.glob("*.partial"))
    rerun = window.run_sweep([f"{save}.filename_prefix=a,b,c,d,e"], folder)
    wait_idle(qtbot, window)
    info = window.runner.jobs[rerun].info
    assert (info["skipped"], info["done"]) == (len(done), 5 - len(done))
    assert sorted(p.parent.name for p in folder.glob("*/*.png")) == sorted(
        r["folder"] for r in manifest(folder) if "job" in r)
    shutil.rmtree(folder)
