"""Running from the editor: validation problems on the nodes and in the panel, a run in the worker
thread whose output image appears on the preview node, incremental re-runs (cached nodes), the
run queue, live progress with previews, and cancel."""

from __future__ import annotations

import time

import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from nodegen.gui import commands
from nodegen.kernel import types as T
from nodegen.kernel.node import Input, node
from nodegen.kernel.registry import NodeRegistry
from nodegen.runtime.engine import Engine


def _wait_idle(qtbot, window, timeout=60000):
    qtbot.waitUntil(lambda: not window.runner.busy and not window.runner.pending(), timeout=timeout)


def test_run_shows_output_image_on_preview_node(window, chain_file, qtbot):
    assert window.open_file(str(chain_file), ask=False)
    window.view.setFocus()
    QTest.keyClick(window, Qt.Key_Return, Qt.ControlModifier)  # Ctrl+Enter runs
    assert window.runner.busy or window.last_status is not None
    _wait_idle(qtbot, window)
    assert window.last_status == "ok"
    preview = window.scene.items_by_id["3"]
    assert len(preview.images) == 1
    img = preview.images[0]
    assert (img.width(), img.height()) == (32, 24)
    c = img.pixelColor(5, 5)
    assert (c.red(), c.green(), c.blue()) == (55, 215, 235)  # inverted (200, 40, 20)
    assert not preview.image_rect().isNull()
    for nid in ("1", "2", "3"):
        assert window.scene.items_by_id[nid].state == "done"
        assert window.scene.items_by_id[nid].seconds is not None
    assert "first run" in window.scene.items_by_id["2"].reason
    # the viewer shows it too
    assert window.viewer.current() is not None
    # LoadImage shows its own image
    assert window.scene.items_by_id["1"].source_image is not None
    # running never changed the document
    assert not window.doc.modified


def test_rerun_uses_the_cache_and_edits_rerun_only_what_changed(window, chain_file, tmp_path, qtbot):
    assert window.open_file(str(chain_file), ask=False)
    assert window.run_graph()
    _wait_idle(qtbot, window)
    window.run_log.clear()
    assert window.run_graph()
    _wait_idle(qtbot, window)
    assert {k for k, _ in window.run_log if k.startswith("node_")} == {"node_cached"}
    assert all(i.state == "cached" for i in window.scene.items_by_id.values())
    assert window.scene.items_by_id["3"].images  # still shown from the cache
    blue = tmp_path / "input" / "blue.png"
    Image.new("RGB", (16, 16), (0, 0, 255)).save(blue)
    window.scene.push(commands.set_value(window.doc, "1", "image", str(blue)))
    assert window.scene.items_by_id["1"].source_image.width() == 16
    window.run_log.clear()
    assert window.run_graph()
    _wait_idle(qtbot, window)
    started = [n for k, n in window.run_log if k == "node_started"]
    assert started == ["1", "2", "3"]
    assert "image changed" in window.scene.items_by_id["1"].reason
    assert "upstream 1" in window.scene.items_by_id["2"].reason
    c = window.scene.items_by_id["3"].images[0].pixelColor(0, 0)
    assert (c.red(), c.green(), c.blue()) == (255, 255, 0)


def test_invalid_graph_is_not_run_and_problems_point_at_nodes(window, chain_file, qtbot):
    assert window.open_file(str(chain_file), ask=False)
    window.scene.push(commands.disconnect(window.doc, "2", "image"))
    assert not window.run_graph()
    assert not window.runner.busy
    item = window.scene.items_by_id["2"]
    assert item.problems and "image" in item.problems[0]
    assert "image" in item.toolTip()
    panel = window.problems
    assert panel.count() >= 1 and "node 2" in panel.item(0).text()
    window.scene.clearSelection()
    rect = panel.visualItemRect(panel.item(0))
    QTest.mouseClick(panel.viewport(), Qt.LeftButton, Qt.NoModifier, rect.center())
    assert window.scene.selected_ids() == ["2"]
    # fixing it clears the marks (re-checked shortly after the edit)
    window.doc.undo_stack.undo()
    qtbot.waitUntil(lambda: not item.problems and window.problems.count() == 0, timeout=3000)
    assert window.run_graph()
    _wait_idle(qtbot, window)
    assert not item.problems


def test_run_queue_runs_one_after_another(window, chain_file, qtbot):
    assert window.open_file(str(chain_file), ask=False)
    finished = []
    window.runner.runFinished.connect(lambda n, s, i: finished.append((n, s)))
    assert window.run_graph() and window.run_graph() and window.run_graph()
    assert window.runner.pending() >= 1
    _wait_idle(qtbot, window)
    assert [s for _, s in finished] == ["ok", "ok", "ok"]
    assert [n for n, _ in finished] == sorted(n for n, _ in finished)


# -- progress, previews and cancel with a slow node (defined here, registered like a plugin) --

@node("SlowSteps", category="testing", output=True, deterministic=False,
      inputs=[Input.link("image", T.IMAGE), Input.int("steps", 400, min=1, max=10000)])
def slow_steps(ctx, image, steps):
    for i in range(steps):
        time.sleep(0.005)
        ctx.progress(i + 1, steps, preview=image if i % 10 == 0 else None)
    ctx.ui(images=[])
    return {}


@pytest.fixture
def slow_engine(tmp_path):
    reg = NodeRegistry().discover(plugins=False, user_dirs=[])
    reg.register(slow_steps, "tests")
    return Engine(registry=reg, input_dir=tmp_path / "input", output_dir=tmp_path / "output", device="cpu")


def test_progress_previews_and_cancel(make_window, slow_engine, red_png, qtbot):
    window = make_window(slow_engine)
    a = window.add_node("LoadImage", __import__("PySide6.QtCore", fromlist=["QPointF"]).QPointF(0, 0),
                        inputs={"image": str(red_png)})
    s = window.add_node("SlowSteps", __import__("PySide6.QtCore", fromlist=["QPointF"]).QPointF(300, 0))
    window.scene.push(commands.connect(window.doc, a, "image", s, "image"))
    item = window.scene.items_by_id[s]
    assert window.run_graph()
    qtbot.waitUntil(lambda: item.progress is not None and item.progress[0] >= 3, timeout=20000)
    assert item.state == "running"
    assert item.preview is not None and item.preview.width() == 32
    window.view.setFocus()
    QTest.keyClick(window.view, Qt.Key_Escape)  # Esc on the canvas cancels
    _wait_idle(qtbot, window)
    assert window.last_status == "cancelled"
    assert item.progress is None or item.progress[0] < 400
