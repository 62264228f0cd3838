"""Imported ComfyUI workflows run against the fixture models; the editor-format and API-format
imports and the hand-built graph are the same computation (the second and third runs are served
entirely from the signature cache, which keys on node types, versions, values and links)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch

from nodegen.formats import open_any
from nodegen.runtime.engine import Engine

torch.set_num_threads(1)
DATA = Path(__file__).parent / "data" / "comfy"
_spec = importlib.util.spec_from_file_location("comfy_expected", DATA / "expected.py")
expected = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(expected)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from PIL import Image
    from safetensors.torch import save_file

    from tests.support import upscale_fixtures as up
    from tests.support.controlnet_fixtures import build_controlnet, save_controlnet
    from tests.support.fixtures import fixture
    from tests.support.lora_fixtures import peft_lora

    sd1 = fixture("sd1", tmp_path_factory.mktemp("sd1"))
    root = tmp_path_factory.mktemp("models")
    for kind in ("checkpoints", "loras", "controlnet", "upscale_models"):
        (root / kind).mkdir()
    shutil.copy(sd1.single_file, root / "checkpoints" / "tiny-sd1.safetensors")
    save_file(peft_lora(sd1, seed=1), str(root / "loras" / "tiny-lora.safetensors"))
    save_file(peft_lora(sd1, seed=2, text=False), str(root / "loras" / "tiny-lora-2.safetensors"))
    save_controlnet(build_controlnet(sd1.unet, seed=5), root / "controlnet", "tiny-controlnet")
    up.save(up.esrgan_state_dict(), root / "upscale_models" / "tiny-esrgan.safetensors")
    inp = tmp_path_factory.mktemp("input")
    g = torch.Generator().manual_seed(0)
    for name in ("photo.png", "edges.png"):
        arr = (torch.rand(64, 64, 3, generator=g) * 255).to(torch.uint8).numpy()
        Image.fromarray(arr).save(inp / name)
    mask = Image.new("RGB", (64, 64))
    mask.paste((255, 0, 0), (16, 16, 48, 48))
    mask.save(inp / "mask.png")
    return Engine(models=root, input_dir=inp, output_dir=tmp_path_factory.mktemp("out"), device="cpu")


def _behind_editor_nodes(doc: dict) -> set[str]:
    nodes = doc["nodes"]
    found = {nid for nid, n in nodes.items() if n["type"] == "Reroute" or n.get("mode") == "bypass"}
    grew = True
    while grew:
        grew = False
        for nid, n in nodes.items():
            if nid not in found and any(isinstance(v, dict) and v.get("from", [None])[0] in found
                                        for v in n.get("inputs", {}).values()):
                found.add(nid)
                grew = True
    return found


RUNNABLE = ["txt2img", "img2img", "inpaint", "hires_fix", "lora", "controlnet", "esrgan_upscale",
            "custom_sampler", "custom_sigmas", "masks_outpaint", "merging"]


@pytest.mark.parametrize("name", RUNNABLE)
def test_imported_workflow_runs_and_equals_the_hand_built_one(engine, name):
    api = engine.run(open_any(DATA / f"{name}.api.json"))
    assert api.ok, (api.problems, [str(f) for f in api.failures])
    assert api.images and all(min(im.size) >= 32 for im in api.images)
    ui_wf = open_any(DATA / f"{name}.ui.json")
    ui = engine.run(ui_wf)
    # only what sits behind an editor-only node (a reroute, a bypassed node) has a new signature
    assert ui.ok and set(ui.executed) <= _behind_editor_nodes(ui_wf.data), ui.reasons
    assert [list(a.getdata()) for a in ui.images] == [list(a.getdata()) for a in api.images]
    hand = {"format": "nodegen-workflow", "version": 1,
            "nodes": {nid: {"type": t, "inputs": ins} for nid, (t, ins) in expected.EXPECTED[name]().items()}}
    again = engine.run(hand)
    assert again.ok and again.executed == [], again.reasons
    assert [list(a.getdata()) for a in again.images] == [list(a.getdata()) for a in api.images]


def test_changing_an_imported_value_recomputes_downstream(engine):
    first = engine.run(open_any(DATA / "txt2img.api.json"))
    assert first.ok
    other = engine.run(open_any(DATA / "txt2img.api.json"), set={"3.seed": 43})
    assert other.ok and set(other.executed) == {"3", "8", "9"}
    assert list(other.images[0].getdata()) != list(first.images[0].getdata())


def test_graph_with_a_placeholder_runs_where_it_is_not_needed(engine, tmp_path):
    data = json.loads((DATA / "txt2img.api.json").read_text())
    data["30"] = {"class_type": "FaceDetailerPro", "inputs": {"image": ["8", 0], "strength": 0.4}}
    path = tmp_path / "with_custom.json"
    path.write_text(json.dumps(data))
    wf = open_any(path)
    result = engine.run(wf)
    assert result.ok, result.problems
    [warning] = [w for w in result.warnings if w.code == "unknown_type"]
    assert warning.node_id == "30" and "FaceDetailerPro" in warning.message
    data["31"] = {"class_type": "SaveImage", "inputs": {"images": ["30", 0], "filename_prefix": "x"}}
    path.write_text(json.dumps(data))
    blocked = engine.run(open_any(path))
    assert blocked.status == "invalid"
    assert [(p.node_id, p.code) for p in blocked.problems] == [("30", "unknown_type")]


def test_sdxl_base_and_refiner_workflow_runs(engine, tmp_path_factory):
    from tests.support.fixtures import fixture

    base = fixture("sdxl", tmp_path_factory.mktemp("sdxl"))
    refiner = fixture("sdxl_refiner", tmp_path_factory.mktemp("sdxl_refiner"))
    root = tmp_path_factory.mktemp("sdxl-models")
    (root / "checkpoints").mkdir()
    (root / "vae").mkdir()
    shutil.copy(base.single_file, root / "checkpoints" / "tiny-sdxl.safetensors")
    shutil.copy(refiner.single_file, root / "checkpoints" / "tiny-sdxl-refiner.safetensors")
    shutil.copy(base.single_file, root / "vae" / "tiny-sdxl-vae.safetensors")  # a checkpoint's VAE
    eng = Engine(models=root, output_dir=tmp_path_factory.mktemp("sdxl-out"), device="cpu")
    api = eng.run(open_any(DATA / "sdxl_refiner.api.json"))
    assert api.ok, (api.problems, [str(f) for f in api.failures])
    ui = eng.run(open_any(DATA / "sdxl_refiner.ui.json"))  # primitives feed steps and text
    assert ui.ok, (ui.problems, [str(f) for f in ui.failures])
    assert [list(a.getdata()) for a in ui.images] == [list(a.getdata()) for a in api.images]


def test_cli_runs_a_comfy_png_directly(engine, tmp_path):
    from main import main

    root = engine.env.paths.roots[0]
    out = tmp_path / "out"
    rc = main(["run", str(DATA / "txt2img.png"), "--models", str(root), "--out", str(out), "--device", "cpu"])
    assert rc == 0
    [made] = list(out.glob("txt2img_*.png"))
    from nodegen.formats import png

    values = png.read_values(made)
    assert values["inputs"]["3"]["seed"] == 42
    [model] = values["models"]
    assert model["name"] == "tiny-sd1.safetensors" and len(model["sha256"]) == 64 and model["nodes"] == ["4"]
