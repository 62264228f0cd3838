"""Saved PNGs embed the workflow and the values used; PNGs run and describe themselves."""

from __future__ import annotations

import hashlib
import json

import pytest
from PIL import Image

from nodegen.formats import open_any, png
from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node
from nodegen.kernel.registry import NodeRegistry
from nodegen.runtime.engine import Engine


@node("TestModelImage", category="test",
      inputs=[Input.file("ckpt_name", "checkpoints"), Input.seed("seed", 0), Input.int("batch", 1, min=1, max=4)],
      outputs=[Output("image", T.IMAGE)])
def model_image(ctx, ckpt_name, seed, batch):
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.rand((batch, 4, 4, 3), generator=g)


@pytest.fixture
def engine(tmp_path, monkeypatch):
    monkeypatch.setenv("NODEGEN_CACHE_DIR", str(tmp_path / "cache"))
    from nodegen.nodes import image_io

    reg = NodeRegistry()
    reg.register(model_image)
    reg.register_module(image_io)
    (tmp_path / "models" / "checkpoints").mkdir(parents=True)
    (tmp_path / "models" / "checkpoints" / "m.safetensors").write_bytes(b"weights" * 9)
    return Engine(models=tmp_path / "models", registry=reg, output_dir=tmp_path / "out", device="cpu")


DOC = {"format": "nodegen-workflow", "version": 1, "metadata": {"name": "prov", "created_with": "nodegen 0.0.9"},
       "nodes": {
           "1": {"type": "TestModelImage", "inputs": {"ckpt_name": "m.safetensors", "seed": 5, "batch": 2}},
           "2": {"type": "SaveImage", "inputs": {"images": {"from": ["1", "image"]}, "filename_prefix": "p"}},
           "3": {"type": "TestModelImage", "inputs": {"ckpt_name": "m.safetensors", "seed": 99}}}}


def test_saved_png_embeds_workflow_values_and_model_hashes(engine):
    result = engine.run(json.loads(json.dumps(DOC)), set={"1.seed": 1234})
    assert result.ok, result.problems
    first, second = result.paths
    sha = hashlib.sha256(b"weights" * 9).hexdigest()
    embedded = json.loads(png.png_text(first)[png.WORKFLOW_KEY])
    assert embedded["nodes"]["1"]["inputs"]["seed"] == 1234  # as run, after the override
    assert embedded["models"] == [{"name": "m.safetensors", "kind": "checkpoints", "size": 63, "sha256": sha}]
    values = png.read_values(first)
    from nodegen import __version__

    assert values["node_id"] == "2" and values["batch_index"] == 0 and values["nodegen_version"] == __version__
    assert values["inputs"] == {"1": {"ckpt_name": "m.safetensors", "seed": 1234, "batch": 2},
                                "2": {"filename_prefix": "p"}}  # node 3 is not upstream: not recorded
    assert values["models"] == [{"name": "m.safetensors", "kind": "checkpoints", "size": 63, "sha256": sha,
                                 "nodes": ["1"]}]
    assert png.read_values(second)["batch_index"] == 1
    # the PNG opens as its workflow, and re-running it makes the same pixels
    wf = open_any(first)
    again = engine.run(wf)
    assert list(Image.open(again.paths[0]).getdata()) == list(Image.open(first).getdata())


def test_png_without_workflow_is_a_clear_error(tmp_path):
    path = tmp_path / "plain.png"
    Image.new("RGB", (2, 2)).save(path)
    with pytest.raises(png.PngWorkflowError, match="plain.png: this PNG holds no workflow"):
        open_any(path)


def _cli_graph(tmp_path):
    indir = tmp_path / "in"
    indir.mkdir()
    Image.new("RGB", (6, 4), (10, 200, 30)).save(indir / "src.png")
    graph = tmp_path / "g.json"
    graph.write_text(json.dumps({"format": "nodegen-workflow", "version": 1, "nodes": {
        "1": {"type": "LoadImage", "inputs": {"image": "src.png"}},
        "2": {"type": "ImageInvert", "inputs": {"image": {"from": ["1", "image"]}}},
        "3": {"type": "SaveImage", "inputs": {"images": {"from": ["2", "image"]}, "filename_prefix": "cli"}}}}))
    return graph, indir


