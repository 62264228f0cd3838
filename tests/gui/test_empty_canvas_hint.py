"""An empty canvas (the first start, File > New) tells a newcomer how to begin; the hint goes as
soon as there is a node. The keys list (F1) names Escape for cancelling a run."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QPointF, QRect


def _light_pixels(window) -> int:
    img = window.view.viewport().grab().toImage()
    band = QRect(img.width() // 4, img.height() // 2 - 30, img.width() // 2, 60)
    return sum(1 for x in range(band.left(), band.right(), 2) for y in range(band.top(), band.bottom(), 2)
               if img.pixelColor(x, y).lightness() > 100)


class _Painted(QObject):
    """The regions the viewport repaints."""

    def __init__(self) -> None:
        super().__init__()
        self.regions = []

    def eventFilter(self, obj, event) -> bool:  # noqa: N802
        if event.type() == QEvent.Paint:
            self.regions.append(event.region().boundingRect())
        return False


def test_empty_canvas_shows_how_to_start(window, qtbot):
    assert "Tab" in window.view.empty_hint()
    assert _light_pixels(window) > 20
    painted = _Painted()
    vp = window.view.viewport()
    vp.installEventFilter(painted)
    qtbot.wait(20)
    painted.regions.clear()
    window.add_node("ImageInvert", QPointF(200, 200))
    qtbot.waitUntil(lambda: bool(painted.regions))
    qtbot.wait(20)
    vp.removeEventFilter(painted)
    # the whole hint is repainted away, not only where the new node is (it stayed half drawn)
    hint = QRect(vp.width() // 4, vp.height() // 2 - 20, vp.width() // 2, 40)
    assert any(r.contains(hint) for r in painted.regions), painted.regions
    window.add_node("ImageInvert", QPointF(50000 - 10, 0))  # far out of sight
    window.doc.undo_stack.undo()
    assert window.view.empty_hint() == ""
    assert _light_pixels(window) == 0
    assert "Esc" in window.shortcut_text()
