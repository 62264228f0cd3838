"""An empty canvas (the first start, File > New) tells a newcomer how to begin; the hint goes as
soon as there is a node. The keys list (F1) names Escape for cancelling a run."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRect


def _light_pixels(window) -> int:
    img = window.view.viewport().grab().toImage()
    band = QRect(img.width() // 4, img.height() // 2 - 30, img.width() // 2, 60)
    return sum(1 for x in range(band.left(), band.right(), 2) for y in range(band.top(), band.bottom(), 2)
               if img.pixelColor(x, y).lightness() > 100)


def test_empty_canvas_shows_how_to_start(window):
    assert "Tab" in window.view.empty_hint()
    assert _light_pixels(window) > 20
    window.add_node("ImageInvert", QPointF(50000 - 10, 0))  # far out of sight
    window.view.viewport().update()
    assert window.view.empty_hint() == ""
    assert _light_pixels(window) == 0
    assert "Esc" in window.shortcut_text()
