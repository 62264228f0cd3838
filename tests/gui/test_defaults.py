"""Issue 17.7: a new loader starts on the first model found (the demo model when there is no
other), a new empty latent takes the size that suits the graph's model, and the first window fits
the screen's available area."""

from __future__ import annotations

import json
import struct

from PySide6.QtCore import QPointF, QRect

from nodegen.gui.defaults import native_size
from nodegen.gui.mainwindow import DEFAULT_SIZE, fitted_size

DEMO = "nodegen-demo-shapes.safetensors"


def _fake_safetensors(path, shapes: dict) -> None:
    """A header-only safetensors file with these tensor shapes (enough to detect the family)."""
    header, offset = {}, 0
    for k, shape in shapes.items():
        n = 2
        for d in shape:
            n *= d
        header[k] = {"dtype": "F16", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob)  # the header is all the size rule reads


SDXL_KEYS = {  # the tensors the family rule looks at (two text encoders, SDXL's label embedding)
    "model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
    "model.diffusion_model.label_emb.0.0.weight": (1280, 2816),
    "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight": (49408, 768),
    "conditioner.embedders.1.model.token_embedding.weight": (49408, 1280),
    "first_stage_model.decoder.conv_in.weight": (512, 4, 3, 3),
}


def test_new_loader_and_latent_follow_the_model(window, tmp_path):
    loader = window.add_node("CheckpointLoader", QPointF(0, 0))
    assert window.doc.nodes[loader]["inputs"]["ckpt_name"] == DEMO
    latent = window.add_node("EmptyLatentImage", QPointF(300, 0))
    assert window.doc.nodes[latent]["inputs"]["width"] == 64 == window.doc.nodes[latent]["inputs"]["height"]
    # given values are kept; a latent that needs a link (an upscale) is not touched
    other = window.add_node("EmptyLatentImage", QPointF(300, 200), inputs={"width": 96})
    assert window.doc.nodes[other]["inputs"]["width"] == 96
    up = window.add_node("LatentUpscaleBy", QPointF(600, 0))
    assert "width" not in window.doc.nodes[up]["inputs"]
    # the user's own SDXL file: listed before the demo model, and latents follow it
    from nodegen.models.paths import ModelPaths

    (tmp_path / "models" / "checkpoints").mkdir(parents=True)
    _fake_safetensors(tmp_path / "models" / "checkpoints" / "xl.safetensors", SDXL_KEYS)
    window.engine.env.paths = ModelPaths([tmp_path / "models"])
    window.refresh_schema()
    window.new_file()
    loader = window.add_node("CheckpointLoader", QPointF(0, 0))
    assert window.doc.nodes[loader]["inputs"]["ckpt_name"] == "xl.safetensors"
    latent = window.add_node("EmptyLatentImage", QPointF(300, 0))
    assert window.doc.nodes[latent]["inputs"]["width"] == 1024


def test_native_size_from_the_model_family(tmp_path):
    from nodegen.models.paths import builtin_models

    assert native_size(builtin_models("checkpoints")[DEMO]) == 64
    sdxl = tmp_path / "xl.safetensors"
    _fake_safetensors(sdxl, SDXL_KEYS)
    assert native_size(sdxl) == 1024
    unknown = tmp_path / "odd.safetensors"
    _fake_safetensors(unknown, {"foo.weight": (3, 3)})
    assert native_size(unknown) is None
    assert native_size(tmp_path / "missing.safetensors") is None


def test_window_fits_the_available_screen_area(make_window):
    # 1920x1080 at 1.5x scaling: 1280x720 logical, minus a task bar
    assert fitted_size(*DEFAULT_SIZE, QRect(0, 0, 1280, 680)) == (1203, 612)
    assert fitted_size(*DEFAULT_SIZE, QRect(0, 0, 2560, 1400)) == DEFAULT_SIZE
    from nodegen.gui.mainwindow import MainWindow

    w = MainWindow(make_window().engine)
    avail = w.screen().availableGeometry()
    assert avail.contains(w.frameGeometry())
    w.doc.undo_stack.setClean()
    w.runner.shutdown()
    w.deleteLater()