def test_cli_runs_a_png_and_info_describes_it(tmp_path, capsys):
    from main import main

    graph, indir = _cli_graph(tmp_path)
    assert main(["run", str(graph), "--out", str(tmp_path / "o1"), "--input", str(indir), "--device", "cpu"]) == 0
    [made] = list((tmp_path / "o1").glob("*.png"))
    assert main(["run", str(made), "--out", str(tmp_path / "o2"), "--input", str(indir), "--device", "cpu"]) == 0
    [again] = list((tmp_path / "o2").glob("*.png"))
    assert list(Image.open(again).getdata()) == list(Image.open(made).getdata())
    assert Image.open(made).getpixel((0, 0)) == (245, 55, 225)
    capsys.readouterr()
    assert main(["info", str(made)]) == 0
    out = capsys.readouterr().out
    assert "PNG image with a nodegen workflow" in out
    assert "image made with: nodegen" in out and "nodes: 3" in out
    assert "node 1: image='src.png'" in out and "models needed: 0 (none)" in out
    assert main(["info", str(made), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["values"]["node_id"] == "3" and info["outputs"] == ["3"]


def test_info_lists_models_found_missing_and_found_by_hash(tmp_path, capsys, monkeypatch):
    from main import main

    monkeypatch.setenv("NODEGEN_CACHE_DIR", str(tmp_path / "cache"))
    models = tmp_path / "models" / "upscale_models"
    models.mkdir(parents=True)
    (models / "renamed.pth").write_bytes(b"abc" * 10)
    graph = tmp_path / "g.json"
    graph.write_text(json.dumps({
        "format": "nodegen-workflow", "version": 1, "metadata": {"created_with": "nodegen 0.1.0"},
        "nodes": {"1": {"type": "UpscaleModelLoader", "inputs": {"model_name": "x4.pth"}},
                  "2": {"type": "UpscaleModelLoader", "inputs": {"model_name": "gone.pth"}},
                  "3": {"type": "MysteryNode", "inputs": {}}},
        "models": [{"name": "x4.pth", "kind": "upscale_models", "size": 30,
                    "sha256": hashlib.sha256(b"abc" * 10).hexdigest()},
                   {"name": "gone.pth", "kind": "upscale_models", "size": 5, "sha256": "1" * 64}]}))
    assert main(["info", str(graph), "--models", str(tmp_path / "models")]) == 0
    out = capsys.readouterr().out
    assert "workflow made with: nodegen 0.1.0" in out
    assert "[found by hash] upscale_models/x4.pth" in out and "renamed.pth" in out
    assert f"[missing] upscale_models/gone.pth (5 bytes, sha256 {'1' * 64}; node 2)" in out
    assert "node types not installed here: MysteryNode" in out


def test_info_on_comfy_files(tmp_path, capsys):
    from pathlib import Path

    from main import main

    data = Path(__file__).parent / "data" / "comfy"
    assert main(["info", str(data / "txt2img.png")]) == 0
    out = capsys.readouterr().out
    assert "PNG image with a ComfyUI workflow (workflow and prompt chunks)" in out
    assert "[missing] checkpoints/tiny-sd1.safetensors" in out
    assert main(["info", str(data / "sdxl_refiner.api.json")]) == 0
    out = capsys.readouterr().out
    assert "ComfyUI API prompt (JSON)" in out
    assert "checkpoints/tiny-sdxl-refiner.safetensors" in out and "vae/tiny-sdxl-vae.safetensors" in out


@pytest.mark.parametrize("content, message", [
    (None, "cannot read the file"), ("[1]", "a workflow must be a JSON object"),
    ("{oops", "not valid JSON"), ('{"x": 1}', "not a nodegen workflow")])
def test_info_errors_name_the_file(tmp_path, capsys, content, message):
    from main import main

    path = tmp_path / "w.json"
    if content is not None:
        path.write_text(content)
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and message in err
