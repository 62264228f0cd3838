"""ComfyUI's deprecated "Load Checkpoint With Config" (class CheckpointLoader: config_name, ckpt_name)
imports as our CheckpointLoader in both formats; the config file is dropped with a note saying
what it may have carried."""

from __future__ import annotations

from nodegen.formats import comfy

API = {
    "9": {"class_type": "CheckpointLoader",
          "inputs": {"config_name": "v1-inference_clip_skip_2.yaml", "ckpt_name": "dreamshaper_7.safetensors"}},
    "10": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lake", "clip": ["9", 1]}},
}
UI = {"nodes": [
    {"id": 9, "type": "CheckpointLoader", "outputs": [{"name": "MODEL"}, {"name": "CLIP"}, {"name": "VAE"}],
     "widgets_values": ["v1-inference_clip_skip_2.yaml", "dreamshaper_7.safetensors"]},
    {"id": 10, "type": "CLIPTextEncode", "inputs": [{"name": "clip", "type": "CLIP", "link": 1}],
     "widgets_values": ["a lake"]},
], "links": [[1, 9, 1, 10, 0, "CLIP"]]}


def test_checkpoint_loader_with_config_imports_in_both_formats():
    for data in (API, UI):
        doc, notes = comfy.import_comfy(data)
        loader = doc["nodes"]["9"]
        assert loader["type"] == "CheckpointLoader" and not loader.get("missing")
        assert loader["inputs"] == {"ckpt_name": "dreamshaper_7.safetensors"}
        assert doc["nodes"]["10"]["inputs"]["clip"] == {"from": ["9", "clip"]}
        assert any("config_name" in n and "CLIPSetLastLayer" in n for n in notes)


def test_it_exports_as_the_current_loader():
    doc, _ = comfy.import_comfy(API)
    assert comfy.export_api(doc)["9"]["class_type"] == "CheckpointLoaderSimple"
