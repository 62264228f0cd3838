"""ComfyUI's InpaintModelConditioning (the inputs of 9-channel inpainting models) imports as ours in
both formats, every output slot landing on our named output, and validates."""

from __future__ import annotations

import pytest

from nodegen.formats import comfy
from nodegen.runtime.engine import Engine

API = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "inpaint.safetensors"}},
    "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["1", 1]}},
    "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
    "4": {"class_type": "LoadImage", "inputs": {"image": "photo.png"}},
    "5": {"class_type": "InpaintModelConditioning", "inputs": {
        "noise_mask": False, "positive": ["2", 0], "negative": ["3", 0], "vae": ["1", 2],
        "pixels": ["4", 0], "mask": ["4", 1]}},
    "6": {"class_type": "KSampler", "inputs": {
        "seed": 1, "steps": 2, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0,
        "model": ["1", 0], "positive": ["5", 0], "negative": ["5", 1], "latent_image": ["5", 2]}},
}


def _ui() -> dict:
    def out(*names):
        return [{"name": n, "type": n} for n in names]

    nodes = [
        {"id": 1, "type": "CheckpointLoaderSimple", "outputs": out("MODEL", "CLIP", "VAE"),
         "widgets_values": ["inpaint.safetensors"]},
        {"id": 2, "type": "CLIPTextEncode", "inputs": [{"name": "clip", "link": 1}], "widgets_values": ["a cat"]},
        {"id": 3, "type": "CLIPTextEncode", "inputs": [{"name": "clip", "link": 2}], "widgets_values": [""]},
        {"id": 4, "type": "LoadImage", "outputs": out("IMAGE", "MASK"), "widgets_values": ["photo.png", "image"]},
        {"id": 5, "type": "InpaintModelConditioning",
         "inputs": [{"name": n, "link": lk} for n, lk in
                    (("positive", 3), ("negative", 4), ("vae", 5), ("pixels", 6), ("mask", 7))],
         "outputs": out("positive", "negative", "latent"), "widgets_values": [False]},
        {"id": 6, "type": "KSampler",
         "inputs": [{"name": n, "link": lk} for n, lk in
                    (("model", 8), ("positive", 9), ("negative", 10), ("latent_image", 11))],
         "widgets_values": [1, "fixed", 2, 5.0, "euler", "normal", 1.0]},
    ]
    links = [[1, 1, 1, 2, 0, "CLIP"], [2, 1, 1, 3, 0, "CLIP"], [3, 2, 0, 5, 0, "CONDITIONING"],
             [4, 3, 0, 5, 1, "CONDITIONING"], [5, 1, 2, 5, 2, "VAE"], [6, 4, 0, 5, 3, "IMAGE"],
             [7, 4, 1, 5, 4, "MASK"], [8, 1, 0, 6, 0, "MODEL"], [9, 5, 0, 6, 1, "CONDITIONING"],
             [10, 5, 1, 6, 2, "CONDITIONING"], [11, 5, 2, 6, 3, "LATENT"]]
    return {"nodes": nodes, "links": links}


@pytest.mark.parametrize("data", [API, _ui()], ids=["api", "ui"])
def test_inpaint_model_conditioning_imports_and_validates(tmp_path, data):
    doc, _ = comfy.import_comfy(data)
    n = doc["nodes"]["5"]
    assert n["type"] == "InpaintModelConditioning" and n["inputs"]["noise_mask"] is False
    assert n["inputs"]["mask"] == {"from": ["4", "mask"]}
    k = doc["nodes"]["6"]["inputs"]
    assert (k["positive"], k["negative"], k["latent_image"]) == (
        {"from": ["5", "positive"]}, {"from": ["5", "negative"]}, {"from": ["5", "latent"]})
    (tmp_path / "photo.png").write_bytes(b"")
    plan = Engine(models=tmp_path, input_dir=tmp_path, device="cpu").validate(doc, targets=["6"])
    assert {(p.node_id, p.code) for p in plan.problems} <= {("1", "missing_file"), ("4", "invalid_image")}
