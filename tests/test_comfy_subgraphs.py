"""ComfyUI's newer editor files: subgraphs (``definitions.subgraphs``, nested, with promoted widgets)
and the legacy group nodes (``workflow>NAME`` + ``extra.groupNodes``) import as the flat graph
ComfyUI itself runs; the same graph written in the API format (ComfyUI's execution ids
``"<instance>:<inner>"``) imports to the same nodes."""

from __future__ import annotations

import copy

from nodegen.formats import comfy


def _link(lid, o, os_, t, ts, typ):
    return {"id": lid, "origin_id": o, "origin_slot": os_, "target_id": t, "target_slot": ts, "type": typ}


def _sampler_subgraph() -> dict:
    """Inside: text -> CLIPTextEncode -> (nested "Sample" subgraph: KSampler) -> output 0.
    Subgraph inputs: 0 clip, 1 model, 2 negative, 3 latent, 4 text (a widget), 5 seed (a widget)."""
    return {
        "id": "aaaa-sampler", "name": "Prompt and sample", "version": 1,
        "inputNode": {"id": -10}, "outputNode": {"id": -20},
        "inputs": [{"name": n, "type": t} for n, t in [("clip", "CLIP"), ("model", "MODEL"),
                   ("negative", "CONDITIONING"), ("latent", "LATENT"), ("text", "STRING"), ("seed", "INT")]],
        "outputs": [{"name": "LATENT", "type": "LATENT"}],
        "nodes": [
            {"id": 1, "type": "CLIPTextEncode", "pos": [0, 0], "mode": 0,
             "inputs": [{"name": "clip", "type": "CLIP", "link": 1},
                        {"name": "text", "type": "STRING", "widget": {"name": "text"}, "link": 2}],
             "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING", "links": [3]}],
             "widgets_values": ["stale inner text"]},
            {"id": 2, "type": "bbbb-sample", "pos": [300, 0], "mode": 0,
             "inputs": [{"name": "model", "type": "MODEL", "link": 4},
                        {"name": "positive", "type": "CONDITIONING", "link": 3},
                        {"name": "negative", "type": "CONDITIONING", "link": 5},
                        {"name": "latent", "type": "LATENT", "link": 6},
                        {"name": "seed", "type": "INT", "link": 8}],
             "outputs": [{"name": "LATENT", "type": "LATENT", "links": [7]}]},
        ],
        "links": [_link(1, -10, 0, 1, 0, "CLIP"), _link(2, -10, 4, 1, 1, "STRING"),
                  _link(3, 1, 0, 2, 1, "CONDITIONING"), _link(4, -10, 1, 2, 0, "MODEL"),
                  _link(5, -10, 2, 2, 2, "CONDITIONING"), _link(6, -10, 3, 2, 3, "LATENT"),
                  _link(8, -10, 5, 2, 4, "INT"), _link(7, 2, 0, -20, 0, "LATENT")],
    }


def _sample_subgraph() -> dict:
    return {
        "id": "bbbb-sample", "name": "Sample", "version": 1, "inputNode": {"id": -10}, "outputNode": {"id": -20},
        "inputs": [{"name": n, "type": t} for n, t in [("model", "MODEL"), ("positive", "CONDITIONING"),
                   ("negative", "CONDITIONING"), ("latent", "LATENT"), ("seed", "INT")]],
        "outputs": [{"name": "LATENT", "type": "LATENT"}],
        "nodes": [{"id": 5, "type": "KSampler", "pos": [0, 0], "mode": 0,
                   "inputs": [{"name": "model", "type": "MODEL", "link": 1},
                              {"name": "positive", "type": "CONDITIONING", "link": 2},
                              {"name": "negative", "type": "CONDITIONING", "link": 3},
                              {"name": "latent_image", "type": "LATENT", "link": 4},
                              {"name": "seed", "type": "INT", "widget": {"name": "seed"}, "link": 5}],
                   "outputs": [{"name": "LATENT", "type": "LATENT", "links": [6]}],
                   "widgets_values": [1, "fixed", 12, 6.5, "euler", "normal", 1.0]}],
        "links": [_link(1, -10, 0, 5, 0, "MODEL"), _link(2, -10, 1, 5, 1, "CONDITIONING"),
                  _link(3, -10, 2, 5, 2, "CONDITIONING"), _link(4, -10, 3, 5, 3, "LATENT"),
                  _link(5, -10, 4, 5, 4, "INT"), _link(6, 5, 0, -20, 0, "LATENT")],
    }


