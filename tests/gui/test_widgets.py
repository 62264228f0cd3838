"""Editing inline widgets with the mouse and keyboard: arrows, scrubbing (one undo step), typing,
choices from a menu, checkboxes, text, the seed control, and turning a widget into a port."""

from __future__ import annotations

from PySide6.QtCore import QPointF, Qt
from PySide6.QtTest import QTest

from nodegen.gui import commands
from tests.gui.conftest import add, click, drag, show_points, widget_point


def test_int_arrows_and_scrub_drag_is_one_undo_step(window):
    nid = add(window, "Int", 0, 0)
    stack = window.doc.undo_stack
    base = stack.count()
    click(window, widget_point(window, nid, "value", "right"))
    click(window, widget_point(window, nid, "value", "right"))
    assert window.doc.nodes[nid]["inputs"]["value"] == 2
    click(window, widget_point(window, nid, "value", "left"))
    assert window.doc.nodes[nid]["inputs"]["value"] == 1
    assert stack.count() == base + 3
    # scrub: drag right across the value; many changes, one undo step
    c = widget_point(window, nid, "value")
    drag(window, c - QPointF(60, 0), c + QPointF(60, 0), steps=12)
    scrubbed = window.doc.nodes[nid]["inputs"]["value"]
    assert scrubbed > 5
    assert stack.count() == base + 4
    stack.undo()
    assert window.doc.nodes[nid]["inputs"]["value"] == 1


def test_float_typed_value_is_clamped_to_the_schema_range(window, qtbot):
    nid = add(window, "ImageBlend", 0, 0)
    spec = window.schema.get("ImageBlend").input("blend_factor")
    click(window, widget_point(window, nid, "blend_factor"))
    editor = window.scene.editor
    assert editor is not None
    editor.selectAll()
    qtbot.keyClicks(editor, "7.5")
    qtbot.keyClick(editor, Qt.Key_Return)
    assert window.scene.editor is None
    assert window.doc.nodes[nid]["inputs"]["blend_factor"] == spec["max"]
    from nodegen.gui.widgets import slider_fraction

    assert slider_fraction(spec, spec["max"]) == 1.0  # drawn as a full slider
    assert slider_fraction(window.schema.get("Int").input("value"), 5) is None  # a plain spin box


def test_choice_menu_and_bool_and_text(window, qtbot):
    nid = add(window, "ImageBlend", 0, 0)
    click(window, widget_point(window, nid, "blend_mode"))
    menu = window.scene.active_menu
    choices = window.schema.get("ImageBlend").input("blend_mode")["choices"]
    assert [a.text() for a in menu.actions()] == [str(c) for c in choices]
    menu.actions()[-1].trigger()
    menu.close()
    assert window.doc.nodes[nid]["inputs"]["blend_mode"] == choices[-1]

    b = add(window, "Boolean", 0, 300)
    before = window.scene.items_by_id[b].value_of("value")
    click(window, widget_point(window, b, "value"))
    assert window.doc.nodes[b]["inputs"]["value"] is (not before)

    s = add(window, "StringConcat", 400, 0)
    click(window, widget_point(window, s, "a"))
    qtbot.keyClicks(window.scene.editor, "hello")
    qtbot.keyClick(window.scene.editor, Qt.Key_Return)
    assert window.doc.nodes[s]["inputs"]["a"] == "hello"


def test_multiline_text_commits_on_ctrl_enter(window, qtbot):
    nid = add(window, "String", 0, 0)
    click(window, widget_point(window, nid, "value"))
    ed = window.scene.editor
    qtbot.keyClicks(ed, "a red")
    qtbot.keyClick(ed, Qt.Key_Return)
    qtbot.keyClicks(ed, "circle")
    assert "value" not in window.doc.nodes[nid]["inputs"]  # not committed yet
    qtbot.keyClick(ed, Qt.Key_Return, Qt.ControlModifier)
    assert window.doc.nodes[nid]["inputs"]["value"] == "a red\ncircle"


def test_escape_keeps_a_typed_prompt(window, qtbot):
    """Escape leaves a multi-line text (a prompt) with what was typed kept (it threw a long prompt
    away); Ctrl+Z takes it back. In a one-line field Escape still cancels (below)."""
    nid = add(window, "String", 0, 0)
    click(window, widget_point(window, nid, "value"))
    qtbot.keyClicks(window.scene.editor, "a lighthouse at dusk")
    qtbot.keyClick(window.scene.editor, Qt.Key_Escape)
    assert window.scene.editor is None
    assert window.doc.nodes[nid]["inputs"]["value"] == "a lighthouse at dusk"
    window.doc.undo_stack.undo()
    assert "value" not in window.doc.nodes[nid]["inputs"]


