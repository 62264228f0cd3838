"""Adding nodes like a user: from the palette (drag onto the canvas, double-click), from the quick
search (double-click on the canvas, Tab), with fuzzy search; nodes are drawn from the schema."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QDropEvent
from PySide6.QtTest import QTest

from nodegen.gui.palette import mime_for
from tests.gui.conftest import view_point


def _drop(window, mime, scene_pos: QPointF) -> None:
    vp = window.view.viewport()
    p = view_point(window, scene_pos)
    from PySide6.QtGui import QDragEnterEvent

    enter = QDragEnterEvent(p, Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    window.view.dragEnterEvent(enter)
    assert enter.isAccepted()
    drop = QDropEvent(QPointF(p), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    window.view.dropEvent(drop)
    del vp


def test_palette_lists_categories_and_filters_fuzzily(window, qtbot):
    pal = window.palette
    cats = [pal.tree.topLevelItem(i).text(0) for i in range(pal.tree.topLevelItemCount())]
    assert "image" in cats and "utility" in cats
    qtbot.keyClicks(pal.filter, "imginv")
    first = pal.tree.topLevelItem(0)
    assert first.data(0, Qt.UserRole + 1) == "ImageInvert"
    # Enter adds the first hit at the centre of the view
    qtbot.keyClick(pal.filter, Qt.Key_Return)
    assert [n["type"] for n in window.doc.nodes.values()] == ["ImageInvert"]


def test_palette_drag_onto_canvas_adds_node_there(window):
    leaf = window.palette.leaf("ImageInvert")
    assert leaf is not None
    _drop(window, mime_for("ImageInvert"), QPointF(120, 80))
    (nid, node), = window.doc.nodes.items()
    assert node["type"] == "ImageInvert"
    x, y = node["ui"]["pos"]
    assert abs(x - 120) <= 2 and abs(y - 80) <= 2
    item = window.scene.items_by_id[nid]
    assert [p["name"] for p in item.in_ports] == ["image"]
    assert [o["name"] for o in item.outputs] == ["image"]


def test_palette_double_click_adds_node(window, qtbot):
    leaf = window.palette.leaf("PreviewImage")
    window.palette.tree.scrollToItem(leaf)
    rect = window.palette.tree.visualItemRect(leaf)
    QTest.mouseClick(window.palette.tree.viewport(), Qt.LeftButton, Qt.NoModifier, rect.center())
    QTest.mouseDClick(window.palette.tree.viewport(), Qt.LeftButton, Qt.NoModifier, rect.center())
    assert [n["type"] for n in window.doc.nodes.values()] == ["PreviewImage"]


def test_quick_search_on_double_click(window, qtbot):
    p = view_point(window, QPointF(300, 200))
    QTest.mouseDClick(window.view.viewport(), Qt.LeftButton, Qt.NoModifier, p)
    assert window.search.isVisible()
    qtbot.keyClicks(window.search.edit, "ksam" if window.schema.get("KSampler") else "imgscl")
    hit = window.search.types()[0]
    assert hit in ("KSampler", "ImageScale", "ImageScaleBy")
    qtbot.keyClick(window.search.edit, Qt.Key_Return)
    assert not window.search.isVisible()
    (nid, node), = window.doc.nodes.items()
    assert node["type"] == hit
    pos = node["ui"]["pos"]
    assert abs(pos[0] - 300) < 3 and abs(pos[1] - 200) < 3


def test_quick_search_takes_words_as_people_type_them(window, qtbot):
    """"image scale" (with the space), "scale image" and "load image" find the types whose names
    run the words together; the palette filter does the same."""
    window.view.setFocus()
    QTest.mouseMove(window.view.viewport(), QPoint(200, 200))
    for typed, want in (("image scale", "ImageScale"), ("scale image", "ImageScale"),
                        ("load image", "LoadImage"), ("vae decode tiled", "VAEDecodeTiled")):
        qtbot.keyClick(window.view, Qt.Key_Tab)
        assert window.search.isVisible()
        qtbot.keyClicks(window.search.edit, typed)
        assert window.search.types()[0] == want, (typed, window.search.types()[:3])
        qtbot.keyClick(window.search.edit, Qt.Key_Escape)
    qtbot.keyClicks(window.palette.filter, "image invert")
    assert window.palette.tree.topLevelItem(0).data(0, Qt.UserRole + 1) == "ImageInvert"


def test_quick_search_on_tab(window, qtbot):
    window.view.setFocus()
    QTest.mouseMove(window.view.viewport(), QPoint(200, 200))
    qtbot.keyClick(window.view, Qt.Key_Tab)
    assert window.search.isVisible()
    qtbot.keyClicks(window.search.edit, "note")
    qtbot.keyClick(window.search.edit, Qt.Key_Down)
    qtbot.keyClick(window.search.edit, Qt.Key_Up)
    qtbot.keyClick(window.search.edit, Qt.Key_Return)
    assert [n["type"] for n in window.doc.nodes.values()] == ["Note"]


def test_every_node_type_draws_from_its_schema(window):
    """Every registered type can be added and shows its ports and widgets from the schema."""
    x = 0
    for t, info in window.schema.nodes.items():
        nid = window.add_node(t, QPointF(x, 0))
        x += 300
        item = window.scene.items_by_id[nid]
        shown = {p["name"] for p in item.in_ports} | {w["name"] for w in item.widget_rows}
        assert shown == {i["name"] for i in info.inputs}, t
        assert [o["name"] for o in item.outputs] == [o["name"] for o in info.outputs]
        for o in info.outputs:
            assert item.port_scene_pos("out", o["name"]).x() > item.scenePos().x()
    window.show()
    img = window.view.viewport().grab().toImage()
    assert not img.isNull()


def test_missing_node_type_is_a_placeholder_and_kept(window, tmp_path):
    import json

    doc = {"format": "nodegen-workflow", "version": 1, "nodes": {
        "1": {"type": "LoadImage", "inputs": {"image": "x.png"}},
        "2": {"type": "ComfyThing", "missing": True, "inputs": {"a": {"from": ["1", "image"]}, "k": 7},
              "original": {"class_type": "ComfyThing", "widgets_values": [7]}},
        "3": {"type": "PreviewImage", "inputs": {"images": {"from": ["2", "OUT"]}}}}}
    path = tmp_path / "m.json"
    path.write_text(json.dumps(doc))
    assert window.open_file(str(path), ask=False)
    item = window.scene.items_by_id["2"]
    assert item.info.missing
    assert "missing node type" in item.toolTip() and "ComfyThing" in item.toolTip()
    assert [p["name"] for p in item.in_ports] == ["a"]
    assert [o["name"] for o in item.outputs] == ["OUT"]
    assert ("3", "images") in window.scene.edges
    out = tmp_path / "m2.json"
    assert window.save_as(str(out))
    assert json.loads(out.read_text()) == doc


def test_palette_nests_categories_and_puts_advanced_last_folded(window):
    tree = window.palette.tree
    roots = [tree.topLevelItem(i) for i in range(tree.topLevelItemCount())]
    names = [r.text(0) for r in roots]
    assert "advanced" in names and names.index("advanced") > names.index("sampling")
    assert not any("/" in n for n in names)  # "advanced/guidance" is "guidance" inside "advanced"
    advanced = roots[names.index("advanced")]
    assert not advanced.isExpanded() and roots[names.index("sampling")].isExpanded()
    inner = [advanced.child(i).text(0) for i in range(advanced.childCount())]
    assert inner and all("/" not in n for n in inner)
    leaf = window.palette.leaf("ImageInvert")
    assert leaf is not None and leaf.parent() is not None
