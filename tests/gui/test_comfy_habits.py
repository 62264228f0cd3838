"""What a ComfyUI user does without thinking, checked by keys and mouse on the canvas: "." frames
the selection (all nodes when none is selected), a clicked node comes to the front of the nodes it
overlaps, typing in an open combo list filters it, a taller node shows more of its prompt, and the
question before losing changes names the file the graph came from."""

from __future__ import annotations

import json

from PySide6.QtCore import QPointF, Qt
from PySide6.QtTest import QTest

from tests.gui.conftest import add, click, widget_point


def _keys_to_canvas(window, qtbot) -> None:
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    window.view.setFocus()


def test_period_frames_the_selection_or_everything(window, qtbot):
    a = add(window, "ImageInvert", 0, 0)
    b = add(window, "ImageInvert", 6000, 0)
    _keys_to_canvas(window, qtbot)
    window.view.zoom_by(None)
    window.view.centerOn(window.scene.items_by_id[a])
    window.scene.clearSelection()
    QTest.keyClick(window.view, Qt.Key_Period)  # nothing selected: every node in sight
    vis = window.view.visible_scene_rect()
    assert all(vis.contains(window.scene.items_by_id[n].sceneBoundingRect()) for n in (a, b))
    window.scene.select_ids([b])
    QTest.keyClick(window.view, Qt.Key_Period)  # the selected node, close up
    vis = window.view.visible_scene_rect()
    assert vis.contains(window.scene.items_by_id[b].sceneBoundingRect())
    assert not vis.intersects(window.scene.items_by_id[a].sceneBoundingRect())


def test_a_clicked_node_comes_to_the_front(window):
    a = add(window, "ImageInvert", 0, 0)
    b = add(window, "ImageInvert", 60, 10)  # added later: drawn over a where they overlap
    overlap = window.scene.items_by_id[b].mapToScene(QPointF(20, 40))
    top_node_at = window.scene.node_at  # the topmost node under a point
    assert top_node_at(overlap).nid == b
    click(window, window.scene.items_by_id[a].mapToScene(QPointF(20, 10)))  # a's title
    assert top_node_at(overlap).nid == a
    c = add(window, "ImageInvert", 60, 10)  # a new node still lands on top
    assert top_node_at(overlap).nid == c


def test_typing_filters_an_open_combo_list(window, qtbot):
    nid = add(window, "KSampler", 0, 0)
    _keys_to_canvas(window, qtbot)
    minimap = window.view.minimap_wanted
    click(window, widget_point(window, nid, "sampler_name"))
    menu = window.scene.active_menu
    qtbot.waitUntil(menu.isVisible)
    assert menu.actions()[0].text() == "type to filter\u2026" and menu.actions()[0].isVisible()  # a long list says so
    assert menu.activeAction().text() == window.doc.nodes[nid]["inputs"].get("sampler_name", "euler")  # Enter keeps it
    QTest.keyClicks(menu, "2m sde")  # words in any order; "m" must not toggle the minimap
    shown = [a.text() for a in menu.choice_actions if a.isVisible()]
    assert shown and all("2m" in t and "sde" in t for t in shown)
    assert "euler" not in shown
    assert menu.activeAction().text() == shown[0]
    assert window.view.minimap_wanted == minimap
    assert menu.actions()[0].text().startswith("filter: 2m sde")
    QTest.keyClick(menu, Qt.Key_Backspace)
    assert menu.typed == "2m sd"
    QTest.keyClick(menu, Qt.Key_Return)
    assert window.doc.nodes[nid]["inputs"]["sampler_name"] == shown[0]


def test_a_taller_node_shows_more_of_its_prompt(window):
    from nodegen.gui import commands

    nid = add(window, "CLIPTextEncode", 0, 0)
    item = window.scene.items_by_id[nid]
    before = item.widget_rect("text").height()
    size = [item.body_rect().width(), item.body_rect().height() + 200]
    window.scene.push(commands.set_ui(window.doc, [nid], "size", size, "Resize"))
    assert item.widget_rect("text").height() == before + 200
    assert item.body_rect().height() == size[1]
    click(window, widget_point(window, nid, "text"))  # the editor takes the whole box under its name
    box = item.widget_rect("text")
    assert window.scene.editor.height() >= int(box.height()) - 16
    assert abs(window.scene._editor_proxy.pos().y() + window.scene.editor.height() - box.bottom()) <= 1
    window.scene.close_editor()


