"""Files: save/reopen equality, the modified marker, asking before losing changes, recent files,
autosave + recovery, dropping a .json / PNG workflow on the window, dropping an image on the
canvas (LoadImage), and the screenshot command."""

from __future__ import annotations

import json

from PIL import Image, PngImagePlugin
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QColor, QDragEnterEvent, QDropEvent, QImage

from nodegen.gui import commands
from tests.gui.conftest import add, chain_doc, view_point


def _drop(target, paths, pos) -> None:
    md = QMimeData()
    md.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    enter = QDragEnterEvent(pos.toPoint(), Qt.CopyAction, md, Qt.LeftButton, Qt.NoModifier)
    target.dragEnterEvent(enter)
    assert enter.isAccepted()
    target.dropEvent(QDropEvent(pos, Qt.CopyAction, md, Qt.LeftButton, Qt.NoModifier))


def test_open_and_save_without_edits_changes_nothing(window, chain_file, tmp_path):
    original = chain_file.read_bytes()
    assert window.open_file(str(chain_file), ask=False)
    assert "chain.json" in window.windowTitle() and "*" not in window.windowTitle()
    assert window.save()
    assert chain_file.read_bytes() == original
    # a file without layout gets none added by opening and saving
    bare = chain_doc("x.png")
    for n in bare["nodes"].values():
        n.pop("ui")
    path = tmp_path / "bare.json"
    path.write_text(json.dumps(bare))
    assert window.open_file(str(path), ask=False)
    out = tmp_path / "bare2.json"
    assert window.save_as(str(out))
    assert json.loads(out.read_text()) == bare


def test_save_reopen_after_edits_is_equal(window, make_window, chain_file, tmp_path):
    assert window.open_file(str(chain_file), ask=False)
    window.scene.push(commands.set_field(window.doc, ["2"], "title", "Neg", "Rename"))
    add(window, "Note", 100, 400)
    assert window.windowTitle().startswith("chain.json*")
    out = tmp_path / "edited.json"
    assert window.save_as(str(out))
    assert "*" not in window.windowTitle() and "edited.json" in window.windowTitle()
    other = make_window()
    assert other.open_file(str(out), ask=False)
    assert other.doc.data == window.doc.data
    assert other.doc.data["extra-top-level"] == "kept"
    assert other.doc.data["nodes"]["3"]["x-unknown-field"] == {"kept": [1, 2]}


def test_ask_before_losing_changes(window, chain_file):
    assert window.open_file(str(chain_file), ask=False)
    add(window, "Note", 0, 0)
    asked = []
    window.ask_save_changes = lambda: asked.append(1) or "cancel"
    assert not window.new_file()
    assert asked and len(window.doc.nodes) == 4
    window.ask_save_changes = lambda: "save"
    assert window.new_file()
    assert window.doc.nodes == {}
    assert len(json.loads(chain_file.read_text())["nodes"]) == 4  # it was saved first


def test_recent_files(window, chain_file, tmp_path):
    assert window.open_file(str(chain_file), ask=False)
    assert window.recent_files()[0] == str(chain_file.resolve())
    assert [a.text() for a in window.recent_menu.actions()][0] == str(chain_file.resolve())


def test_autosave_and_offer_to_restore(make_window, chain_file):
    w1 = make_window()
    assert w1.open_file(str(chain_file), ask=False)
    assert not w1.autosave()  # nothing to save while unmodified
    add(w1, "Note", 0, 0)
    assert w1.autosave()
    saved = w1.doc.snapshot()
    w2 = make_window()
    w2.ask_restore = lambda path: True
    assert w2.offer_recovery()
    assert w2.doc.data == saved
    assert w2.doc.modified and "*" in w2.windowTitle()
    assert str(w2.doc.path) == str(chain_file)
    assert not w1.recovery_path().exists()  # consumed: not offered twice
    assert w2.found_recovery() is None


def test_drop_json_on_window_opens_it(window, chain_file):
    _drop(window, [chain_file], QPointF(50, 50))
    assert set(window.doc.nodes) == {"1", "2", "3"}
    assert window.doc.path == chain_file


