"""Issue 17.4: missing models are flagged when a graph opens (input marked, Problems panel
filled); the model-folders dialog writes the config file the CLI reads, and a rescan clears the
marks and offers the new files; an imported ComfyUI workflow opens unmodified."""

from __future__ import annotations

import json

from nodegen.gui.model_settings import ModelSettingsDialog
from nodegen.models.paths import ModelPaths


def _loader_graph(tmp_path, name: str):
    doc = {"format": "nodegen-workflow", "version": 1,
           "nodes": {"1": {"type": "CheckpointLoader", "inputs": {"ckpt_name": name}, "ui": {"pos": [0, 0]}}}}
    path = tmp_path / "loader.json"
    path.write_text(json.dumps(doc))
    return path


def test_missing_model_flagged_on_open_then_found_after_settings_and_rescan(
        make_window, tmp_path, monkeypatch):
    config = tmp_path / "config" / "config.json"
    monkeypatch.setenv("NODEGEN_CONFIG", str(config))
    root = tmp_path / "my models"
    (root / "checkpoints").mkdir(parents=True)
    (root / "checkpoints" / "mine.safetensors").write_bytes(b"\0" * 16)
    extra = tmp_path / "other tool" / "loras"
    extra.mkdir(parents=True)
    window = make_window()

    assert window.open_file(str(_loader_graph(tmp_path, "mine.safetensors")), ask=False)
    item = window.scene.items_by_id["1"]
    assert item.bad_inputs == {"ckpt_name"}
    assert window.problems.count() == 1 and "mine.safetensors" in window.problems.item(0).text()
    assert not window.doc.modified

    dialog = ModelSettingsDialog(window)
    dialog.add_root(str(root))
    dialog.add_extra("loras", str(extra))
    dialog.save()
    saved = json.loads(config.read_text())
    assert saved == {"models": [str(root)], "extra_paths": {"loras": [str(extra)]}}
    # the command line reads the same file
    assert ModelPaths().folders("checkpoints") == [root / "checkpoints"]
    assert ModelPaths().folders("loras") == [extra]

    window.rescan_models()
    assert item.bad_inputs == set() and window.problems.count() == 0
    choices = window.schema.get("CheckpointLoader").input("ckpt_name")["choices"]
    assert "mine.safetensors" in choices
    # the dialog shows what is stored, and keeps keys it does not know
    config.write_text(json.dumps({**saved, "theme": "dark"}))
    again = ModelSettingsDialog(window)
    assert again.values() == ([str(root)], {"loras": [str(extra)]})
    again.save()
    assert json.loads(config.read_text())["theme"] == "dark"


def test_imported_comfyui_workflow_is_not_marked_modified(window, tmp_path):
    prompt = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "gone.safetensors"}}}
    path = tmp_path / "comfy.json"
    path.write_text(json.dumps(prompt))
    assert window.open_file(str(path), ask=False), window.last_error
    assert not window.doc.modified and "*" not in window.windowTitle()
    assert window.doc.path is None  # Save asks where: never over the original
    texts = [window.problems.item(i).text() for i in range(window.problems.count())]
    assert any("gone.safetensors" in t for t in texts)
