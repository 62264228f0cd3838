"""ComfyUI import: both formats, our own test workflows and ComfyUI's real examples."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from nodegen.formats import comfy, open_any
from nodegen.formats.comfy.mapping import all_maps
from nodegen.kernel.workflow import WorkflowError

DATA = Path(__file__).parent / "data" / "comfy"
EXAMPLES = Path(__file__).parent.parent.parent / "shared" / "comfy-examples"
_spec = importlib.util.spec_from_file_location("comfy_expected", DATA / "expected.py")
expected = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(expected)
NAMES = sorted(expected.EXPECTED)


def structure(doc: dict, drop=("Note", "Reroute")) -> dict:
    return {nid: (n["type"], n.get("inputs", {})) for nid, n in doc["nodes"].items() if n["type"] not in drop}


def load_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def api_normal(api: dict) -> dict:
    """ComfyUI API data without its editor-only inputs, for comparison."""
    return {str(k): (v["class_type"], {a: b for a, b in v["inputs"].items()
                                       if a not in ("choose file to upload", "upload")})
            for k, v in api.items()}


# -- our test workflows -------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_api_import_equals_hand_built_graph(name):
    wf = open_any(DATA / f"{name}.api.json")  # Workflow.load converts ComfyUI files itself
    assert structure(wf.data) == expected.EXPECTED[name]()
    assert wf.data["metadata"]["import"]["from"] == "ComfyUI API prompt"
    assert wf.data["metadata"]["import"]["notes"] == []


@pytest.mark.parametrize("name", NAMES)
def test_ui_import_exports_back_to_the_api_file(name):
    """The editor file (positional widgets, seed controls, primitives, reroutes, muted and bypassed
    nodes) means exactly what ComfyUI's API export of it says."""
    doc, _notes = comfy.import_comfy(load_json(DATA / f"{name}.ui.json"))
    assert api_normal(comfy.export_api(doc)) == api_normal(load_json(DATA / f"{name}.api.json"))


@pytest.mark.parametrize("name", ["txt2img", "img2img", "inpaint", "hires_fix", "controlnet", "custom_sampler"])
def test_ui_import_equals_hand_built_graph(name):
    doc, _ = comfy.import_comfy(load_json(DATA / f"{name}.ui.json"))
    got = structure(doc)
    want = expected.EXPECTED[name]()
    if name == "txt2img":  # SaveImage reads through the reroute (node 20)
        assert got["9"][1]["images"] == {"from": ["20", "value"]}
        assert doc["nodes"]["20"]["inputs"] == {"value": {"from": ["8", "image"]}}
        got["9"][1]["images"] = want["9"][1]["images"]
    assert got == want


def test_ui_extras_carry_over():
    doc, _ = comfy.import_comfy(load_json(DATA / "txt2img.ui.json"))
    nodes = doc["nodes"]
    assert nodes["3"]["ui"]["seed_control"] == {"seed": "randomize"}
    assert nodes["3"]["ui"]["pos"] == [0, 0] and nodes["3"]["ui"]["size"] == [315, 120]
    assert nodes["21"] == {"type": "Note", "type_version": 1, "inputs": {"text": "Seeds randomise after each run."},
                           "title": "About", "ui": {"pos": [0, -200], "size": [210, 60], "color": "#432",
                                                    "bgcolor": "#653"}}
    assert doc["groups"] == [{"title": "Prompt", "bounding": [280, -40, 700, 400], "color": "#3f789e",
                              "font_size": 24}]
    lora, _ = comfy.import_comfy(load_json(DATA / "lora.ui.json"))
    assert lora["nodes"]["21"]["mode"] == "bypass"
    assert lora["nodes"]["3"]["inputs"]["model"] == {"from": ["21", "model"]}
    esr, _ = comfy.import_comfy(load_json(DATA / "esrgan_upscale.ui.json"))
    assert esr["nodes"]["21"]["mode"] == "muted" and esr["nodes"]["10"]["ui"]["collapsed"] is True