def test_the_unsaved_question_names_the_imported_file(window, tmp_path, red_png):
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": "red.png", "upload": "image"}},
              "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
    comfy = tmp_path / "portrait.json"
    comfy.write_text(json.dumps(prompt))
    assert window.open_file(str(comfy), ask=False), window.last_error
    assert window.save_changes_question() == "Save the changes to portrait.json (imported)?"
    window.new_file()
    assert window.save_changes_question() == "Save the changes to Untitled?"


def test_a_click_on_a_group_title_selects_the_group_and_delete_removes_only_the_frame(window, qtbot):
    a = add(window, "ImageInvert", 0, 0)
    b = add(window, "ImageInvert", 300, 0)
    window.scene.select_ids([a, b])
    window.group_selection()
    _keys_to_canvas(window, qtbot)
    group = window.scene.group_items[0]
    click(window, group.mapToScene(QPointF(group.w / 2, 10)))  # its title
    assert window.scene.selected_ids() == [] and window.scene.selected_groups() == [0]
    QTest.keyClick(window.view, Qt.Key_Delete)  # it deleted both nodes and kept the group
    assert set(window.doc.nodes) == {a, b} and window.doc.groups == []
    window.doc.undo_stack.undo()
    assert len(window.doc.groups) == 1
    # a rubber band around the nodes inside the frame selects the nodes, not the group
    from tests.gui.conftest import drag
    group = window.scene.group_items[0]
    inside = group.sceneBoundingRect()
    drag(window, inside.topLeft() + QPointF(5, 40), inside.bottomRight() - QPointF(5, 5))
    assert set(window.scene.selected_ids()) == {a, b} and window.scene.selected_groups() == []


