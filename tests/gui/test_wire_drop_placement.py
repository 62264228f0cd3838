"""Where a node added from a dropped wire lands: a wire dragged out of an output makes a node to its
right (its top-left at the drop point); a wire dragged back out of an input makes the node that feeds
it, to the left of the drop point with its output there (it used to land right of the drop point, on
top of the node it feeds). Either way the view scrolls so the new node is seen whole (dropped near
the edge of the canvas, it was nine-tenths out of sight)."""

from __future__ import annotations

from PySide6.QtCore import QPointF, Qt
from PySide6.QtTest import QTest

from tests.gui.conftest import add, drag, port_point


def _choose(window, qtbot, text: str) -> str:
    assert window.search.isVisible()
    qtbot.keyClicks(window.search.edit, text)
    qtbot.keyClick(window.search.edit, "\r")
    return max(window.doc.nodes, key=int)


def test_node_made_for_an_input_lands_left_of_the_drop(window, qtbot):
    inv = add(window, "ImageInvert", 600, 0)
    drop = QPointF(560, 20)  # just left of the node, as a user drops a wire dragged out of its input
    drag(window, port_point(window, inv, "in", "image"), drop)
    new = _choose(window, qtbot, "ImageInvert")
    assert window.doc.nodes[inv]["inputs"]["image"] == {"from": [new, "image"]}
    item, target = window.scene.items_by_id[new], window.scene.items_by_id[inv]
    assert item.sceneBoundingRect().right() <= drop.x() + 8
    assert not item.sceneBoundingRect().intersects(target.sceneBoundingRect())
    out = item.port_scene_pos("out", "image")
    assert abs(out.x() - drop.x()) < 12 and abs(out.y() - drop.y()) < 2


def test_node_dropped_near_the_edge_is_scrolled_into_view(window, qtbot):
    inv = add(window, "ImageInvert", 0, 0)
    window.view.fit_rect(window.scene.items_by_id[inv].sceneBoundingRect())
    vis = window.view.visible_scene_rect()
    drop = QPointF(vis.right() - 15, vis.center().y())
    vp, view = window.view.viewport(), window.view  # the mouse as is, without refitting the view
    a, b = view.mapFromScene(port_point(window, inv, "out", "image")), view.mapFromScene(drop)
    QTest.mousePress(vp, Qt.LeftButton, Qt.NoModifier, a)
    for i in range(1, 7):
        QTest.mouseMove(vp, a + (b - a) * (i / 6))
    QTest.mouseRelease(vp, Qt.LeftButton, Qt.NoModifier, b)
    drop = view.mapToScene(b)
    new = _choose(window, qtbot, "ImageInvert")
    assert window.doc.nodes[new]["ui"]["pos"] == [round(drop.x()), round(drop.y())]
    assert window.view.visible_scene_rect().contains(window.scene.items_by_id[new].sceneBoundingRect())


def test_a_dropped_wire_offers_the_nodes_that_continue_it_first(window, qtbot):
    """An IMAGE output dropped on empty canvas lists Preview and Save (they end the branch with
    it) before the long alphabetical rest, so Enter alone previews the image."""
    inv = add(window, "ImageInvert", 0, 0)
    drag(window, port_point(window, inv, "out", "image"), QPointF(400, 40))
    assert window.search.isVisible()
    assert window.search.types()[:2] == ["PreviewImage", "SaveImage"]
    qtbot.keyClick(window.search.edit, "\r")
    new = max(window.doc.nodes, key=int)
    assert window.doc.nodes[new]["type"] == "PreviewImage"
    assert window.doc.nodes[new]["inputs"]["images"] == {"from": [inv, "image"]}