def test_primitive_nodes_become_our_primitives_or_inline_values():
    doc, notes = comfy.import_comfy(load_json(DATA / "sdxl_refiner.ui.json"))
    n = doc["nodes"]
    assert n["30"]["type"] == "Int" and n["30"]["inputs"] == {"value": 6} and n["30"]["title"] == "steps"
    assert n["30"]["ui"]["seed_control"] == {"value": "fixed"}
    assert n["10"]["inputs"]["steps"] == {"from": ["30", "value"]}
    assert n["11"]["inputs"]["steps"] == {"from": ["30", "value"]}
    assert n["32"]["type"] == "String" and n["16"]["inputs"]["text"] == {"from": ["32", "value"]}
    assert "31" not in n  # a choice primitive: its value is written into what it feeds
    assert n["10"]["inputs"]["sampler_name"] == "euler" and n["11"]["inputs"]["sampler_name"] == "euler"
    assert any("31" in note and "sampler_name" in note for note in notes)
    assert n["10"]["ui"]["seed_control"] == {"noise_seed": "fixed"}
    assert n["33"]["type"] == "Note" and n["33"]["inputs"]["text"].startswith("# SDXL")


def test_png_with_both_chunks_opens_from_the_editor_chunk():
    wf = open_any(DATA / "txt2img.png")
    assert wf.data["metadata"]["import"]["chunk"] == "workflow"
    assert "21" in wf.nodes  # the note exists only in the editor chunk
    from nodegen.formats.comfy import import_png_text

    text = {"prompt": (DATA / "txt2img.api.json").read_text(), "workflow": "{not json"}
    doc = import_png_text(text, source="x.png")  # a broken editor chunk falls back to the prompt
    assert doc["metadata"]["import"]["chunk"] == "prompt"
    assert structure(doc) == expected.txt2img()


# -- ComfyUI's own examples -----------------------------------------------------------------

def _examples():
    if not EXAMPLES.is_dir():
        return []
    return sorted(p.name[: -len(".workflow.json")] for p in EXAMPLES.glob("*.workflow.json"))


@pytest.mark.skipif(not EXAMPLES.is_dir(), reason="../shared/comfy-examples is not here")
@pytest.mark.parametrize("name", _examples())
def test_real_comfy_examples_both_formats_agree(name):
    ui = load_json(EXAMPLES / f"{name}.workflow.json")
    api = load_json(EXAMPLES / f"{name}.prompt.json")
    wf = open_any(ui)  # schema-valid after conversion
    from_api = open_any(api)
    if any(n.get("missing") for n in wf.nodes.values()):
        # a placeholder from the editor format cannot be exported; compare the mapped nodes
        placeholders = {nid for nid, n in wf.nodes.items() if n.get("missing")}
        assert placeholders == {nid for nid, n in from_api.nodes.items() if n.get("missing")}
        def slots(doc):  # links from a placeholder: by slot (UI names them, the API cannot)
            out = {}
            for k, (t, ins) in structure(doc).items():
                if k in placeholders:
                    continue
                fixed = {}
                for name, v in ins.items():
                    if isinstance(v, dict) and v.get("from", [None])[0] in placeholders:
                        src = doc["nodes"][v["from"][0]]
                        names = [o["name"].lower() for o in src["comfy"].get("outputs", [])]
                        out_name = v["from"][1]
                        v = (v["from"][0], names.index(out_name) if out_name in names
                             else int(out_name.split("_")[1]))
                    fixed[name] = v
                out[k] = (t, fixed)
            return out

        assert slots(wf.data) == slots(from_api.data)
    else:
        assert api_normal(comfy.export_api(wf.data)) == api_normal(api)
    assert api_normal(comfy.export_api(from_api.data)) == api_normal(api)


