"""In a small window the minimap (180 x 110) covered most of the canvas: it steps aside when the
canvas is too small for it and comes back when there is room; M still hides and shows it."""

from __future__ import annotations

from nodegen.gui.view import MINIMAP_ROOM


def test_minimap_gives_way_on_a_small_canvas(window, qtbot):
    mm = window.view.minimap
    assert mm.isVisible()
    window.resize(800, 550)
    qtbot.waitUntil(lambda: window.view.viewport().width() < MINIMAP_ROOM * mm.width())
    assert not mm.isVisible()
    window.resize(1400, 900)
    qtbot.waitUntil(lambda: window.view.viewport().width() >= MINIMAP_ROOM * mm.width())
    assert mm.isVisible()
    window.actions_by_name["minimap"].trigger()
    assert not mm.isVisible()
    window.resize(1401, 900)
    qtbot.wait(10)
    assert not mm.isVisible()  # the user's choice stays
    window.actions_by_name["minimap"].trigger()
    assert mm.isVisible()
