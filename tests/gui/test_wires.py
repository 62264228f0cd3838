"""Connecting ports by dragging with the mouse: compatible links are made, incompatible ones are
refused with a reason, re-dragging moves a wire, dragging it off removes it, and a wire dropped on
empty canvas opens the search filtered to nodes that take its type."""

from __future__ import annotations

from PySide6.QtCore import QPointF

from tests.gui.conftest import add, drag, port_point


def test_drag_output_to_compatible_input_connects(window):
    a = add(window, "LoadImage", 0, 0)
    b = add(window, "ImageInvert", 400, 0)
    drag(window, port_point(window, a, "out", "image"), port_point(window, b, "in", "image"))
    assert window.doc.nodes[b]["inputs"]["image"] == {"from": [a, "image"]}
    assert (b, "image") in window.scene.edges
    # one undo step removes the link again
    window.doc.undo_stack.undo()
    assert "image" not in window.doc.nodes[b]["inputs"]
    assert (b, "image") not in window.scene.edges


def test_drag_from_input_to_output_connects(window):
    a = add(window, "LoadImage", 0, 0)
    b = add(window, "ImageInvert", 400, 0)
    drag(window, port_point(window, b, "in", "image"), port_point(window, a, "out", "image"))
    assert window.doc.nodes[b]["inputs"]["image"] == {"from": [a, "image"]}


def test_incompatible_link_is_refused_with_reason(window):
    a = add(window, "LoadImage", 0, 0)
    b = add(window, "ImageInvert", 400, 0)
    messages = []
    window.scene.message.connect(messages.append)
    before = window.doc.dumps()
    drag(window, port_point(window, a, "out", "mask"), port_point(window, b, "in", "image"))
    assert window.doc.dumps() == before
    assert "image" not in window.doc.nodes[b]["inputs"]
    assert any("MASK" in m and "IMAGE" in m for m in messages), messages
    assert "MASK" in window.statusBar().currentMessage()


def test_compatible_ports_highlight_while_dragging(window):
    a = add(window, "LoadImage", 0, 0)
    b = add(window, "ImageInvert", 400, 0)
    item_a, item_b = window.scene.items_by_id[a], window.scene.items_by_id[b]
    window.scene.start_wire(item_a, "out", "mask")
    drag_info = window.scene.drag_info()
    assert not window.scene.can_accept(drag_info, item_b, "in", "image")
    window.scene.cancel_wire()
    window.scene.start_wire(item_a, "out", "image")
    assert window.scene.can_accept(window.scene.drag_info(), item_b, "in", "image")
    window.scene.cancel_wire()


def test_redrag_moves_wire_and_drag_off_removes_it(window):
    a = add(window, "LoadImage", 0, 0)
    b = add(window, "ImageInvert", 400, 0)
    c = add(window, "ImageInvert", 400, 300)
    drag(window, port_point(window, a, "out", "image"), port_point(window, b, "in", "image"))
    # pick the wire up at b's input and drop it on c's input
    drag(window, port_point(window, b, "in", "image"), port_point(window, c, "in", "image"))
    assert "image" not in window.doc.nodes[b]["inputs"]
    assert window.doc.nodes[c]["inputs"]["image"] == {"from": [a, "image"]}
    # drag it off into empty canvas: removed
    empty = QPointF(200, 600)
    drag(window, port_point(window, c, "in", "image"), empty)
    assert "image" not in window.doc.nodes[c]["inputs"]
    window.doc.undo_stack.undo()
    assert window.doc.nodes[c]["inputs"]["image"] == {"from": [a, "image"]}


def test_wire_dropped_on_empty_canvas_searches_compatible_nodes(window, qtbot):
    a = add(window, "LoadImage", 0, 0)
    empty = QPointF(500, 400)
    drag(window, port_point(window, a, "out", "mask"), empty)
    search = window.search
    assert search.isVisible()
    types = search.types()
    assert types and all(window.schema.first_input_for(window.schema.get(t), "MASK") for t in types)
    assert "ImageInvert" not in types  # takes IMAGE, not MASK
    qtbot.keyClicks(search.edit, "scribble")
    assert search.types()[0] == "ScribbleFromMask"
    qtbot.keyClick(search.edit, "\r")
    new = [nid for nid, n in window.doc.nodes.items() if n["type"] == "ScribbleFromMask"]
    assert len(new) == 1
    assert window.doc.nodes[new[0]]["inputs"]["mask"] == {"from": [a, "mask"]}
    # adding and connecting is one undo step
    window.doc.undo_stack.undo()
    assert list(window.doc.nodes) == [a]


def test_wire_dropped_on_widget_row_converts_it_to_a_port(window):
    a = add(window, "Int", 0, 0)
    b = add(window, "ImageCrop", 400, 0)
    item_b = window.scene.items_by_id[b]
    target = item_b.mapToScene(item_b.widget_rect("width").center())
    drag(window, port_point(window, a, "out", "value"), target)
    node = window.doc.nodes[b]
    assert node["inputs"]["width"] == {"from": [a, "value"]}
    assert "width" in node["ui"]["ports"]
    assert item_b.widget_rect("width") is None  # now drawn as a port


def test_reroute_on_wire(window):
    a = add(window, "LoadImage", 0, 0)
    b = add(window, "ImageInvert", 400, 0)
    window.scene.push(__import__("gui.commands", fromlist=["x"]).connect(window.doc, a, "image", b, "image"))
    edge = window.scene.edges[(b, "image")]
    window.scene.insert_reroute(edge, QPointF(200, 100))
    rr = [nid for nid, n in window.doc.nodes.items() if n["type"] == "Reroute"][0]
    assert window.doc.nodes[rr]["inputs"]["value"] == {"from": [a, "image"]}
    assert window.doc.nodes[b]["inputs"]["image"] == {"from": [rr, "value"]}
    # the reroute's wire takes the colour of the type flowing through it
    assert window.scene.items_by_id[rr].port_type("out", "value") == "IMAGE"
    assert window.scene.check_link(("x", "out", "value", "IMAGE"), window.scene.items_by_id[b], "in", "image")[0]
    window.doc.undo_stack.undo()
    assert rr not in window.doc.nodes and window.doc.nodes[b]["inputs"]["image"] == {"from": [a, "image"]}