def ui_workflow() -> dict:
    """Outer graph: checkpoint, negative prompt, empty latent -> subgraph instance 10 -> decode -> save.
    The instance shows the promoted text and seed widgets ("a red fox", 77)."""
    return {
        "last_node_id": 20, "last_link_id": 30, "version": 0.4,
        "nodes": [
            {"id": 4, "type": "CheckpointLoaderSimple", "pos": [0, 0], "mode": 0, "inputs": [],
             "outputs": [{"name": "MODEL", "type": "MODEL"}, {"name": "CLIP", "type": "CLIP"},
                         {"name": "VAE", "type": "VAE"}], "widgets_values": ["tiny-sd1.safetensors"]},
            {"id": 7, "type": "CLIPTextEncode", "pos": [0, 200], "mode": 0,
             "inputs": [{"name": "clip", "type": "CLIP", "link": 21}],
             "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING"}], "widgets_values": ["blurry"]},
            {"id": 5, "type": "EmptyLatentImage", "pos": [0, 400], "mode": 0, "inputs": [],
             "outputs": [{"name": "LATENT", "type": "LATENT"}], "widgets_values": [64, 64, 1]},
            {"id": 10, "type": "aaaa-sampler", "pos": [400, 0], "mode": 0,
             "inputs": [{"name": "clip", "type": "CLIP", "link": 22}, {"name": "model", "type": "MODEL", "link": 23},
                        {"name": "negative", "type": "CONDITIONING", "link": 24},
                        {"name": "latent", "type": "LATENT", "link": 25},
                        {"name": "text", "type": "STRING", "widget": {"name": "text"}, "link": None},
                        {"name": "seed", "type": "INT", "widget": {"name": "seed"}, "link": None}],
             "outputs": [{"name": "LATENT", "type": "LATENT", "links": [26]}],
             "widgets_values": ["a red fox", 77]},
            {"id": 8, "type": "VAEDecode", "pos": [800, 0], "mode": 0,
             "inputs": [{"name": "samples", "type": "LATENT", "link": 26}, {"name": "vae", "type": "VAE", "link": 27}],
             "outputs": [{"name": "IMAGE", "type": "IMAGE"}]},
            {"id": 9, "type": "SaveImage", "pos": [1000, 0], "mode": 0,
             "inputs": [{"name": "images", "type": "IMAGE", "link": 28}], "widgets_values": ["fox"]},
        ],
        "links": [[21, 4, 1, 7, 0, "CLIP"], [22, 4, 1, 10, 0, "CLIP"], [23, 4, 0, 10, 1, "MODEL"],
                  [24, 7, 0, 10, 2, "CONDITIONING"], [25, 5, 0, 10, 3, "LATENT"],
                  [26, 10, 0, 8, 0, "LATENT"], [27, 4, 2, 8, 1, "VAE"], [28, 8, 0, 9, 0, "IMAGE"]],
        "groups": [], "definitions": {"subgraphs": [_sampler_subgraph(), _sample_subgraph()]},
    }