def test_shift_drag_from_an_output_moves_all_its_wires(window):
    from PySide6.QtCore import QPoint

    from nodegen.gui import commands
    from tests.gui.conftest import port_point, show_points

    src = add(window, "EmptyImage", 0, 0)
    other = add(window, "EmptyImage", 0, 300)
    mask = add(window, "SolidMask", 0, 600)
    users = [add(window, "ImageInvert", 400, y) for y in (0, 200)]
    for u in users:
        window.scene.push(commands.connect(window.doc, src, "image", u, "image"))
    steps = window.doc.undo_stack.count()

    def shift_drag(a, b):
        show_points(window, a, b)
        pa, pb = window.view.mapFromScene(a), window.view.mapFromScene(b)
        vp = window.view.viewport()
        QTest.mousePress(vp, Qt.LeftButton, Qt.ShiftModifier, pa)
        for i in range(1, 5):
            QTest.mouseMove(vp, pa + QPoint((pb - pa).x() * i // 4, (pb - pa).y() * i // 4))
        QTest.mouseRelease(vp, Qt.LeftButton, Qt.ShiftModifier, pb)

    def sources():
        return [window.doc.nodes[u]["inputs"]["image"]["from"] for u in users]

    shift_drag(port_point(window, src, "out", "image"), port_point(window, mask, "out", "mask"))
    assert sources() == [[src, "image"]] * 2  # MASK into IMAGE inputs: refused, nothing moved
    assert all(window.scene.edges[(u, "image")].isVisible() for u in users)
    shift_drag(port_point(window, src, "out", "image"), port_point(window, other, "out", "image"))
    assert sources() == [[other, "image"]] * 2
    assert window.doc.undo_stack.count() == steps + 1  # one step
    window.doc.undo_stack.undo()
    assert sources() == [[src, "image"]] * 2


def test_right_click_on_a_wire_offers_to_delete_it(window):
    from nodegen.gui import commands

    a = add(window, "EmptyImage", 0, 0)
    b = add(window, "ImageInvert", 500, 200)
    window.scene.push(commands.connect(window.doc, a, "image", b, "image"))
    wire = window.scene.edges[(b, "image")]
    middle = wire.path().pointAtPercent(0.5)
    window.view.centerOn(middle)
    menu = window.canvas_menu(window.view.mapFromScene(middle))
    delete = next(act for act in menu.actions() if act.text() == "Delete wire")
    delete.trigger()
    assert "image" not in window.doc.nodes[b].get("inputs", {})
    window.doc.undo_stack.undo()
    assert window.doc.nodes[b]["inputs"]["image"] == {"from": [a, "image"]}


def test_text_typed_in_an_open_field_is_saved_and_never_lost_on_close(window, tmp_path):
    nid = add(window, "Note", 0, 0)
    path = tmp_path / "notes.json"
    assert window.save_as(str(path))
    click(window, widget_point(window, nid, "text"))
    QTest.keyClicks(window.scene.editor, "keep me")  # still typing: nothing committed yet
    assert window.save()  # Ctrl+S saved the file without the text
    assert "keep me" in json.loads(path.read_text())["nodes"][nid]["inputs"]["text"]
    click(window, widget_point(window, nid, "text"))
    QTest.keyClicks(window.scene.editor, " and me")
    asked = []
    window.ask_save_changes = lambda: asked.append(1) or "cancel"
    window.close()  # it closed without asking and the text was gone
    assert asked and window.isVisible()
    assert window.doc.nodes[nid]["inputs"]["text"].endswith("and me")
    window.ask_save_changes = lambda: "discard"


def test_ctrl_v_pastes_a_comfyui_workflow_copied_as_text(window, qtbot):
    from pathlib import Path

    from PySide6.QtGui import QGuiApplication

    ui = (Path(__file__).parents[1] / "data" / "comfy" / "esrgan_upscale.ui.json").read_text()
    api = {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
           "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}}}
    _keys_to_canvas(window, qtbot)
    QGuiApplication.clipboard().setText(ui)  # the editor format, e.g. copied from a web page
    QTest.keyClick(window.view, Qt.Key_V, Qt.ControlModifier)
    types = sorted(n["type"] for n in window.doc.nodes.values())
    assert "UpscaleModelLoader" in types and "ImageUpscaleWithModel" in types
    window.new_file()
    QGuiApplication.clipboard().setText(json.dumps(api))  # an API prompt: no positions
    QTest.keyClick(window.view, Qt.Key_V, Qt.ControlModifier)
    (a, b) = window.doc.nodes
    assert window.doc.nodes[b]["inputs"]["image"] == {"from": [a, "image"]}
    assert window.doc.nodes[a]["ui"]["pos"] != window.doc.nodes[b]["ui"]["pos"]  # not stacked


def test_recent_files_offer_only_files_that_are_there_and_can_be_cleared(window, chain_file, tmp_path):
    gone = tmp_path / "gone.json"
    gone.write_text(chain_file.read_text())
    assert window.open_file(str(gone), ask=False)
    assert window.open_file(str(chain_file), ask=False)
    gone.unlink()
    window.file_menu.aboutToShow.emit()  # the File menu is opened
    texts = [a.text() for a in window.recent_menu.actions()]
    assert str(chain_file.resolve()) in texts and str(gone.resolve()) not in texts
    next(a for a in window.recent_menu.actions() if a.text() == "Clear the list").trigger()
    assert window.recent_files() == [] and not window.recent_menu.isEnabled()


def test_comfyui_keys_interrupt_and_zoom(window, qtbot, monkeypatch):
    """Ctrl+Alt+Enter interrupts the run (it opened the sweep dialog); Alt+= and Alt+- zoom."""
    cancelled, swept = [], []
    monkeypatch.setattr(window.runner, "cancel_current", lambda: cancelled.append(1) or True)
    monkeypatch.setattr(window, "open_sweep_dialog", lambda *a: swept.append(1))
    _keys_to_canvas(window, qtbot)
    window.cancel_action.setEnabled(True)  # as while a run goes on
    QTest.keyClick(window.view, Qt.Key_Return, Qt.ControlModifier | Qt.AltModifier)
    assert cancelled == [1] and swept == []
    z = window.view.zoom()
    QTest.keyClick(window.view, Qt.Key_Equal, Qt.AltModifier)
    assert window.view.zoom() > z
    QTest.keyClick(window.view, Qt.Key_Minus, Qt.AltModifier)
    assert abs(window.view.zoom() - z) < 1e-6


def test_file_new_window_starts_a_second_editor_with_this_sessions_folders(window, chain_file):
    """A second document beside the first (copy and paste between them go by the clipboard)."""
    import subprocess
    import sys

    import pytest

    from nodegen.gui.app import parse_args

    started, kw_seen = [], []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("nodegen.gui.files.subprocess.Popen", lambda cmd, **kw: started.append(cmd) or kw_seen.append(kw))
        window.actions_by_name["new_window"].trigger()
        window.new_window(str(chain_file))
    assert len(started) == 2 and started[0][0] == sys.executable
    assert kw_seen[0]["env"]["NODEGEN_GUI_CASCADE"] == "1"  # it opens beside this one, not on top
    args = parse_args(started[1][3:])
    assert args.input_dir == str(window.engine.env.input_dir) and args.graph == str(chain_file)
    assert args.output_dir == str(window.engine.env.output_dir)
    done = subprocess.run([*started[0][:3], "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "nodegen gui" in done.stdout  # the command starts the editor


def test_a_new_window_opens_offset_from_the_saved_place(make_window, monkeypatch):
    first = make_window()
    first.settings.setValue("geometry", first.saveGeometry())
    first.settings.sync()
    plain = make_window()  # at the saved place
    monkeypatch.setenv("NODEGEN_GUI_CASCADE", "1")
    second = make_window()
    d = second.pos() - plain.pos()
    assert 30 <= d.x() <= 50 and 30 <= d.y() <= 50  # 40 px, give or take the window frame


def test_an_image_dropped_on_a_load_image_node_goes_into_it(window, tmp_path, red_png):
    """Dragging your own output (a PNG that carries its workflow) onto a LoadImage node, for
    img2img: it replaced the whole graph; now it is that node's image. Elsewhere it still opens."""
    from PIL import Image, PngImagePlugin
    from PySide6.QtCore import QMimeData, QUrl
    from PySide6.QtGui import QDropEvent

    from tests.gui.conftest import chain_doc

    info = PngImagePlugin.PngInfo()
    info.add_itxt("nodegen-workflow", json.dumps(chain_doc(str(red_png))))
    made = tmp_path / "my_render.png"
    Image.new("RGB", (8, 8)).save(made, pnginfo=info)
    loader = add(window, "LoadImage", 0, 0)
    other = add(window, "ImageInvert", 400, 0)

    def drop_at(scene_point):
        md = QMimeData()
        md.setUrls([QUrl.fromLocalFile(str(made))])
        p = QPointF(window.view.mapFromScene(scene_point))
        window.view.dropEvent(QDropEvent(p, Qt.CopyAction, md, Qt.LeftButton, Qt.NoModifier))

    window.view.centerOn(window.scene.items_by_id[loader])
    drop_at(window.scene.items_by_id[loader].mapToScene(QPointF(60, 40)))
    assert set(window.doc.nodes) == {loader, other}  # the graph stays
    assert window.doc.nodes[loader]["inputs"]["image"] == str(made.resolve())
    window.doc.undo_stack.undo()
    assert window.doc.nodes[loader]["inputs"].get("image") != str(made.resolve())
    drop_at(QPointF(-2000, -2000))  # on empty canvas: its workflow opens
    assert len(window.doc.nodes) == 3 and window.imported_from == made


def test_shift_drag_on_empty_canvas_adds_to_the_selection(window):
    from tests.gui.conftest import show_points

    a = add(window, "ImageInvert", 0, 0)
    b = add(window, "ImageInvert", 0, 300)
    window.scene.select_ids([a])
    show_points(window, QPointF(-60, -60), QPointF(300, 500))
    vp = window.view.viewport()
    p0, p1 = window.view.mapFromScene(QPointF(-40, 260)), window.view.mapFromScene(QPointF(280, 480))
    QTest.mousePress(vp, Qt.LeftButton, Qt.ShiftModifier, p0)
    for i in range(1, 6):
        QTest.mouseMove(vp, p0 + (p1 - p0) * (i / 5))
    QTest.mouseRelease(vp, Qt.LeftButton, Qt.ShiftModifier, p1)
    assert set(window.scene.selected_ids()) == {a, b}


def test_f1_help_fits_the_screen(window, qtbot):
    """Three columns sized to the screen: the one-column message box ran past a laptop screen's
    bottom edge, its OK button out of reach."""
    from PySide6.QtWidgets import QTextBrowser

    _keys_to_canvas(window, qtbot)
    QTest.keyClick(window.view, Qt.Key_F1)
    dialog = window._shortcut_box
    qtbot.waitUntil(dialog.isVisible)
    avail = dialog.screen().availableGeometry()
    assert dialog.frameGeometry().height() <= avail.height() and dialog.width() <= avail.width()
    text = dialog.findChild(QTextBrowser).toPlainText()
    assert "Ctrl+Alt+Enter" in text and "Shift + drag it onto another output" in text
    dialog.close()


def test_undo_from_the_toolbar_while_typing_undoes_the_typing(window):
    nid = add(window, "Note", 0, 0)
    click(window, widget_point(window, nid, "text"))
    QTest.keyClicks(window.scene.editor, "hello")
    window.actions_by_name["undo"].trigger()  # the toolbar's and the menu's Undo (no focus change)
    assert nid in window.doc.nodes and "hello" not in window.doc.nodes[nid]["inputs"].get("text", "")
    window.actions_by_name["redo"].trigger()
    assert window.doc.nodes[nid]["inputs"]["text"] == "hello"


def test_a_wire_dragged_from_an_input_offers_sources_first(window):
    """Dropped from an unconnected MODEL input, the search listed guidance patches (which need a
    MODEL themselves) before any loader."""
    for wanted, source in (("MODEL", "CheckpointLoader"), ("VAE", "VAELoader"), ("LATENT", "EmptyLatentImage")):
        found = window.schema.search("", produces=wanted)
        first = found[0]
        assert not [i for i in first.inputs if i.get("widget") is None and not i.get("optional")], first.type
        assert source in [info.type for info in found[:5]], (wanted, [info.type for info in found[:5]])


def test_a_file_combo_shows_the_current_file_even_outside_the_listed_folders(window, chain_file):
    """An image beside the workflow (not in the input folder): its combo offered only Browse..."""
    assert window.open_file(str(chain_file), ask=False)
    current = window.doc.nodes["1"]["inputs"]["image"]
    click(window, widget_point(window, "1", "image"))
    menu = window.scene.active_menu
    ticked = [a.text() for a in menu.actions() if a.isChecked()]
    assert ticked == [str(current)]
    menu.close()


def test_the_search_puts_the_closest_name_first(window):
    """Typing "save" listed Save Animated PNG before Save Image (alphabetical among equal matches)."""
    assert window.schema.search("save")[0].type == "SaveImage"
    assert window.schema.search("ksampler")[0].type == "KSampler"


def test_a_wire_dropped_on_a_node_body_connects_its_first_fitting_port(window):
    """As in ComfyUI: it opened the node search instead."""
    from tests.gui.conftest import drag, port_point

    src = add(window, "EmptyImage", 0, 0)
    dst = add(window, "ImageInvert", 400, 0)
    solid = add(window, "SolidMask", 400, 300)
    body = window.scene.items_by_id[dst].mapToScene(QPointF(120, 40))
    drag(window, port_point(window, src, "out", "image"), body)
    assert window.doc.nodes[dst]["inputs"]["image"] == {"from": [src, "image"]}
    assert not window.search.isVisible()
    steps = window.doc.undo_stack.count()
    drag(window, port_point(window, src, "out", "image"), window.scene.items_by_id[solid].mapToScene(QPointF(120, 12)))
    assert window.doc.undo_stack.count() == steps and not window.search.isVisible()  # no IMAGE input: nothing
    # dragged from a free input onto a node: its first fitting output
    free = add(window, "ImageInvert", 400, 600)
    drag(window, port_point(window, free, "in", "image"), window.scene.items_by_id[src].mapToScene(QPointF(40, 12)))
    assert window.doc.nodes[free]["inputs"]["image"] == {"from": [src, "image"]}


def test_file_export_for_comfyui_writes_an_api_prompt(window, chain_file, tmp_path):
    from nodegen.formats.comfy import detect

    assert window.open_file(str(chain_file), ask=False)
    out = tmp_path / "for_comfy.json"
    assert window.export_comfy(str(out))
    api = json.loads(out.read_text())
    assert detect(api) is not None  # ComfyUI's format
    assert sorted(n["class_type"] for n in api.values()) == ["ImageInvert", "LoadImage", "PreviewImage"]
    assert not window.doc.modified  # exporting is not saving: the document is untouched
    add(window, "LineartEdges", 0, 400)  # no ComfyUI equivalent: refused, naming the node
    assert not window.export_comfy(str(tmp_path / "refused.json"))
    assert "LineartEdges" in window.last_error and not (tmp_path / "refused.json").exists()