def test_escape_cancels_an_edit(window, qtbot):
    nid = add(window, "StringConcat", 0, 0)
    click(window, widget_point(window, nid, "a"))
    qtbot.keyClicks(window.scene.editor, "zzz")
    qtbot.keyClick(window.scene.editor, Qt.Key_Escape)
    assert window.scene.editor is None
    assert "a" not in window.doc.nodes[nid]["inputs"]


def test_seed_control_cycles_and_applies_after_run(window, red_png):
    nid = add(window, "Seed", 0, 0)
    window.scene.push(commands.set_value(window.doc, nid, "seed", 41))
    click(window, widget_point(window, nid, "seed", "control"))
    assert window.doc.nodes[nid]["ui"]["seed_control"] == {"seed": "increment"}
    window.apply_seed_control()
    assert window.doc.nodes[nid]["inputs"]["seed"] == 42
    click(window, widget_point(window, nid, "seed", "control"))
    assert window.doc.nodes[nid]["ui"]["seed_control"] == {"seed": "randomize"}
    click(window, widget_point(window, nid, "seed", "control"))
    assert window.doc.nodes[nid]["ui"]["seed_control"] == {"seed": "fixed"}
    window.apply_seed_control()
    assert window.doc.nodes[nid]["inputs"]["seed"] == 42


def test_seed_control_changes_a_seed_left_at_its_default(window):
    """A new sampler's seed was never typed (the node shows its default): "increment" and
    "randomize" must still change it after a run (they did nothing, so every run came from the
    cache)."""
    nid = add(window, "Seed", 0, 0)
    assert "seed" not in window.doc.nodes[nid]["inputs"]
    default = window.scene.items_by_id[nid].value_of("seed")
    click(window, widget_point(window, nid, "seed", "control"))  # increment
    window.apply_seed_control()
    assert window.doc.nodes[nid]["inputs"]["seed"] == default + 1
    window.doc.undo_stack.undo()
    click(window, widget_point(window, nid, "seed", "control"))  # randomize
    seen = set()
    for _ in range(3):
        window.apply_seed_control()
        seen.add(window.doc.nodes[nid]["inputs"]["seed"])
    assert len(seen) > 1


def test_seed_control_reads_whole_and_explains_itself(window):
    """"randomize" filled its 60 px box edge to edge (cut at some zooms), and nothing told a
    newcomer what clicking "fixed" does."""
    from PySide6.QtGui import QFontMetricsF
    from PySide6.QtWidgets import QGraphicsSceneHoverEvent

    from nodegen.gui.widgets import SEED_CTRL_W, SEED_MODES

    nid = add(window, "Seed", 0, 0)
    item = window.scene.items_by_id[nid]
    fm = QFontMetricsF(item.FONT)
    assert all(fm.horizontalAdvance(m) + 16 <= SEED_CTRL_W for m in SEED_MODES)
    ev = QGraphicsSceneHoverEvent()
    ev.setPos(widget_point(window, nid, "seed", "control"))
    item.hoverMoveEvent(ev)
    assert "after each run" in item.toolTip()


def test_text_editor_stays_inside_its_node(window):
    nid = add(window, "CLIPTextEncode", 0, 0) if window.schema.get("CLIPTextEncode") else None
    if nid is None:
        return
    click(window, widget_point(window, nid, "text"))
    proxy = window.scene._editor_proxy
    assert proxy is not None
    node = window.scene.items_by_id[nid].mapToScene(window.scene.items_by_id[nid].body_rect()).boundingRect()
    assert node.contains(proxy.sceneBoundingRect()), (node, proxy.sceneBoundingRect())
    window.scene.close_editor()


def test_widget_to_port_and_back(window):
    nid = add(window, "ImageCrop", 0, 0)
    item = window.scene.items_by_id[nid]
    assert item.widget_rect("x") is not None
    window.scene.push(commands.toggle_port(window.doc, nid, "x", 0))
    assert window.doc.nodes[nid]["ui"]["ports"] == ["x"]
    assert item.widget_rect("x") is None and "x" in [p["name"] for p in item.in_ports]
    window.scene.push(commands.toggle_port(window.doc, nid, "x", 0))
    assert "ports" not in window.doc.nodes[nid]["ui"]
    assert item.widget_rect("x") is not None


def test_rename_title_by_double_click(window, qtbot):
    nid = add(window, "ImageInvert", 0, 0)
    item = window.scene.items_by_id[nid]
    p = item.mapToScene(QPointF(60, 10))
    show_points(window, p)
    QTest.mouseDClick(window.view.viewport(), Qt.LeftButton, Qt.NoModifier, window.view.mapFromScene(p))
    ed = window.scene.editor
    assert ed is not None
    ed.selectAll()
    qtbot.keyClicks(ed, "Negative")
    qtbot.keyClick(ed, Qt.Key_Return)
    assert window.doc.nodes[nid]["title"] == "Negative"
    assert item.title == "Negative"
