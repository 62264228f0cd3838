"""The quick search popup stays on the screen when a wire is dropped near its edge (it ran off the
bottom of the screen), and its list shows each entry whole, with no sideways scrolling ("CLIPMergeAdd
- advanced/model_merging" was cut off behind a horizontal scroll bar)."""

from __future__ import annotations

from PySide6.QtCore import QPointF


def test_quick_search_fits_the_screen_and_its_entries(window, qtbot):
    screen = window.screen().availableGeometry()
    search = window.search
    search.open_at(QPointF(0, 0), screen.bottomRight(), {"accepts": "CLIP"})
    qtbot.waitUntil(search.isVisible)
    assert screen.contains(search.frameGeometry()), (screen, search.frameGeometry())
    qtbot.wait(10)
    assert search.list.sizeHintForColumn(0) <= search.list.viewport().width()
    search.hide()
