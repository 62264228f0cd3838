"""Zoomed out below the zoom where widgets are drawn (they show as blank boxes), a drag on a node
moves the node: it used to scrub the number under the mouse (steps 20 -> 45, unseen) or open a menu
or an editor nobody could read."""

from __future__ import annotations

from PySide6.QtCore import QPointF, Qt
from PySide6.QtTest import QTest

from nodegen.gui.node_paint import DETAIL_LOD
from tests.gui.conftest import add, widget_point


def test_drag_on_a_blank_widget_moves_the_node(window):
    nid = add(window, "Int", 0, 0)
    item = window.scene.items_by_id[nid]
    view = window.view
    view.set_zoom(DETAIL_LOD * 0.8)
    view.centerOn(item)
    start = widget_point(window, nid, "value")
    a = view.mapFromScene(start)
    b = view.mapFromScene(start + QPointF(200, 100))
    vp = view.viewport()
    QTest.mousePress(vp, Qt.LeftButton, Qt.NoModifier, a)
    for i in range(1, 7):
        QTest.mouseMove(vp, a + (b - a) * (i / 6))
    QTest.mouseRelease(vp, Qt.LeftButton, Qt.NoModifier, b)
    assert "value" not in window.doc.nodes[nid]["inputs"]  # not scrubbed
    pos = window.doc.nodes[nid]["ui"]["pos"]
    assert abs(pos[0] - 200) < 8 and abs(pos[1] - 100) < 8
    assert window.scene.editor is None and window.scene.active_menu is None
