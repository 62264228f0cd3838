"""Node layout edits by mouse: resize with the corner grip, collapse, reroute dots that move,
group titles, and refreshing dynamic choices (input images) from the engine."""

from __future__ import annotations

from PIL import Image
from PySide6.QtCore import QPointF, Qt
from PySide6.QtTest import QTest

from nodegen.gui import commands
from tests.gui.conftest import add, click, drag, port_point, show_points


def test_resize_with_corner_grip_is_one_step(window):
    nid = add(window, "ImageInvert", 0, 0)
    item = window.scene.items_by_id[nid]
    r = item.body_rect()
    grip = item.mapToScene(QPointF(r.width() - 4, r.height() - 4))
    count = window.doc.undo_stack.count()
    drag(window, grip, grip + QPointF(100, 60), steps=8)
    w, h = window.doc.nodes[nid]["ui"]["size"]
    assert abs(w - (r.width() + 100)) <= 2 and abs(h - (r.height() + 60)) <= 2
    assert window.doc.nodes[nid]["ui"]["pos"] == [0, 0]  # resizing did not move it
    assert window.doc.undo_stack.count() == count + 1
    assert abs(item.body_rect().width() - w) < 1
    window.doc.undo_stack.undo()
    assert "size" not in window.doc.nodes[nid]["ui"]
    assert abs(item.body_rect().width() - r.width()) < 1


def test_collapse_keeps_wires_attached(window):
    a = add(window, "LoadImage", 0, 0)
    b = add(window, "ImageBlend", 400, 0)
    window.scene.push(commands.connect(window.doc, a, "image", b, "image2"))
    window.scene.select_ids([b])
    window.view.setFocus()
    QTest.keyClick(window.view, Qt.Key_C, Qt.AltModifier)
    item = window.scene.items_by_id[b]
    assert window.doc.nodes[b]["ui"]["collapsed"] is True
    assert item.collapsed and item.body_rect().height() < 30
    end = window.scene.edges[(b, "image2")].path().pointAtPercent(1.0)
    assert end == item.port_scene_pos("in", "image2")
    assert abs(end.y() - item.scenePos().y()) < 30
    QTest.keyClick(window.view, Qt.Key_C, Qt.AltModifier)
    assert "collapsed" not in window.doc.nodes[b]["ui"]


def test_reroute_dot_moves_from_its_middle_and_connects_at_its_ends(window):
    a = add(window, "LoadImage", 0, 0)
    r = add(window, "Reroute", 300, 40)
    b = add(window, "ImageInvert", 500, 0)
    drag(window, port_point(window, a, "out", "image"), port_point(window, r, "in", "value"))
    drag(window, port_point(window, r, "out", "value"), port_point(window, b, "in", "image"))
    assert window.doc.nodes[b]["inputs"]["image"] == {"from": [r, "value"]}
    mid = window.scene.items_by_id[r].mapToScene(QPointF(20, 12))
    drag(window, mid, mid + QPointF(0, 100))
    assert window.doc.nodes[r]["ui"]["pos"] == [300, 140]


def test_group_title_rename_by_double_click(window, qtbot):
    a = add(window, "ImageInvert", 0, 0)
    window.scene.select_ids([a])
    window.group_selection()
    g = window.scene.group_items[0]
    p = g.mapToScene(QPointF(30, 10))
    show_points(window, p)
    QTest.mouseDClick(window.view.viewport(), Qt.LeftButton, Qt.NoModifier, window.view.mapFromScene(p))
    ed = window.scene.editor
    ed.selectAll()
    qtbot.keyClicks(ed, "Inputs")
    qtbot.keyClick(ed, Qt.Key_Return)
    assert window.doc.groups[0]["title"] == "Inputs"
    assert window.scene.group_items[0].title == "Inputs"


def test_refresh_recomputes_dynamic_choices(window, engine, tmp_path):
    nid = add(window, "LoadImage", 0, 0)
    Image.new("RGB", (8, 8)).save(tmp_path / "input" / "new_image.png")
    window.actions_by_name["refresh"].trigger()
    click(window, window.scene.items_by_id[nid].mapToScene(window.scene.items_by_id[nid].widget_rect("image").center()))
    menu = window.scene.active_menu
    texts = [a.text() for a in menu.actions()]
    assert "new_image.png" in texts and "Browse\u2026" in texts
    next(a for a in menu.actions() if a.text() == "new_image.png").trigger()
    menu.close()
    assert window.doc.nodes[nid]["inputs"]["image"] == "new_image.png"
    assert window.scene.items_by_id[nid].source_image.width() == 8


def test_closing_with_changes_asks(window):
    add(window, "Note", 0, 0)
    answers = []
    window.ask_save_changes = lambda: answers.append(1) or "cancel"
    window.close()
    assert answers and window.isVisible()
    window.ask_save_changes = lambda: "discard"
