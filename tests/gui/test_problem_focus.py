"""Clicking a problem in the Problems panel shows its node: selected, in view and readable (zoomed
out, it was centred as a small box whose inputs could not be read)."""

from __future__ import annotations

from nodegen.gui.view import FIT_MIN_ZOOM
from tests.gui.conftest import add


def test_problem_click_shows_its_node_readably(window, qtbot):
    a = add(window, "ImageInvert", 0, 0)
    b = add(window, "ImageInvert", 3000, 1500)  # its image input is not linked: a problem
    window.view.set_zoom(0.2)
    window.validate_graph()
    row = next(i for i in range(window.problems.count()) if "ImageInvert" in window.problems.item(i).text())
    window.problems.itemClicked.emit(window.problems.item(row))
    nid = window.scene.selected_ids()[0]
    assert nid in (a, b)
    assert window.view.zoom() >= FIT_MIN_ZOOM
    assert window.view.visible_scene_rect().contains(window.scene.items_by_id[nid].sceneBoundingRect())
    assert window.view.hasFocus() or not window.isActiveWindow()
