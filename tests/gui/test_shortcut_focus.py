"""Keys that edit the canvas act only when the canvas has the focus: Backspace or Delete pressed in
the node palette, the queue or the gallery must not delete the nodes selected on the canvas (they
did), and Ctrl+A there selects in that list, not every node. The menus still work from anywhere,
and adding a node from the palette hands the keyboard to the canvas, where the new node is."""

from __future__ import annotations

from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QDropEvent
from PySide6.QtTest import QTest

from tests.gui.conftest import add


def test_canvas_keys_do_nothing_outside_the_canvas(window, qtbot):
    a = add(window, "ImageInvert", 0, 0)
    b = add(window, "ImageInvert", 0, 300)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    for widget in (window.palette.tree, window.queue_panel.tree, window.gallery, window.problems):
        window.scene.select_ids([a, b])
        widget.setFocus()
        QTest.keyClick(widget, Qt.Key_Backspace)
        QTest.keyClick(widget, Qt.Key_Delete)
        assert set(window.doc.nodes) == {a, b}, widget
        QTest.keyClick(widget, Qt.Key_D, Qt.ControlModifier)
        assert set(window.doc.nodes) == {a, b}, widget
    # from the menu (a mouse click) Delete still works wherever the focus is
    window.actions_by_name["delete"].trigger()
    assert window.doc.nodes == {}
    # on the canvas the keys work
    window.doc.undo_stack.undo()
    window.scene.select_ids([a])
    window.view.setFocus()
    QTest.keyClick(window.view, Qt.Key_Delete)
    assert set(window.doc.nodes) == {b}


def test_adding_from_the_palette_gives_the_canvas_the_keys(window, qtbot):
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    pal = window.palette
    pal.filter.setFocus()
    qtbot.keyClicks(pal.filter, "imginv")
    qtbot.keyClick(pal.filter, Qt.Key_Return)
    (new,) = window.doc.nodes
    assert window.view.hasFocus()
    QTest.keyClick(window.view, Qt.Key_Delete)
    assert window.doc.nodes == {}


def test_a_node_dragged_from_the_palette_gives_the_canvas_the_keys(window, qtbot):
    """Dropped on the canvas from the palette (the drag leaves the focus in the palette): Delete
    must remove the node just dropped."""
    from nodegen.gui.palette import mime_for

    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    window.palette.tree.setFocus()
    md = mime_for("ImageInvert")
    window.view.dropEvent(QDropEvent(QPointF(200, 200), Qt.CopyAction, md, Qt.LeftButton, Qt.NoModifier))
    (new,) = window.doc.nodes
    assert window.view.hasFocus()
    QTest.keyClick(window.view, Qt.Key_Delete)
    assert window.doc.nodes == {}


def test_an_opened_graph_has_the_keys(window, qtbot, chain_file):
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    window.gallery.setFocus()
    assert window.open_file(str(chain_file), ask=False)
    assert window.view.hasFocus()
