"""A group's resize corner is drawn (it was an invisible hot spot), the cursor changes over it,
and a resize by it is one undo step."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtTest import QTest

from tests.gui.conftest import add, drag, show_points


def _brightest(img: QImage, rect) -> int:
    return max(QColor(img.pixel(x, y)).lightness() for x in range(rect.left(), rect.right())
               for y in range(rect.top(), rect.bottom()))


def test_the_group_resize_corner_is_drawn_and_resizes_in_one_step(window):
    a = add(window, "ImageInvert", 0, 0)
    window.scene.select_ids([a])
    window.group_selection()
    g = window.scene.group_items[0]
    # drawn: the grip corner holds strokes brighter than the frame's fill beside it
    img = QImage(int(g.w), int(g.h), QImage.Format_ARGB32)
    img.fill(QColor("#202124"))
    painter = QPainter(img)
    g.paint(painter, None)
    painter.end()
    grip = g.grip_rect().toRect().adjusted(2, 2, -3, -3)  # inside the frame's border
    beside = grip.translated(-3 * grip.width(), 0)
    assert _brightest(img, grip) > _brightest(img, beside) + 40
    # the cursor says "resize" over it, not elsewhere on the frame
    corner = g.mapToScene(g.grip_rect().center())
    show_points(window, corner, g.mapToScene(QPointF(10, 10)))
    vp = window.view.viewport()
    QTest.mouseMove(vp, window.view.mapFromScene(g.mapToScene(QPointF(40, 10))))
    QTest.mouseMove(vp, window.view.mapFromScene(corner))
    assert g.cursor().shape() == Qt.SizeFDiagCursor and vp.cursor().shape() == Qt.SizeFDiagCursor
    QTest.mouseMove(vp, window.view.mapFromScene(g.mapToScene(QPointF(40, 10))))
    assert vp.cursor().shape() != Qt.SizeFDiagCursor
    # a resize by it is one undo step
    w0, h0 = window.doc.groups[0]["bounding"][2:]
    count = window.doc.undo_stack.count()
    drag(window, corner, corner + QPointF(80, 60))
    assert window.doc.undo_stack.count() == count + 1
    assert window.doc.groups[0]["bounding"][2:] == [w0 + 80, h0 + 60]
    window.doc.undo_stack.undo()
    assert window.doc.groups[0]["bounding"][2:] == [w0, h0]
    assert QRectF(*window.doc.groups[0]["bounding"]).isValid()
