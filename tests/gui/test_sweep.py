"""Issue 17.6: sweeps from the editor with the ``main.py sweep`` value syntax (ranges, stepped
ranges, lists, random:N), one queued job per combination, results as a grid in the gallery."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPointF

from nodegen.gui import commands
from nodegen.gui.sweep_dialog import Axis, SweepDialog, SweepError, expand, parse_spec, sweepable_inputs

INT = {"widget": "int", "min": 1, "max": 100}
SEED = {"widget": "seed", "min": 0, "max": 2**32 - 1}
FLOAT = {"widget": "float", "min": 0.0, "max": 1.0}
CHOICE = {"widget": "choice", "choices": ["normal", "multiply", "screen"]}


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
    combos = expand([Axis("3", "seed", [1, 2]), Axis("3", "cfg", [4.0, 5.0, 6.0])])
    assert combos[:4] == [{"3.seed": 1, "3.cfg": 4.0}, {"3.seed": 1, "3.cfg": 5.0},
                          {"3.seed": 1, "3.cfg": 6.0}, {"3.seed": 2, "3.cfg": 4.0}]
    assert len(combos) == 6


def test_seeds_come_first_in_the_dialog(window):
    window.add_node("ImageBlend", QPointF(0, 0))
    sampler = window.add_node("KSampler", QPointF(300, 0))
    rows = sweepable_inputs(window.doc.data, window.schema)
    assert (rows[0][0], rows[0][1]) == (sampler, "seed")
    dialog = SweepDialog(window.doc.data, window.schema, window)
    dialog.first_values.setText("random:3")
    assert [len(a.values) for a in dialog.axes()] == [3]
    assert dialog.axes()[0].values == dialog.axes()[0].values  # the same values when queued
    assert "3 run(s)" in dialog.summary.text()


def test_sweep_runs_every_combination_and_shows_a_grid(window, red_png, qtbot):
    load = window.add_node("LoadImage", QPointF(0, 0), inputs={"image": str(red_png)})
    inv = window.add_node("ImageInvert", QPointF(300, 300))
    blend = window.add_node("ImageBlend", QPointF(300, 0))
    out = window.add_node("PreviewImage", QPointF(600, 0))
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
    jobs = window.run_sweep(dialog.axes())
    assert len(jobs) == 6
    qtbot.waitUntil(lambda: not window.runner.busy and not window.runner.pending(), timeout=60000)
    assert all(window.runner.jobs[j].status == "done" for j in jobs)
    assert window.doc.snapshot() == before  # the open graph is not changed by a sweep
    gallery = window.gallery
    assert gallery.pages.currentWidget() is gallery.grid
    assert (gallery.grid.rowCount(), gallery.grid.columnCount()) == (3, 2)
    assert gallery.grid.horizontalHeaderItem(1).text() == "blend_mode=multiply"
    assert gallery.grid.verticalHeaderItem(2).text() == "blend_factor=1.0"
    cells = {gallery.grid_path(r, c) for r in range(3) for c in range(2)}
    assert None not in cells and len(cells) == 6
    # each cell is the image of its values: the workflow in the PNG says so
    from nodegen.formats import open_any

    wf = open_any(gallery.grid_path(2, 1))
    assert wf.data["nodes"][blend]["inputs"]["blend_factor"] == 1.0
    assert wf.data["nodes"][blend]["inputs"]["blend_mode"] == "multiply"
