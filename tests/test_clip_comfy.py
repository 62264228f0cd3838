"""ComfyUI's CLIPVisionLoader / CLIPVisionEncode (the image half of IP-Adapter workflows) map onto
ours: names, inputs, widget order and outputs, both ways."""

from __future__ import annotations

from nodegen.formats.comfy import import_comfy
from nodegen.formats.comfy.export import export_api

API = {
    "1": {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors"}},
    "2": {"class_type": "LoadImage", "inputs": {"image": "face.png", "upload": "image"}},
    "3": {"class_type": "CLIPVisionEncode", "inputs": {"clip_vision": ["1", 0], "image": ["2", 0], "crop": "none"}},
}


def test_api_prompt_imports_and_exports_back():
    doc, notes = import_comfy(API)
    nodes = doc["nodes"]
    assert nodes["1"]["type"] == "CLIPVisionLoader"
    assert nodes["1"]["inputs"] == {"clip_name": "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors"}
    assert nodes["3"]["type"] == "CLIPVisionEncode"
    assert nodes["3"]["inputs"] == {"clip_vision": {"from": ["1", "clip_vision"]}, "image": {"from": ["2", "image"]},
                                    "crop": "none"}
    back = export_api(doc)
    assert back["3"]["class_type"] == "CLIPVisionEncode"
    assert back["3"]["inputs"] == {"clip_vision": ["1", 0], "image": ["2", 0], "crop": "none"}
    assert back["1"]["inputs"] == API["1"]["inputs"]


def test_ui_widgets_map_in_comfy_order():
    ui = {"last_node_id": 2, "last_link_id": 1, "version": 0.4, "links": [[1, 1, 0, 2, 0, "CLIP_VISION"]],
          "nodes": [
              {"id": 1, "type": "CLIPVisionLoader", "pos": [0, 0], "size": [300, 60], "inputs": [],
               "outputs": [{"name": "CLIP_VISION", "type": "CLIP_VISION", "links": [1], "slot_index": 0}],
               "widgets_values": ["clip_vision_g.safetensors"], "mode": 0},
              {"id": 2, "type": "CLIPVisionEncode", "pos": [400, 0], "size": [300, 80],
               "inputs": [{"name": "clip_vision", "type": "CLIP_VISION", "link": 1},
                          {"name": "image", "type": "IMAGE", "link": None}],
               "outputs": [{"name": "CLIP_VISION_OUTPUT", "type": "CLIP_VISION_OUTPUT", "links": [], "slot_index": 0}],
               "widgets_values": ["center"], "mode": 0}]}
    doc, _ = import_comfy(ui)
    assert doc["nodes"]["1"]["inputs"] == {"clip_name": "clip_vision_g.safetensors"}
    assert doc["nodes"]["2"]["inputs"]["crop"] == "center"
    assert doc["nodes"]["2"]["inputs"]["clip_vision"] == {"from": ["1", "clip_vision"]}
