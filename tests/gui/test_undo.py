"""Undo/redo give back exactly the same document (dict and JSON text, unknown fields included),
moves by mouse are one step, copy/paste works between two windows, groups move their nodes."""

from __future__ import annotations

import json

from PySide6.QtCore import QPointF

from nodegen.gui import commands
from tests.gui.conftest import add, drag, port_point


def _state(window) -> str:
    return window.doc.to_json()  # key order matters too


def test_every_kind_of_edit_undoes_and_redoes_to_the_identical_document(window, chain_file):
    assert window.open_file(str(chain_file), ask=False)
    doc, stack = window.doc, window.doc.undo_stack
    states = [_state(window)]

    def step(fn):
        fn()
        states.append(_state(window))
        assert states[-1] != states[-2], "each edit changes the document"

    step(lambda: add(window, "ImageScaleBy", 300, 300))
    new = max(doc.nodes, key=int)
    step(lambda: drag(window, port_point(window, "1", "out", "image"), port_point(window, new, "in", "image")))
    step(lambda: window.scene.push(commands.set_value(doc, new, "scale_by", 2.0)))
    step(lambda: window.scene.push(commands.set_field(doc, ["2"], "title", "Invert!", "Rename")))
    window.scene.select_ids(["2", "3"])
    step(lambda: window.toggle_mode("bypass"))
    step(lambda: window.toggle_mode("muted"))
    step(lambda: window.set_color("#2b4d33"))
    step(window.toggle_collapse)
    step(window.group_selection)
    step(lambda: window.scene.push(commands.toggle_port(doc, new, "scale_by", 1.0)))
    window.scene.select_ids(["1", new])
    step(lambda: window.align("top"))
    step(window.duplicate)
    window.scene.select_ids(["2"])
    step(window.delete_selected)
    item = window.scene.items_by_id["1"]
    title = item.mapToScene(QPointF(60, 10))
    step(lambda: drag(window, title, title + QPointF(150, 90)))
    assert stack.count() == len(states) - 1
    for i in range(len(states) - 1, 0, -1):
        stack.undo()
        assert _state(window) == states[i - 1], f"undo of step {i} ({stack.text(i - 1)})"
    assert json.loads(_state(window)) == json.loads(chain_file.read_text())
    for i in range(1, len(states)):
        stack.redo()
        assert _state(window) == states[i], f"redo of step {i}"
    # the canvas follows the document
    assert set(window.scene.items_by_id) == set(doc.nodes)
    assert set(window.scene.edges) == {(d, i) for _, _, d, i in doc.links()}


def test_node_drag_is_one_undo_step_and_updates_wires(window):
    a = add(window, "LoadImage", 0, 0)
    b = add(window, "ImageInvert", 400, 0)
    window.scene.push(commands.connect(window.doc, a, "image", b, "image"))
    edge = window.scene.edges[(b, "image")]
    p0 = edge.path().pointAtPercent(1.0)
    count = window.doc.undo_stack.count()
    title = window.scene.items_by_id[b].mapToScene(QPointF(80, 10))
    drag(window, title, title + QPointF(100, 200), steps=10)
    assert window.doc.undo_stack.count() == count + 1
    assert window.doc.nodes[b]["ui"]["pos"] == [500, 200]
    assert edge.path().pointAtPercent(1.0) == p0 + QPointF(100, 200)
    window.doc.undo_stack.undo()
    assert window.doc.nodes[b]["ui"]["pos"] == [400, 0]
    assert window.scene.items_by_id[b].pos() == QPointF(400, 0)


def test_copy_paste_between_two_windows(make_window):
    w1, w2 = make_window(), make_window()
    a = add(w1, "LoadImage", 0, 0)
    b = add(w1, "ImageInvert", 300, 0)
    w1.scene.push(commands.connect(w1.doc, a, "image", b, "image"))
    w1.scene.push(commands.set_value(w1.doc, a, "image", "cat.png"))
    w1.scene.select_ids([a, b])
    assert w1.copy() == 2
    add(w2, "Note", 0, 0)
    w1.scene.select_ids([b])  # b alone: its link comes from node a of *another* document
    w1.copy()
    (alone,) = w2.paste(QPointF(0, 300))
    assert "image" not in w2.doc.nodes[alone]["inputs"]  # w2's node with a's id is unrelated
    w2.doc.undo_stack.undo()
    w1.scene.select_ids([a, b])
    w1.copy()
    pasted = w2.paste(QPointF(1000, 500))
    assert len(pasted) == 2
    nodes = w2.doc.nodes
    la, lb = sorted(pasted, key=lambda n: nodes[n]["type"] != "LoadImage")
    assert nodes[la]["type"] == "LoadImage" and nodes[la]["inputs"]["image"] == "cat.png"
    assert nodes[lb]["inputs"]["image"] == {"from": [la, "image"]}
    assert nodes[la]["ui"]["pos"] == [1000, 500] and nodes[lb]["ui"]["pos"] == [1300, 500]
    assert set(w2.scene.selected_ids()) == set(pasted)
    w2.doc.undo_stack.undo()
    assert [n["type"] for n in nodes.values()] == ["Note"]


def test_cut_then_paste_restores_links_to_outside_nodes(window):
    a = add(window, "LoadImage", 0, 0)
    b = add(window, "ImageInvert", 300, 0)
    window.scene.push(commands.connect(window.doc, a, "image", b, "image"))
    window.scene.select_ids([b])
    window.cut()
    assert b not in window.doc.nodes
    (plain,) = window.paste(QPointF(300, 0))  # Ctrl+V: as ComfyUI, without the outside links
    assert "image" not in window.doc.nodes[plain]["inputs"]
    window.doc.undo_stack.undo()
    (nb,) = window.paste(QPointF(300, 0), keep_links=True)  # Ctrl+Shift+V: with them
    assert window.doc.nodes[nb]["inputs"]["image"] == {"from": [a, "image"]}


def test_group_title_drag_moves_its_nodes(window):
    a = add(window, "LoadImage", 0, 0)
    b = add(window, "ImageInvert", 2000, 0)
    window.scene.select_ids([a])
    window.group_selection()
    g = window.scene.group_items[0]
    title = g.mapToScene(QPointF(40, 10))
    count = window.doc.undo_stack.count()
    drag(window, title, title + QPointF(50, 100))
    assert window.doc.undo_stack.count() == count + 1
    assert window.doc.nodes[a]["ui"]["pos"] == [50, 100]
    assert window.doc.nodes[b]["ui"]["pos"] == [2000, 0]
    bx, by = window.doc.groups[0]["bounding"][:2]
    window.doc.undo_stack.undo()
    assert window.doc.groups[0]["bounding"][:2] == [bx - 50, by - 100]
    assert window.doc.nodes[a]["ui"]["pos"] == [0, 0]
