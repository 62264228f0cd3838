"""Export to ComfyUI's API format, and the import/export commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nodegen.formats import comfy
from nodegen.kernel.registry import default_registry

DATA = Path(__file__).parent / "data" / "comfy"


@pytest.mark.parametrize("name", sorted(p.name[:-9] for p in DATA.glob("*.api.json")))
def test_api_round_trip(name):
    api = json.loads((DATA / f"{name}.api.json").read_text())
    doc, _ = comfy.import_comfy(api)
    out = comfy.export_api(doc)
    for n in api.values():
        n["inputs"].pop("upload", None)
    assert out == api


def test_export_resolves_editor_only_nodes_and_converts_values():
    lk = lambda i, o: {"from": [i, o]}  # noqa: E731
    doc = {"nodes": {
        "1": {"type": "Int", "inputs": {"value": 9}},
        "2": {"type": "Seed", "inputs": {"seed": 77}},
        "3": {"type": "Reroute", "inputs": {"value": lk("2", "seed")}},
        "4": {"type": "KSamplerAdvanced", "title": "Base", "inputs": {
            "add_noise": True, "noise_seed": lk("3", "value"), "steps": lk("1", "value"),
            "return_with_leftover_noise": False, "model": lk("6", "model"), "latent_image": lk("8", "latent")}},
        "5": {"type": "Note", "inputs": {"text": "hello"}},
        "6": {"type": "CheckpointLoader", "inputs": {"ckpt_name": "a.safetensors"}},
        "7": {"type": "LoraLoaderModelOnly", "mode": "muted", "inputs": {"model": lk("6", "model")}},
        "8": {"type": "LatentUpscaleBy", "mode": "bypass",
              "inputs": {"samples": lk("9", "latent"), "scale_by": 2.0}},
        "9": {"type": "EmptyLatentImage", "inputs": {"width": 64}},
    }}
    out = comfy.export_api(doc)
    assert set(out) == {"4", "6", "9"}
    assert out["4"] == {"class_type": "KSamplerAdvanced", "_meta": {"title": "Base"}, "inputs": {
        "add_noise": "enable", "noise_seed": 77, "steps": 9, "return_with_leftover_noise": "disable",
        "model": ["6", 0], "latent_image": ["9", 0]}}
    assert out["6"]["class_type"] == "CheckpointLoaderSimple"


def test_export_fills_defaults_from_the_registry_and_renames():
    doc = {"nodes": {"1": {"type": "LoadImage", "inputs": {"image": "a.png"}},
                     "2": {"type": "ImageScale", "inputs": {"image": {"from": ["1", "image"]}, "width": 32}}}}
    out = comfy.export_api(doc, default_registry())
    assert out["2"] == {"class_type": "ImageScale", "inputs": {
        "upscale_method": "bilinear", "width": 32, "height": 512, "crop": "disabled", "image": ["1", 0]}}


def test_export_refuses_nodes_without_a_comfy_equivalent():
    doc = {"nodes": {"1": {"type": "LoadImage", "inputs": {"image": "a.png"}},
                     "2": {"type": "LineartEdges", "title": "Flip", "inputs": {"image": {"from": ["1", "image"]}}},
                     "3": {"type": "SaveImage", "inputs": {"images": {"from": ["2", "image"]}}}}}
    with pytest.raises(comfy.ComfyExportError, match="node 2 \\(Flip\\): node type .LineartEdges. has no ComfyUI"):
        comfy.export_api(doc)


def test_import_and_export_commands(tmp_path, capsys):
    from main import main

    out = tmp_path / "wf.json"
    assert main(["import", "comfy", str(DATA / "sdxl_refiner.ui.json"), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "note: node 31 (PrimitiveNode)" in err
    doc = json.loads(out.read_text())
    assert doc["format"] == "nodegen-workflow" and doc["nodes"]["10"]["type"] == "KSamplerAdvanced"
    api_out = tmp_path / "api.json"
    assert main(["export", "comfy", str(out), "-o", str(api_out)]) == 0
    api = json.loads(api_out.read_text())
    assert api["10"]["inputs"]["steps"] == 6 and api["10"]["inputs"]["add_noise"] == "enable"
    assert main(["import", "comfy", str(out), "-o", str(tmp_path / "again.json")]) == 2
    assert "already a nodegen workflow" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "nodegen-workflow", "version": 1,
                               "nodes": {"1": {"type": "LineartEdges", "inputs": {}}}}))
    assert main(["export", "comfy", str(bad), "-o", str(tmp_path / "x.json")]) == 2
    assert "no ComfyUI equivalent" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_export_leaves_out_settings_comfy_lacks_and_says_so_when_they_matter():
    doc = {"nodes": {
        "1": {"type": "CheckpointLoader", "inputs": {"ckpt_name": "a.safetensors", "prediction": "auto"}},
        "2": {"type": "UpscaleModelLoader", "inputs": {"model_name": "x.pth"}},
        "3": {"type": "LoadImage", "inputs": {"image": "a.png"}},
        "4": {"type": "ImageUpscaleWithModel", "inputs": {
            "upscale_model": {"from": ["2", "upscale_model"]}, "image": {"from": ["3", "image"]},
            "tile_size": 256}}}}
    warnings: list[str] = []
    out = comfy.export_api(doc, default_registry(), warnings)
    assert out["1"]["inputs"] == {"ckpt_name": "a.safetensors"}
    assert out["4"]["inputs"] == {"upscale_model": ["2", 0], "image": ["3", 0]}
    assert warnings == ["node 4 (ImageUpscaleWithModel): input 'tile_size' = 256 has no counterpart in "
                        "ComfyUI's ImageUpscaleWithModel; left out"]