def api_workflow() -> dict:
    """The same graph as ComfyUI queues it: subgraph nodes flattened under their execution ids."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sd1.safetensors"}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "10:1": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox", "clip": ["4", 1]}},
        "10:2:5": {"class_type": "KSampler", "inputs": {
            "seed": 77, "steps": 12, "cfg": 6.5, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0,
            "model": ["4", 0], "positive": ["10:1", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["10:2:5", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "fox", "images": ["8", 0]}},
    }


def _graph(doc: dict) -> dict:
    return {nid: (n["type"], n["inputs"], n.get("mode")) for nid, n in doc["nodes"].items()}


def test_a_nested_subgraph_imports_as_the_flat_graph_comfyui_runs():
    ui, notes = comfy.import_comfy(ui_workflow())
    api, _ = comfy.import_comfy(api_workflow())
    assert _graph(ui) == _graph(api)
    # the promoted widget values won over the inner nodes' stale ones
    assert ui["nodes"]["10:1"]["inputs"]["text"] == "a red fox"
    assert ui["nodes"]["10:2:5"]["inputs"]["seed"] == 77
    assert any("subgraph 'Prompt and sample'" in n for n in notes)
    assert any("subgraph 'Sample'" in n for n in notes)
    assert any(g["title"].startswith("Prompt and sample") for g in ui["groups"])
    # inner nodes are placed where the instance was
    assert ui["nodes"]["10:1"]["ui"]["pos"] == [400, 0]


def test_newer_proxy_widgets_and_inner_values():
    wf = ui_workflow()
    inst = wf["nodes"][3]
    inst["inputs"] = inst["inputs"][:4]  # newer front-ends: no widget inputs on the instance ...
    inst["properties"] = {"proxyWidgets": [["1", "text"], ["2", "seed"]]}  # ... but a proxy list
    inst["widgets_values"] = []  # values live in the inner nodes
    for sg in wf["definitions"]["subgraphs"]:
        sg["links"] = [lk for lk in sg["links"] if not (lk["origin_id"] == -10 and lk["type"] in ("STRING", "INT"))]
    doc, _ = comfy.import_comfy(wf)
    assert doc["nodes"]["10:1"]["inputs"]["text"] == "stale inner text"
    assert doc["nodes"]["10:2:5"]["inputs"]["seed"] == 1
    inst["widgets_values"] = ["from the proxy", 5]
    doc, _ = comfy.import_comfy(wf)
    assert doc["nodes"]["10:1"]["inputs"]["text"] == "from the proxy"


def test_a_muted_or_bypassed_subgraph_mutes_or_bypasses_its_nodes():
    for mode, ours in ((2, "muted"), (4, "bypass")):
        wf = ui_workflow()
        wf["nodes"][3]["mode"] = mode
        doc, _ = comfy.import_comfy(wf)
        assert doc["nodes"]["10:1"]["mode"] == ours and doc["nodes"]["10:2:5"]["mode"] == ours
        assert "mode" not in doc["nodes"]["8"]


def _group_node_workflow() -> dict:
    inner = copy.deepcopy([
        {"index": 0, "type": "CheckpointLoaderSimple", "inputs": [],
         "outputs": [{"name": "MODEL"}, {"name": "CLIP"}, {"name": "VAE"}], "widgets_values": ["old.ckpt"]},
        {"index": 1, "type": "CLIPTextEncode", "inputs": [{"name": "clip", "link": None}],
         "outputs": [{"name": "CONDITIONING"}], "widgets_values": ["old"]},
        {"index": 2, "type": "CLIPTextEncode", "inputs": [{"name": "clip", "link": None}],
         "outputs": [{"name": "CONDITIONING"}], "widgets_values": ["old"]},
        {"index": 3, "type": "KSampler",
         "inputs": [{"name": "model"}, {"name": "positive"}, {"name": "negative"}, {"name": "latent_image"}],
         "outputs": [{"name": "LATENT"}], "widgets_values": [0, "fixed", 20, 8, "euler", "normal", 1]},
        {"index": 4, "type": "VAEDecode", "inputs": [{"name": "samples"}, {"name": "vae"}],
         "outputs": [{"name": "IMAGE"}]},
    ])
    return {
        "nodes": [
            {"id": 20, "type": "EmptyLatentImage", "outputs": [{"name": "LATENT", "type": "LATENT"}],
             "widgets_values": [64, 64, 1]},
            {"id": 10, "type": "workflow>txt2img", "inputs": [{"name": "latent_image", "type": "LATENT", "link": 1}],
             "outputs": [{"name": "IMAGE", "type": "IMAGE"}],
             "widgets_values": ["tiny-sd1.safetensors", "a fox", "blurry", 3, "fixed", 2, 7.0, "euler", "karras", 1]},
            {"id": 30, "type": "SaveImage", "inputs": [{"name": "images", "type": "IMAGE", "link": 2}],
             "widgets_values": ["out"]},
        ],
        "links": [[1, 20, 0, 10, 0, "LATENT"], [2, 10, 0, 30, 0, "IMAGE"]],
        "extra": {"groupNodes": {"txt2img": {"nodes": inner, "external": [], "links": [
            [0, 1, 1, 0, 4, "CLIP"], [0, 1, 2, 0, 4, "CLIP"], [0, 0, 3, 0, 4, "MODEL"],
            [1, 0, 3, 1, 6, "CONDITIONING"], [2, 0, 3, 2, 7, "CONDITIONING"], [3, 0, 4, 0, 3, "LATENT"],
            [0, 2, 4, 1, 4, "VAE"]]}}},
    }


def test_a_legacy_group_node_imports_as_its_nodes():
    doc, notes = comfy.import_comfy(_group_node_workflow())
    api, _ = comfy.import_comfy({
        "20": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "10:0": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sd1.safetensors"}},
        "10:1": {"class_type": "CLIPTextEncode", "inputs": {"text": "a fox", "clip": ["10:0", 1]}},
        "10:2": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["10:0", 1]}},
        "10:3": {"class_type": "KSampler", "inputs": {
            "seed": 3, "steps": 2, "cfg": 7.0, "sampler_name": "euler", "scheduler": "karras", "denoise": 1,
            "model": ["10:0", 0], "positive": ["10:1", 0], "negative": ["10:2", 0], "latent_image": ["20", 0]}},
        "10:4": {"class_type": "VAEDecode", "inputs": {"samples": ["10:3", 0], "vae": ["10:0", 2]}},
        "30": {"class_type": "SaveImage", "inputs": {"filename_prefix": "out", "images": ["10:4", 0]}},
    })
    assert _graph(doc) == _graph(api)
    assert any("group node 'txt2img' expanded" in n for n in notes)


def test_an_empty_choice_is_left_unset_with_a_note():
    doc, notes = comfy.import_comfy({"nodes": [{"id": 1, "type": "UpscaleModelLoader", "widgets_values": [None]}],
                                     "links": []})
    assert "model_name" not in doc["nodes"]["1"]["inputs"]
    assert any("no value saved for 'model_name'" in n for n in notes)


def test_a_placeholder_named_like_one_of_our_types_does_not_pass_for_it():
    # "String" is our type (mapped from PrimitiveString); a third-party ComfyUI class of that name is not it
    doc, _ = comfy.import_comfy({"1": {"class_type": "String", "inputs": {"text": "x"}}})
    assert doc["nodes"]["1"]["type"] == "String (ComfyUI)" and doc["nodes"]["1"]["missing"]
    assert comfy.export_api(doc)["1"]["class_type"] == "String"
