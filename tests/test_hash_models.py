"""Models by hash: ``models`` section, ``lock``, finding a renamed model by its hash on load, and
the missing-model error that names the file, its hash and size, and the node."""

from __future__ import annotations

import hashlib
import json

import pytest

from nodegen.formats import open_any
from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node
from nodegen.kernel.registry import NodeRegistry
from nodegen.runtime.engine import Engine
from nodegen.sharing.models import find_by_hash, lock


@node("TestCheckpoint", category="test", inputs=[Input.file("ckpt_name", "checkpoints")],
      outputs=[Output("image", T.IMAGE)])
def checkpoint_node(ctx, ckpt_name):
    import torch

    path = ctx.paths.resolve("checkpoints", ckpt_name)
    value = path.read_bytes()[0] / 255.0
    return torch.full((1, 8, 8, 3), value)


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("NODEGEN_CACHE_DIR", str(tmp_path / "cache"))
    from nodegen.nodes import image_io

    reg = NodeRegistry()
    reg.register(checkpoint_node)
    reg.register_module(image_io)
    models = tmp_path / "models"
    (models / "checkpoints").mkdir(parents=True)
    (models / "loras").mkdir()
    data = bytes([200]) + b"checkpoint-weights" * 10
    (models / "checkpoints" / "model-a.safetensors").write_bytes(data)
    (models / "checkpoints" / "decoy.safetensors").write_bytes(bytes([1]) + b"x" * (len(data) - 1))
    engine = Engine(models=models, registry=reg, output_dir=tmp_path / "out", device="cpu")
    doc = {"format": "nodegen-workflow", "version": 1, "nodes": {
        "1": {"type": "TestCheckpoint", "title": "Model", "inputs": {"ckpt_name": "model-a.safetensors"}},
        "2": {"type": "SaveImage", "inputs": {"images": {"from": ["1", "image"]}, "filename_prefix": "t"}}}}
    return engine, doc, models, data


def test_lock_records_name_kind_size_sha256(setup):
    engine, doc, _models, data = setup
    report = lock(doc, engine.registry, engine.env)
    assert doc["models"] == [{"name": "model-a.safetensors", "kind": "checkpoints", "size": len(data),
                              "sha256": hashlib.sha256(data).hexdigest()}]
    assert report.missing == [] and report.hashed == ["model-a.safetensors"]
    open_any(doc)  # the section matches the schema


def test_renamed_model_is_found_by_hash_and_input_rewritten(setup):
    engine, doc, models, data = setup
    lock(doc, engine.registry, engine.env)
    (models / "checkpoints" / "model-a.safetensors").rename(models / "checkpoints" / "renamed.safetensors")
    wf = engine.prepare(doc)
    assert wf.nodes["1"]["inputs"]["ckpt_name"] == "renamed.safetensors"
    assert [(r.use.node_id, r.new_name) for r in wf.model_rewrites] == [("1", "renamed.safetensors")]
    assert wf.data["models"][0]["name"] == "renamed.safetensors"
    assert wf.data["models"][0]["original_name"] == "model-a.safetensors"
    result = engine.run(wf)
    assert result.ok, result.problems
    assert abs(result.images[0].getpixel((0, 0))[0] - 200) <= 1


def test_model_in_another_kinds_folder_is_found_by_absolute_path(setup):
    engine, doc, models, _data = setup
    lock(doc, engine.registry, engine.env)
    target = models / "loras" / "sub" / "misplaced.safetensors"
    target.parent.mkdir()
    (models / "checkpoints" / "model-a.safetensors").rename(target)
    wf = engine.prepare(doc)
    assert wf.nodes["1"]["inputs"]["ckpt_name"] == str(target.resolve())
    assert engine.validate(wf).ok


def test_missing_model_error_names_file_hash_size_and_node(setup):
    engine, doc, models, data = setup
    lock(doc, engine.registry, engine.env)
    (models / "checkpoints" / "model-a.safetensors").unlink()
    plan = engine.validate(doc)
    [problem] = plan.problems
    text = str(problem)
    assert problem.code == "missing_file" and problem.node_id == "1" and problem.input == "ckpt_name"
    assert "node 1 (Model)" in text and "'model-a.safetensors'" in text
    assert hashlib.sha256(data).hexdigest() in text and f"{len(data)} bytes" in text


def test_find_by_hash_only_reads_files_of_the_recorded_size(setup, monkeypatch):
    engine, _doc, models, data = setup
    from nodegen.sharing import models as sm

    read = []
    real = sm.sha256_file
    monkeypatch.setattr(sm, "sha256_file", lambda p, *a, **k: read.append(p.name) or real(p, *a, **k))
    (models / "checkpoints" / "other-size.safetensors").write_bytes(b"tiny")
    digest = hashlib.sha256(data).hexdigest()
    hit = find_by_hash(engine.env.paths, digest, len(data), "checkpoints")
    assert hit[:2] == ("checkpoints", "model-a.safetensors")
    assert "other-size.safetensors" not in read
    assert find_by_hash(engine.env.paths, "0" * 64, len(data), "checkpoints") is None


def test_lock_cli_writes_atomically_and_with_output(tmp_path, monkeypatch):
    from main import main

    monkeypatch.setenv("NODEGEN_CACHE_DIR", str(tmp_path / "cache"))
    models = tmp_path / "models"
    (models / "upscale_models").mkdir(parents=True)
    (models / "upscale_models" / "x4.pth").write_bytes(b"esrgan" * 50)
    graph = tmp_path / "g.json"
    graph.write_text(json.dumps({"format": "nodegen-workflow", "version": 1, "nodes": {
        "1": {"type": "UpscaleModelLoader", "inputs": {"model_name": "x4.pth"}},
        "2": {"type": "UpscaleModelLoader", "inputs": {"model_name": "gone.pth"}}}}))
    out = tmp_path / "locked.json"
    rc = main(["lock", str(graph), "-o", str(out), "--models", str(models), "--quiet"])
    assert rc == 1  # one model is missing here: written, but reported
    locked = json.loads(out.read_text())
    assert locked["models"] == [
        {"name": "x4.pth", "kind": "upscale_models", "size": 300,
         "sha256": hashlib.sha256(b"esrgan" * 50).hexdigest()},
        {"name": "gone.pth", "kind": "upscale_models"}]
    assert "models" not in json.loads(graph.read_text())  # -o leaves the original alone
    assert main(["lock", str(out), "--models", str(models), "--quiet"]) == 1
    assert json.loads(out.read_text())["models"][0]["size"] == 300