@pytest.mark.skipif(not EXAMPLES.is_dir(), reason="../shared/comfy-examples is not here")
def test_real_examples_keep_layout_groups_and_widget_order():
    wf = open_any(EXAMPLES / "sdxl__sdxl_refiner_prompt_example.workflow.json")
    n = wf.nodes
    assert n["11"]["inputs"]["steps"] == {"from": ["45", "value"]} and n["45"]["type"] == "Int"
    assert n["10"]["inputs"]["end_at_step"] == {"from": ["47", "value"]} and n["47"]["inputs"] == {"value": 20}
    assert n["10"]["inputs"]["add_noise"] is True and n["11"]["inputs"]["return_with_leftover_noise"] is False
    assert n["36"]["type"] == "Note" and n["36"]["title"] == "Note - Load Checkpoint BASE"
    assert n["12"]["ui"]["pos"] == [600, -611] and n["12"]["ui"]["size"] == [350, 100]
    assert len(wf.data["groups"]) == 7 and wf.data["groups"][0]["title"] == "Base Prompt"
    old = open_any(EXAMPLES / "controlnet__depth_t2i_adapter.workflow.json")
    ks = next(x for x in old.nodes.values() if x["type"] == "KSampler")
    assert ks["inputs"]["steps"] == 20 and ks["ui"]["seed_control"] == {"seed": "randomize"}  # old: true


@pytest.mark.skipif(not EXAMPLES.is_dir(), reason="../shared/comfy-examples is not here")
def test_comfy_png_opens_directly():
    wf = open_any(EXAMPLES / "lora__lora.png")
    assert {n["type"] for n in wf.nodes.values()} >= {"CheckpointLoader", "LoraLoader", "KSampler", "SaveImage"}
    assert wf.nodes["10"]["inputs"]["lora_name"] == "epiNoiseoffset_v2.safetensors"


# -- unmapped nodes, odd files, bad files ---------------------------------------------------

def _ui(nodes, links, **extra):
    return {"last_node_id": 9, "last_link_id": 9, "nodes": nodes, "links": links, "groups": [],
            "version": 0.4, **extra}


def test_unmapped_node_is_kept_as_placeholder_with_links():
    data = load_json(DATA / "txt2img.api.json")
    data["30"] = {"class_type": "FancyFaceFixer", "inputs": {"strength": 0.7, "image": ["8", 0]}}
    data["31"] = {"class_type": "PreviewImage", "inputs": {"images": ["30", 0]}}
    doc, notes = comfy.import_comfy(data)
    ph = doc["nodes"]["30"]
    assert ph["type"] == "FancyFaceFixer" and ph["missing"] is True
    assert ph["inputs"] == {"image": {"from": ["8", "image"]}}
    assert ph["comfy"] == data["30"]
    assert doc["nodes"]["31"]["inputs"]["images"] == {"from": ["30", "output_0"]}
    assert any("FancyFaceFixer" in n and "placeholder" in n for n in notes)
    # exported back from its original data
    assert comfy.export_api(doc)["30"] == data["30"]


