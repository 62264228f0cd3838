"""Issue 17.1: after a combo popup or a context menu the canvas must not believe a node drag is
going on. Tested the way it was found: open a combo and a context menu (real presses, releases
swallowed by the popups), then add a node from a wire drop, move, undo, open a file and save."""

from __future__ import annotations

import json

from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from tests.gui.conftest import drag, port_point, view_point, widget_point


def _press_only(window, scene_point: QPointF, button) -> None:
    """A press whose release never reaches the canvas (the popup it opens takes the mouse)."""
    QTest.mousePress(window.view.viewport(), button, Qt.NoModifier, view_point(window, scene_point))


def _close_popups() -> None:
    for _ in range(3):
        popup = QApplication.activePopupWidget()
        if popup is None:
            return
        popup.close()


def _pos(window, nid: str) -> tuple[float, float]:
    item = window.scene.items_by_id[nid]
    return (item.x(), item.y())


def test_popups_leave_no_drag_behind(window, chain_file, tmp_path, qtbot):
    assert window.open_file(str(chain_file), ask=False)
    scene = window.scene
    # a combo: press on the LoadImage file widget opens its menu
    _press_only(window, widget_point(window, "1", "image"), Qt.LeftButton)
    assert scene.active_menu is not None and scene.active_menu.isVisible()
    assert not scene.dragging and scene.mouseGrabberItem() is None
    scene.active_menu.close()
    # a context menu: right press on a node's title
    title = scene.items_by_id["2"].mapToScene(QPointF(40, 10))
    _press_only(window, title, Qt.RightButton)
    window.canvas_menu(window.view.mapFromScene(title))  # what the view's context-menu signal opens
    _close_popups()
    assert not scene.dragging and scene.press is None

    # add from a wire drop: the node lands at the drop point, not at a fixed spot
    drop = QPointF(520, 420)
    drag(window, port_point(window, "2", "out", "image"), drop)
    search = window.search
    assert search.isVisible()
    qtbot.keyClicks(search.edit, "ImageInvert")
    qtbot.keyClick(search.edit, "\r")
    new = max(window.doc.nodes, key=int)
    assert window.doc.nodes[new]["ui"]["pos"] == [520, 420]
    assert _pos(window, new) == (520, 420)

    # move by dragging the title, then undo: the node goes back
    before = _pos(window, "3")
    grip = scene.items_by_id["3"].mapToScene(QPointF(60, 10))
    drag(window, grip, grip + QPointF(150, 90))
    assert window.doc.nodes["3"]["ui"]["pos"] == [round(before[0] + 150), round(before[1] + 90)]
    assert not scene.dragging
    window.doc.undo_stack.undo()
    assert window.doc.nodes["3"]["ui"]["pos"] == [round(before[0]), round(before[1])]
    assert _pos(window, "3") == before

    # another combo left open, then opening a file: every node stands at its saved position
    _press_only(window, widget_point(window, "1", "image"), Qt.LeftButton)
    assert window.open_file(str(chain_file), ask=False)
    _close_popups()
    saved = json.loads(chain_file.read_text())["nodes"]
    for nid, n in saved.items():
        assert _pos(window, nid) == tuple(n["ui"]["pos"])

    # the next click records no move, and saving writes the positions the user sees
    QTest.mouseClick(window.view.viewport(), Qt.LeftButton, Qt.NoModifier,
                     view_point(window, scene.items_by_id["2"].mapToScene(QPointF(60, 10))))
    assert window.doc.undo_stack.count() == 0
    out = tmp_path / "saved.json"
    assert window.save_as(str(out))
    written = json.loads(out.read_text())["nodes"]
    assert {nid: n["ui"]["pos"] for nid, n in written.items()} == {
        nid: n["ui"]["pos"] for nid, n in saved.items()}


def test_focus_loss_and_ungrab_end_a_drag(window, chain_file, qtbot):
    """A drag whose release never comes (focus moved away, grab lost) is ended and its move kept
    as one undo step, so the next edit does not record a wrong move."""
    assert window.open_file(str(chain_file), ask=False)
    scene, vp = window.scene, window.view.viewport()
    grip = scene.items_by_id["2"].mapToScene(QPointF(60, 10))
    a = view_point(window, grip)
    QTest.mousePress(vp, Qt.LeftButton, Qt.NoModifier, a)
    QTest.mouseMove(vp, a + QPointF(40, 0).toPoint())
    assert scene.dragging
    scene.mouseGrabberItem().ungrabMouse()  # what Qt does when a popup or another window grabs
    assert not scene.dragging and scene.press is None
    qtbot.waitUntil(lambda: window.doc.undo_stack.count() == 1, timeout=2000)  # the move is kept
    # a stale press record with the button up is dropped at the next move
    scene.begin_press(scene.items_by_id["2"])
    move = QMouseEvent(QEvent.MouseMove, QPointF(a), vp.mapToGlobal(QPointF(a)), Qt.NoButton, Qt.NoButton,
                       Qt.NoModifier)
    QApplication.sendEvent(vp, move)
    assert scene.press is None
    # undo and the document agree about where node 2 is
    pos = window.doc.nodes["2"]["ui"]["pos"]
    assert (scene.items_by_id["2"].x(), scene.items_by_id["2"].y()) == tuple(pos)


def test_group_drag_cut_short_is_recorded(window, qtbot):
    """A group moved by its title and then losing the mouse keeps its move as an undo step."""
    a = window.add_node("LoadImage", QPointF(0, 0))
    window.scene.select_ids([a])
    window.group_selection()
    scene, vp = window.scene, window.view.viewport()
    title = scene.group_items[0].mapToScene(QPointF(40, 10))
    p = view_point(window, title)
    count = window.doc.undo_stack.count()
    QTest.mousePress(vp, Qt.LeftButton, Qt.NoModifier, p)
    QTest.mouseMove(vp, p + QPointF(30, 20).toPoint())
    QTest.mouseMove(vp, p + QPointF(60, 40).toPoint())
    scene.mouseGrabberItem().ungrabMouse()
    qtbot.waitUntil(lambda: window.doc.undo_stack.count() == count + 1, timeout=2000)
    item = scene.items_by_id[a]
    assert [item.x(), item.y()] == window.doc.nodes[a]["ui"]["pos"] != [0, 0]


def test_opening_a_file_mid_drag_moves_nothing_in_the_new_one(window, chain_file):
    assert window.open_file(str(chain_file), ask=False)
    scene, vp = window.scene, window.view.viewport()
    p = view_point(window, scene.items_by_id["2"].mapToScene(QPointF(60, 10)))
    QTest.mousePress(vp, Qt.LeftButton, Qt.NoModifier, p)
    QTest.mouseMove(vp, p + QPointF(80, 30).toPoint())
    assert scene.dragging
    assert window.open_file(str(chain_file), ask=False)  # e.g. from the recent-files shortcut
    QApplication.processEvents()
    assert window.doc.undo_stack.count() == 0 and not scene.dragging
    saved = json.loads(chain_file.read_text())["nodes"]
    for nid, n in saved.items():
        assert _pos(window, nid) == tuple(n["ui"]["pos"])
    QTest.mouseRelease(vp, Qt.LeftButton, Qt.NoModifier, p + QPointF(80, 30).toPoint())
    assert window.doc.undo_stack.count() == 0
