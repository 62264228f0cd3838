"""Issue 17.5: the queue panel (states, cancel one job), the output gallery (thumbnails; open,
reveal, copy, reopen the workflow of any image), steps and time left on the running node, no
"running" badge left on a cancelled node, and Escape cancelling only from the canvas, asking
first when the run is long."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtTest import QTest

from nodegen import Engine
from nodegen.gui import commands, run_view
from nodegen.gui import gallery as gallery_module
from nodegen.gui.node_paint import running_label
from nodegen.kernel.registry import NodeRegistry
from tests.gui.test_run import slow_steps


@pytest.fixture
def slow_window(make_window, tmp_path, red_png):
    reg = NodeRegistry().discover(plugins=False, user_dirs=[])
    reg.register(slow_steps, "tests")
    window = make_window(Engine(registry=reg, input_dir=tmp_path / "input", output_dir=tmp_path / "output",
                                device="cpu"))
    a = window.add_node("LoadImage", QPointF(0, 0), inputs={"image": str(red_png)})
    s = window.add_node("SlowSteps", QPointF(300, 0), inputs={"steps": 400})
    window.scene.push(commands.connect(window.doc, a, "image", s, "image"))
    window.slow_id = s
    return window


def _wait_idle(qtbot, window, timeout=30000):
    qtbot.waitUntil(lambda: not window.runner.busy and not window.runner.pending(), timeout=timeout)


def test_queue_lists_states_and_cancels_one_job(slow_window, qtbot):
    window, runner, panel = slow_window, slow_window.runner, slow_window.queue_panel
    item = slow_window.scene.items_by_id[slow_window.slow_id]
    badge_at_end = {}
    runner.runFinished.connect(lambda n, s, i: badge_at_end.setdefault(n, item.state))
    assert window.run_graph() and window.run_graph()
    window.scene.push(commands.set_value(window.doc, window.slow_id, "steps", 5))  # job 3 is short
    assert window.run_graph()
    qtbot.waitUntil(lambda: item.progress is not None and item.progress[0] >= 3, timeout=20000)
    states = dict(panel.rows())
    assert states == {1: "running", 2: "pending", 3: "pending"}
    # steps and time left on the running node
    assert item.eta is not None and item.eta > 0
    assert running_label(item.progress, item.eta).startswith(f"{item.progress[0]}/400 \u00b7 ")
    # cancel the pending job 2 from the panel, then the running job 1: job 3 still runs
    panel.select_job(2)
    assert panel.cancel_button.isEnabled() and panel.cancel_selected()
    panel.select_job(1)
    assert panel.cancel_selected()
    _wait_idle(qtbot, window)
    assert dict(panel.rows()) == {1: "cancelled", 2: "cancelled", 3: "done"}
    assert badge_at_end[1] == "cancelled"  # not left "running"
    assert not panel.cancel_all_button.isEnabled()
    panel.clear_finished()
    assert panel.rows() == []


def test_escape_cancels_only_from_the_canvas_and_asks_for_long_runs(slow_window, qtbot, monkeypatch):
    window = slow_window
    item = window.scene.items_by_id[window.slow_id]
    asked = []
    window.ask_cancel_run = lambda job: asked.append(job.number) or False
    assert window.run_graph()
    qtbot.waitUntil(lambda: item.state == "running", timeout=20000)
    window.palette.filter.setFocus()
    QTest.keyClick(window.palette.filter, Qt.Key_Escape)  # not the canvas: nothing happens
    assert window.runner.running_job.status == "running"
    monkeypatch.setattr(run_view, "LONG_RUN_S", 0.0)  # every run counts as long now
    window.view.setFocus()
    QTest.keyClick(window.view, Qt.Key_Escape)
    assert asked == [1] and window.runner.running_job.status == "running"  # the user said no
    window.ask_cancel_run = lambda job: True
    QTest.keyClick(window.view, Qt.Key_Escape)
    _wait_idle(qtbot, window)
    assert window.runner.jobs[1].status == "cancelled" and item.state == "cancelled"


def test_gallery_collects_outputs_and_reopens_their_workflow(window, chain_file, qtbot, monkeypatch, tmp_path):
    assert window.open_file(str(chain_file), ask=False)
    window.scene.push(commands.set_field(window.doc, ["2"], "title", "Negative", "Rename"))
    assert window.run_graph()
    _wait_idle(qtbot, window)
    assert window.run_graph()  # a second run (cached) writes a second preview file
    _wait_idle(qtbot, window)
    paths = window.gallery.paths()
    assert len(paths) >= 1 and all(p.endswith(".png") for p in paths)
    assert window.gallery.list.item(0).icon().isNull() is False
    opened = []
    monkeypatch.setattr(gallery_module.QDesktopServices, "openUrl", lambda url: opened.append(url.toLocalFile()) or True)
    window.gallery.select_path(paths[0])
    assert window.gallery.open_image() and window.gallery.reveal()
    assert opened == [paths[0], str(__import__("pathlib").Path(paths[0]).parent)]
    assert window.gallery.copy()
    assert QGuiApplication.clipboard().image().size().width() == 32
    # reopen the workflow that made the image: a new window content, from the PNG
    window.new_file()
    window.gallery.select_path(paths[0])
    window.gallery.reopen()
    assert window.doc.nodes["2"].get("title") == "Negative"
    assert {n["type"] for n in window.doc.nodes.values()} == {"LoadImage", "ImageInvert", "PreviewImage"}
    assert window.doc.path is None  # never overwrite the image


def test_ctrl_shift_enter_queues_the_run_first(slow_window, qtbot):
    """ComfyUI's Ctrl+Shift+Enter: the new run goes ahead of those already waiting."""
    window, runner = slow_window, slow_window.runner
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    window.view.setFocus()
    QTest.keyClick(window.view, Qt.Key_Return, Qt.ControlModifier)
    QTest.keyClick(window.view, Qt.Key_Return, Qt.ControlModifier)
    QTest.keyClick(window.view, Qt.Key_Return, Qt.ControlModifier | Qt.ShiftModifier)
    assert [job.number for job in runner._queue] == [3, 2]  # 1 runs; 3 is next
    runner.cancel()
    _wait_idle(qtbot, window)