def test_drop_png_with_workflow_on_canvas_opens_it(window, tmp_path, red_png):
    doc = chain_doc(str(red_png))
    info = PngImagePlugin.PngInfo()
    info.add_itxt("nodegen-workflow", json.dumps(doc))
    png = tmp_path / "made.png"
    Image.new("RGB", (8, 8)).save(png, pnginfo=info)
    _drop(window.view, [png], QPointF(view_point(window, QPointF(0, 0))))
    assert window.doc.data["nodes"] == doc["nodes"]
    assert window.doc.path is None  # saving never overwrites the image


def test_drop_image_on_canvas_makes_load_image(window, red_png, tmp_path):
    _drop(window.view, [red_png], QPointF(view_point(window, QPointF(200, 100))))
    (nid, node), = window.doc.nodes.items()
    assert node["type"] == "LoadImage"
    assert node["inputs"]["image"] == "red.png"  # it lies in the input folder
    item = window.scene.items_by_id[nid]
    assert item.source_image is not None and item.source_image.width() == 32
    other = tmp_path / "elsewhere.png"
    Image.new("RGB", (4, 4)).save(other)
    _drop(window.view, [other], QPointF(view_point(window, QPointF(600, 100))))
    assert any(n["inputs"].get("image") == str(other.resolve()) for n in window.doc.nodes.values())


def _count(img: QImage, color: QColor, tol: int = 6) -> int:
    n = 0
    for y in range(0, img.height(), 2):
        for x in range(0, img.width(), 2):
            c = img.pixelColor(x, y)
            if abs(c.red() - color.red()) <= tol and abs(c.green() - color.green()) <= tol \
                    and abs(c.blue() - color.blue()) <= tol:
                n += 1
    return n


def test_screenshot_command(chain_file, tmp_path, gui_state, qapp):
    from main import main as nodegen_main  # python main.py gui GRAPH --screenshot ... --run
    from nodegen.gui.app import main
    from nodegen.gui.theme import category_color

    out = tmp_path / "shot.png"
    assert nodegen_main(["gui", str(chain_file), "--screenshot", str(out), "--run", "--canvas-only", "--size", "900x600",
                 "--input-dir", str(tmp_path / "input"), "--output-dir", str(tmp_path / "output")]) == 0
    img = QImage(str(out))
    assert not img.isNull() and img.width() > 300
    # not blank: many colours; the three "image" nodes' title bars are there
    colours = {img.pixel(x, y) for x in range(0, img.width(), 7) for y in range(0, img.height(), 7)}
    assert len(colours) > 50
    assert _count(img, category_color("image")) > 100
    # with --run the inverted image shows on the preview node: (55, 215, 235)
    assert _count(img, QColor(55, 215, 235), tol=3) > 50
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"format": "nodegen-workflow", "version": 1, "nodes": {}}))
    out2 = tmp_path / "empty.png"
    assert main([str(empty), "--screenshot", str(out2), "--canvas-only", "--size", "900x600"]) == 0
    assert _count(QImage(str(out2)), category_color("image")) == 0


def test_recovery_of_a_running_editor_is_not_offered(window, gui_state):
    import os

    gui_state.mkdir(parents=True, exist_ok=True)
    live = gui_state / f"recovery-{os.getppid()}-abc.json"  # a process that is alive
    live.write_text(json.dumps({"path": None, "workflow": chain_doc("x.png")}))
    window.ask_restore = lambda path: True
    assert window.found_recovery() is None
    assert not window.offer_recovery()
    assert live.exists()


def test_opening_a_comfyui_workflow_imports_it(window, tmp_path):
    """A ComfyUI API prompt opens as a new unsaved document; unknown types are placeholders."""
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "cat.png", "upload": "image"}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SomeCustomNode", "inputs": {"image": ["2", 0], "amount": 3}},
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}},
    }
    path = tmp_path / "comfy.json"
    path.write_text(json.dumps(prompt))
    assert window.open_file(str(path), ask=False), window.last_error
    types = sorted(n["type"] for n in window.doc.nodes.values())
    assert "ImageInvert" in types and "PreviewImage" in types and "SomeCustomNode" in types
    custom = next(nid for nid, n in window.doc.nodes.items() if n["type"] == "SomeCustomNode")
    item = window.scene.items_by_id[custom]
    assert item.info.missing and "missing node type" in item.toolTip()
    assert window.doc.path is None and not window.doc.modified  # Save asks where; nothing changed yet
    assert len(window.scene.edges) == 3