def test_ui_placeholder_keeps_output_names_and_position():
    nodes = [
        {"id": 1, "type": "LoadImage", "pos": [0, 0], "size": [200, 100], "mode": 0,
         "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [1]}, {"name": "MASK", "type": "MASK", "links": []}],
         "widgets_values": ["a.png", "image"]},
        {"id": 2, "type": "SuperNode", "pos": [300, 0], "size": [200, 100], "mode": 0,
         "inputs": [{"name": "picture", "type": "IMAGE", "link": 1}],
         "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [2]}], "widgets_values": [3, "x"]},
        {"id": 3, "type": "SaveImage", "pos": [600, 0], "mode": 0,
         "inputs": [{"name": "images", "type": "IMAGE", "link": 2}], "widgets_values": ["out"]},
    ]
    links = [{"id": 1, "origin_id": 1, "origin_slot": 0, "target_id": 2, "target_slot": 0, "type": "IMAGE"},
             {"id": 2, "origin_id": 2, "origin_slot": 0, "target_id": 3, "target_slot": 0, "type": "IMAGE"}]
    doc, _ = comfy.import_comfy(_ui(nodes, links))
    assert doc["nodes"]["2"]["inputs"] == {"picture": {"from": ["1", "image"]}}
    assert doc["nodes"]["2"]["ui"]["pos"] == [300, 0] and doc["nodes"]["2"]["comfy"]["widgets_values"] == [3, "x"]
    assert doc["nodes"]["3"]["inputs"]["images"] == {"from": ["2", "image"]}
    with pytest.raises(comfy.ComfyExportError, match="node 2 .*SuperNode"):
        comfy.export_api(doc)


def test_widget_values_saved_by_name_and_count_mismatches():
    nodes = [{"id": 5, "type": "EmptyLatentImage", "mode": 0, "widgets_values": {"width": 128, "height": 96,
                                                                                  "batch_size": 2}},
             {"id": 6, "type": "LatentUpscaleBy", "mode": 0, "widgets_values": ["bilinear"]},
             {"id": 7, "type": "SaveImage", "mode": 0, "widgets_values": ["a", "b"]}]
    doc, notes = comfy.import_comfy(_ui(nodes, []))
    assert doc["nodes"]["5"]["inputs"] == {"width": 128, "height": 96, "batch_size": 2}
    assert doc["nodes"]["6"]["inputs"] == {"upscale_method": "bilinear"}
    assert any("node 6" in n and "scale_by" in n and "defaults" in n for n in notes)
    assert any("node 7" in n and "extra widget value" in n for n in notes)


def test_comfy_file_suffixes_and_ui_only_inputs_are_dropped():
    data = {"1": {"class_type": "LoadImage", "inputs": {"image": "clipspace/mask-1.png [input]",
                                                          "choose file to upload": "image"}}}
    doc, _ = comfy.import_comfy(data)
    assert doc["nodes"]["1"]["inputs"] == {"image": "clipspace/mask-1.png"}


@pytest.mark.parametrize("bad, match", [
    ({"1": {"class_type": "KSampler", "inputs": []}}, "node 1 \\(KSampler\\): 'inputs' must be an object"),
    ({"1": {"class_type": "", "inputs": {}}}, "node 1: 'class_type' must be a non-empty string"),
    (_ui([{"id": 1}], []), "a node entry has no 'id' or 'type'"),
])
def test_bad_comfy_files_give_clear_errors(tmp_path, bad, match):
    with pytest.raises(comfy.ComfyImportError, match=match):
        comfy.import_comfy(bad)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(WorkflowError, match="bad.json.*cannot import this ComfyUI workflow"):
        open_any(path)


def test_non_workflow_json_is_refused():
    with pytest.raises(WorkflowError, match="not a nodegen workflow"):
        open_any({"hello": 1})


def test_every_map_is_consistent():
    seen = set()
    for m in all_maps():
        assert m.comfy not in seen
        seen.add(m.comfy)
        names = [w for w in m.widgets if w]
        assert len(set(names)) == len(names), m.comfy
        assert m.seeds <= set(names), m.comfy
        assert set(m.to_ours) <= set(names), m.comfy


def test_bypassed_unmapped_node_is_wired_past():
    ui = load_json(DATA / "txt2img.ui.json")
    # put a bypassed custom node between the reroute and SaveImage
    ui["nodes"].append({"id": 40, "type": "CustomSharpen", "mode": 4, "pos": [1, 1],
                        "inputs": [{"name": "image", "type": "IMAGE", "link": 90},
                                   {"name": "amount_src", "type": "FLOAT", "link": None}],
                        "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [91]}], "widgets_values": [0.5]})
    save = next(n for n in ui["nodes"] if n["id"] == 9)
    old = save["inputs"][0]["link"]
    ui["links"] = [lk for lk in ui["links"] if lk[0] != old] + [[90, 20, 0, 40, 0, "IMAGE"],
                                                                [91, 40, 0, 9, 0, "IMAGE"]]
    save["inputs"][0]["link"] = 91
    doc, notes = comfy.import_comfy(ui)
    assert doc["nodes"]["40"]["missing"] and doc["nodes"]["40"]["mode"] == "bypass"
    assert doc["nodes"]["9"]["inputs"]["images"] == {"from": ["20", "value"]}
    assert any("bypassed node 40" in n for n in notes)


def test_image_mask_latent_and_text_utility_nodes():
    api = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "ImageBlend", "inputs": {"blend_factor": 0.3, "blend_mode": "screen",
                                                     "image1": ["1", 0], "image2": ["2", 0]}},
        "4": {"class_type": "ImageCrop", "inputs": {"width": 32, "height": 16, "x": 4, "y": 2, "image": ["3", 0]}},
        "5": {"class_type": "ImageToMask", "inputs": {"channel": "green", "image": ["4", 0]}},
        "6": {"class_type": "InvertMask", "inputs": {"mask": ["5", 0]}},
        "7": {"class_type": "MaskToImage", "inputs": {"mask": ["6", 0]}},
        "8": {"class_type": "StringConcatenate", "inputs": {"string_a": "a", "string_b": "b", "delimiter": ", "}},
        "9": {"class_type": "StringReplace", "inputs": {"string": ["8", 0], "find": "a", "replace": "c"}},
    }
    doc, notes = comfy.import_comfy(api)
    assert notes == []
    lk = expected.lk
    assert structure(doc) == {
        "1": ("LoadImage", {"image": "a.png"}), "2": ("ImageInvert", {"image": lk(1, "image")}),
        "3": ("ImageBlend", {"blend_factor": 0.3, "blend_mode": "screen", "image1": lk(1, "image"),
                             "image2": lk(2, "image")}),
        "4": ("ImageCrop", {"width": 32, "height": 16, "x": 4, "y": 2, "image": lk(3, "image")}),
        "5": ("ImageToMask", {"channel": "green", "image": lk(4, "image")}),
        "6": ("InvertMask", {"mask": lk(5, "mask")}), "7": ("MaskToImage", {"mask": lk(6, "mask")}),
        "8": ("StringConcat", {"a": "a", "b": "b", "separator": ", "}),
        "9": ("StringReplace", {"text": lk(8, "text"), "find": "a", "replace": "c"})}
    assert comfy.export_api(doc) == api


def test_tiled_vae_and_sigma_nodes_from_the_editor_format():
    nodes = [{"id": 1, "type": "VAEDecodeTiled", "mode": 0, "widgets_values": [256, 32, 64, 8]},
             {"id": 2, "type": "VAEEncodeTiled", "mode": 0, "widgets_values": [512, 64, 32, 4]},
             {"id": 3, "type": "ExponentialScheduler", "mode": 0, "widgets_values": [10, 14.6, 0.03]},
             {"id": 4, "type": "SplitSigmas", "mode": 0, "widgets_values": [3],
              "inputs": [{"name": "sigmas", "type": "SIGMAS", "link": 1}]},
             {"id": 5, "type": "LatentFromBatch", "mode": 0, "widgets_values": [1, 2]},
             {"id": 6, "type": "RepeatLatentBatch", "mode": 0, "widgets_values": [3],
              "inputs": [{"name": "samples", "type": "LATENT", "link": 2}]}]
    links = [[1, 3, 0, 4, 0, "SIGMAS"], [2, 5, 0, 6, 0, "LATENT"]]
    doc, notes = comfy.import_comfy(_ui(nodes, links))
    n = doc["nodes"]
    assert n["1"]["inputs"] == {"tile_size": 256, "overlap": 32}
    assert n["2"]["inputs"] == {"tile_size": 512, "overlap": 64}
    assert [x for x in notes if "temporal" in x] == [
        "node 2 (VAEEncodeTiled): input 'temporal_size' = 32 has no nodegen counterpart; dropped",
        "node 2 (VAEEncodeTiled): input 'temporal_overlap' = 4 has no nodegen counterpart; dropped"]
    assert n["3"]["inputs"] == {"steps": 10, "sigma_max": 14.6, "sigma_min": 0.03}
    assert n["4"]["inputs"] == {"step": 3, "sigmas": {"from": ["3", "sigmas"]}}
    assert n["6"]["inputs"] == {"amount": 3, "samples": {"from": ["5", "latent"]}}
    assert comfy.export_api(doc)["1"]["inputs"] == {"tile_size": 256, "overlap": 32, "temporal_size": 64,
                                                    "temporal_overlap": 8}
