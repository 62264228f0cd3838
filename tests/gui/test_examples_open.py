"""Issue 17.2 and 17.3: a graph given on the command line is fitted once the window is shown and
laid out (not at 1 %); fitting never goes below the zoom where widgets and port names are drawn
(it pans to the graph's start instead); the example graphs leave room for their image previews."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QRectF

from nodegen.gui.node_item import IMAGE_MAX_H
from nodegen.gui.node_paint import DETAIL_LOD
from nodegen.gui.view import FIT_MIN_ZOOM

GRAPHS = sorted((Path(__file__).resolve().parents[2] / "graphs").glob("*.json"))


def _shows_images(item) -> bool:
    """Nodes that draw an image under their widgets: image outputs, image files, and the nodes
    that show live previews while they run (samplers, style transfer)."""
    info = item.info
    return ((info.is_output and any(s["type"] == "IMAGE" for s in info.inputs))
            or any(s.get("file_kind") == "image" for s in info.inputs)
            or any(s["name"] in ("steps", "iterations") for s in info.inputs))


def reserved_rect(item) -> QRectF:
    """The node's body plus the room its largest image preview takes."""
    r = item.sceneBoundingRect().adjusted(6, 6, -6, -6)
    if _shows_images(item) and item.image_rect().isNull():
        r.setHeight(r.height() + IMAGE_MAX_H + 8)
    return r


def test_graph_opened_before_show_is_fitted_after_layout(engine, gui_state, dark_app, qtbot):
    """What ``python main.py gui graphs/txt2img.json`` does: open, then show."""
    from nodegen.gui.mainwindow import MainWindow

    window = MainWindow(engine)
    qtbot.addWidget(window)
    assert window.open_file(str(GRAPHS[0].parent / "txt2img.json"), ask=False)
    window.show()
    qtbot.waitExposed(window)
    qtbot.waitUntil(lambda: window.view.zoom() >= FIT_MIN_ZOOM, timeout=2000)
    vis = window.view.visible_scene_rect()
    assert vis.intersects(window.scene.nodes_rect())
    # the desktop resizes the window after showing it: the fit follows until the user moves the view
    window.resize(1100, 760)
    qtbot.waitUntil(lambda: window.view.visible_scene_rect() != vis, timeout=2000)
    first = window.scene.items_by_id["1"].sceneBoundingRect()
    assert window.view.visible_scene_rect().contains(first)
    window.view.zoom_by(1.25)
    z = window.view.zoom()
    window.resize(1200, 800)
    assert window.view.zoom() == pytest.approx(z)
    window.doc.undo_stack.setClean()
    window.runner.shutdown()
    window.close()


def test_fit_floor_pans_to_the_start_of_a_wide_graph(window):
    from PySide6.QtCore import QPointF

    assert FIT_MIN_ZOOM >= DETAIL_LOD
    a = window.add_node("ImageInvert", QPointF(0, 0))
    window.add_node("ImageInvert", QPointF(6000, 0))
    window.view.fit_all()
    assert window.view.zoom() == pytest.approx(FIT_MIN_ZOOM)
    assert window.view.visible_scene_rect().contains(window.scene.items_by_id[a].sceneBoundingRect())


@pytest.mark.parametrize("graph", GRAPHS, ids=[g.stem for g in GRAPHS])
def test_example_opens_readable_with_room_for_previews(window, graph):
    assert window.open_file(str(graph), ask=False)
    items = window.scene.items_by_id
    rects = {nid: reserved_rect(it) for nid, it in items.items()}
    overlaps = [(a, b) for a in rects for b in rects if a < b and rects[a].intersects(rects[b])]
    assert overlaps == [], f"{graph.name}: previews would run under the next node: {overlaps}"
    assert window.view.zoom() >= FIT_MIN_ZOOM
    leftmost = min(items.values(), key=lambda it: it.x())
    assert window.view.visible_scene_rect().contains(leftmost.sceneBoundingRect())
