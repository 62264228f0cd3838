"""The canvas view and window chrome: zoom to the cursor, pan (middle drag, space+drag), fit,
minimap, rubber band, keyboard shortcuts (delete, copy/paste, bypass), the image viewer, the
shortcut list and the status bar."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QColor, QImage, QWheelEvent
from PySide6.QtTest import QTest

from gui import commands
from tests.gui.conftest import add, drag, show_points


def test_wheel_zooms_to_the_cursor(window):
    add(window, "ImageInvert", 0, 0)
    view = window.view
    view.set_zoom(1.0)
    at = QPoint(200, 150)
    before = view.mapToScene(at)
    ev = QWheelEvent(QPointF(at), QPointF(view.viewport().mapToGlobal(at)), QPoint(0, 0), QPoint(0, 240),
                     Qt.NoButton, Qt.NoModifier, Qt.NoScrollPhase, False)
    view.wheelEvent(ev)
    assert view.zoom() > 1.3
    after = view.mapToScene(at)
    assert abs(after.x() - before.x()) < 2 and abs(after.y() - before.y()) < 2
    assert window.zoom_label.text() == f"{view.zoom() * 100:.0f}%"


def test_pan_with_middle_drag_and_space_drag(window, qtbot):
    add(window, "ImageInvert", 0, 0)
    view, vp = window.view, window.view.viewport()
    view.set_zoom(1.0)
    c0 = view.visible_scene_rect().center()
    QTest.mousePress(vp, Qt.MiddleButton, Qt.NoModifier, QPoint(300, 300))
    QTest.mouseMove(vp, QPoint(250, 280))
    QTest.mouseMove(vp, QPoint(200, 260))
    QTest.mouseRelease(vp, Qt.MiddleButton, Qt.NoModifier, QPoint(200, 260))
    c1 = view.visible_scene_rect().center()
    assert abs((c1.x() - c0.x()) - 100) < 3 and abs((c1.y() - c0.y()) - 40) < 3
    view.setFocus()
    QTest.keyPress(view, Qt.Key_Space)
    QTest.mousePress(vp, Qt.LeftButton, Qt.NoModifier, QPoint(300, 300))
    QTest.mouseMove(vp, QPoint(350, 300))
    QTest.mouseMove(vp, QPoint(400, 300))
    QTest.mouseRelease(vp, Qt.LeftButton, Qt.NoModifier, QPoint(400, 300))
    QTest.keyRelease(view, Qt.Key_Space)
    c2 = view.visible_scene_rect().center()
    assert abs((c2.x() - c1.x()) + 100) < 3
    assert window.doc.undo_stack.count() == 1  # panning edits nothing; no rubber band, no move


def test_fit_all_and_fit_selection_and_minimap(window):
    a = add(window, "ImageInvert", 0, 0)
    b = add(window, "ImageInvert", 900, 500)  # fits at a readable zoom (wider graphs pan)
    window.actions_by_name["fit_all"].trigger()
    vis = window.view.visible_scene_rect()
    for nid in (a, b):
        assert vis.contains(window.scene.items_by_id[nid].sceneBoundingRect())
    # a graph too wide for the readable zoom: "Fit all" still shows all of it (it showed the start)
    c = add(window, "ImageInvert", 6000, 0)
    window.actions_by_name["fit_all"].trigger()
    vis = window.view.visible_scene_rect()
    for nid in (a, b, c):
        assert vis.contains(window.scene.items_by_id[nid].sceneBoundingRect())
    window.doc.undo_stack.undo()
    window.actions_by_name["fit_all"].trigger()
    window.scene.select_ids([b])
    window.actions_by_name["fit_selection"].trigger()
    vis = window.view.visible_scene_rect()
    assert vis.contains(window.scene.items_by_id[b].sceneBoundingRect())
    assert not vis.intersects(window.scene.items_by_id[a].sceneBoundingRect())
    # a click on the minimap centres the view there
    mm = window.view.minimap
    assert mm.isVisible()
    QTest.mouseClick(mm, Qt.LeftButton, Qt.NoModifier, QPoint(2, 2))
    assert window.view.visible_scene_rect().center().x() < vis.center().x() - 500


def test_rubber_band_selects_and_delete_key_removes(window, qtbot):
    a = add(window, "ImageInvert", 0, 0)
    b = add(window, "ImageInvert", 0, 200)
    c = add(window, "ImageInvert", 1200, 0)
    window.scene.clearSelection()
    drag(window, QPointF(-50, -50), QPointF(300, 400), steps=8)
    show_points(window, QPointF(-50, -50), QPointF(300, 400))
    assert set(window.scene.selected_ids()) == {a, b}
    window.view.setFocus()
    QTest.keyClick(window.view, Qt.Key_Delete)
    assert list(window.doc.nodes) == [c]
    QTest.keyClick(window.view, Qt.Key_Z, Qt.ControlModifier)
    assert set(window.doc.nodes) == {a, b, c}


def test_shortcuts_copy_paste_duplicate_bypass(window):
    a = add(window, "ImageInvert", 0, 0)
    window.scene.select_ids([a])
    window.view.setFocus()
    QTest.keyClick(window.view, Qt.Key_C, Qt.ControlModifier)
    QTest.keyClick(window.view, Qt.Key_V, Qt.ControlModifier)
    assert len(window.doc.nodes) == 2
    QTest.keyClick(window.view, Qt.Key_D, Qt.ControlModifier)
    assert len(window.doc.nodes) == 3
    new = window.scene.selected_ids()
    QTest.keyClick(window.view, Qt.Key_B, Qt.ControlModifier)
    assert all(window.doc.nodes[n]["mode"] == "bypass" for n in new)
    QTest.keyClick(window.view, Qt.Key_M, Qt.ControlModifier)
    assert all(window.doc.nodes[n]["mode"] == "muted" for n in new)
    QTest.keyClick(window.view, Qt.Key_M, Qt.ControlModifier)
    assert all("mode" not in window.doc.nodes[n] for n in new)


def test_ctrl_v_pastes_without_outside_links_and_ctrl_shift_v_with_them(window):
    """ComfyUI's keys: Ctrl+V pastes the copies unconnected from the nodes left behind,
    Ctrl+Shift+V keeps their input links."""
    src = add(window, "LoadImage", 0, 0)
    inv = add(window, "ImageInvert", 300, 0)
    window.scene.push(commands.connect(window.doc, src, "image", inv, "image"))
    window.scene.select_ids([inv])
    window.view.setFocus()
    QTest.keyClick(window.view, Qt.Key_C, Qt.ControlModifier)
    QTest.keyClick(window.view, Qt.Key_V, Qt.ControlModifier)
    (plain,) = window.scene.selected_ids()
    assert plain != inv and "image" not in window.doc.nodes[plain]["inputs"]
    QTest.keyClick(window.view, Qt.Key_V, Qt.ControlModifier | Qt.ShiftModifier)
    (linked,) = window.scene.selected_ids()
    assert window.doc.nodes[linked]["inputs"]["image"] == {"from": [src, "image"]}
    assert len(window.doc.nodes) == 4


def test_context_menu_offers_node_actions(window):
    a = add(window, "ImageCrop", 0, 0)
    item = window.scene.items_by_id[a]
    p = window.view.mapFromScene(item.mapToScene(QPointF(50, 40)))
    menu = window.canvas_menu(p)
    texts = [act.text() for act in menu.actions()]
    assert {"Rename", "Bypass", "Mute", "Delete", "Duplicate"} <= set(texts)
    ports = next(act.menu() for act in menu.actions() if act.text() == "Widgets and ports")
    next(act for act in ports.actions() if act.text() == "Convert width to input port").trigger()
    assert window.doc.nodes[a]["ui"]["ports"] == ["width"]
    colour = next(act.menu() for act in menu.actions() if act.text() == "Colour")
    next(act for act in colour.actions() if act.text() == "Red").trigger()
    assert window.doc.nodes[a]["ui"]["color"] == "#5c2b2b"
    empty = window.canvas_menu(window.view.mapFromScene(QPointF(5000, 5000)))
    assert "Add node\u2026" in [act.text() for act in empty.actions()]


def test_image_viewer_navigation_zoom_copy(window, qapp):
    imgs = []
    for col in ("red", "green", "blue"):
        im = QImage(40, 30, QImage.Format_RGB32)
        im.fill(QColor(col))
        imgs.append(im)
    v = window.viewer
    v.set_images(imgs, [], "batch")
    assert "1/3" in v.caption.text()
    v.buttons["next"].click()
    v.buttons["next"].click()
    assert v.index == 2 and "3/3" in v.caption.text()
    v.buttons["next"].click()
    assert v.index == 0
    v.buttons["one"].click()
    v.buttons["zoom_in"].click()
    assert abs(v.scale - 1.25) < 1e-6 and "125%" in v.caption.text()
    v.buttons["copy"].click()
    assert qapp.clipboard().image().pixelColor(0, 0) == QColor("red")
    assert not v.buttons["open"].isEnabled()  # no file behind these


def test_help_lists_shortcuts_and_status_bar_shows_device_and_memory(window):
    text = window.shortcut_text()
    for needle in ("Run: Ctrl+Return", "Undo: Ctrl+Z", "Fit all: Home", "Tab", "middle drag"):
        assert needle in text, needle
    window.device_status.refresh()
    status = window.device_status.text()
    assert status.startswith("device: ") and "RAM" in status and "GiB" in status


def test_click_shift_click_ctrl_click_select(window):
    a = add(window, "ImageInvert", 0, 0)
    b = add(window, "ImageInvert", 300, 0)
    c = add(window, "ImageInvert", 600, 0)
    pts = {n: window.scene.items_by_id[n].mapToScene(QPointF(80, 10)) for n in (a, b, c)}
    show_points(window, *pts.values())
    vp = window.view.viewport()

    def press(nid, mod=Qt.NoModifier):
        QTest.mouseClick(vp, Qt.LeftButton, mod, window.view.mapFromScene(pts[nid]))

    press(a)
    assert window.scene.selected_ids() == [a]
    press(b, Qt.ShiftModifier)
    assert set(window.scene.selected_ids()) == {a, b}
    press(c, Qt.ControlModifier)
    assert set(window.scene.selected_ids()) == {a, b, c}
    press(b, Qt.ControlModifier)
    assert set(window.scene.selected_ids()) == {a, c}
    press(b)
    assert window.scene.selected_ids() == [b]
    assert window.doc.undo_stack.count() == 3  # clicking moved nothing


def test_a_paste_near_the_edge_is_scrolled_into_view(window):
    """Pasting with the mouse near the bottom edge puts the nodes there: the view follows them."""
    a = add(window, "KSampler" if window.schema.get("KSampler") else "ImageCrop", 0, 0)
    window.view.fit_rect(window.scene.items_by_id[a].sceneBoundingRect())
    window.scene.select_ids([a])
    window.copy()
    vis = window.view.visible_scene_rect()
    (new,) = window.paste(QPointF(vis.center().x(), vis.bottom() - 10))
    assert window.view.visible_scene_rect().contains(window.scene.items_by_id[new].sceneBoundingRect())
