"""A workflow opened from a ComfyUI file or a PNG is a new document (saving never overwrites the
source), but it keeps its name: the title says which file it came from (it said "Untitled"), the
queue names its runs after it, and Save offers a file beside the source with that name (it offered
an empty name in the current folder)."""

from __future__ import annotations

import json

from PIL import Image, PngImagePlugin

from tests.gui.conftest import chain_doc


def test_imported_workflow_keeps_its_name(window, tmp_path, red_png, monkeypatch):
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": "red.png", "upload": "image"}},
              "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
    comfy = tmp_path / "portrait.json"
    comfy.write_text(json.dumps(prompt))
    assert window.open_file(str(comfy), ask=False), window.last_error
    assert window.doc.path is None
    assert window.windowTitle().startswith("portrait.json (imported)")
    asked = {}

    def dialog(parent, caption, start, filt):
        asked["start"] = start
        return "", ""
    monkeypatch.setattr("nodegen.gui.files.QFileDialog.getSaveFileName", dialog)
    assert not window.save()
    assert asked["start"] == str(tmp_path / "portrait.nodegen.json")  # never the ComfyUI file itself
    # a PNG's workflow: saved as a .json of the same name beside it
    info = PngImagePlugin.PngInfo()
    info.add_itxt("nodegen-workflow", json.dumps(chain_doc(str(red_png))))
    png = tmp_path / "sunset.png"
    Image.new("RGB", (8, 8)).save(png, pnginfo=info)
    assert window.open_file(str(png), ask=False)
    assert window.windowTitle().startswith("sunset.png (imported)")
    assert not window.save()
    assert asked["start"] == str(tmp_path / "sunset.json")
    assert window.document_name() == "sunset"
    # saved: the title is the new file's; New forgets the source
    assert window.save_as(str(tmp_path / "mine.json"))
    assert window.windowTitle().startswith("mine.json")
    window.new_file()
    assert window.windowTitle().startswith("Untitled")
