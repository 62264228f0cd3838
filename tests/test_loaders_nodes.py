"""The loader nodes inside the engine: CheckpointLoader, VAELoader, LoraLoader(ModelOnly),
CLIPSetLastLayer; caching through the model manager; clear errors."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from nodegen.models.lora import apply_lora, parse_lora
from nodegen.runtime.engine import Engine
from tests.support.fixtures import fixture
from tests.support.lora_fixtures import peft_lora, peft_to_kohya

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    from safetensors.torch import save_file

    ns = fixture("sd1", tmp_path_factory.mktemp("sd1"))
    r = tmp_path_factory.mktemp("models")
    for kind in ("checkpoints", "vae", "loras"):
        (r / kind).mkdir()
    os.symlink(ns.single_file, r / "checkpoints" / "tiny-sd1.safetensors")
    shutil.copytree(ns.diffusers_dir, r / "checkpoints" / "tiny-sd1-diffusers")
    vae = {k.removeprefix("first_stage_model."): v for k, v in ns.ldm_state_dict.items()
           if k.startswith("first_stage_model.")}
    save_file(vae, str(r / "vae" / "tiny-vae.safetensors"))
    lora_sd = peft_to_kohya(peft_lora(ns, seed=11), alpha=2.0)
    save_file(lora_sd, str(r / "loras" / "style.safetensors"))
    save_file(lora_sd, str(r / "checkpoints" / "oops-a-lora.safetensors"))
    return r, ns, lora_sd


def _wf(ckpt="tiny-sd1.safetensors", lora_strength=0.7, clip_layer=-2):
    return {"format": "nodegen-workflow", "version": 1, "nodes": {
        "1": {"type": "CheckpointLoader", "inputs": {"ckpt_name": ckpt, "prediction": "auto"}},
        "2": {"type": "LoraLoader", "inputs": {"model": {"from": ["1", "model"]}, "clip": {"from": ["1", "clip"]},
                                               "lora_name": "style.safetensors", "strength_model": lora_strength,
                                               "strength_clip": lora_strength}},
        "3": {"type": "CLIPSetLastLayer", "inputs": {"clip": {"from": ["2", "clip"]}, "stop_at_clip_layer": clip_layer}},
        "4": {"type": "CLIPTextEncode", "inputs": {"clip": {"from": ["3", "clip"]}, "text": "a photo of a cat"}},
        "5": {"type": "VAELoader", "inputs": {"vae_name": "tiny-vae.safetensors"}},
        "6": {"type": "LoraLoaderModelOnly", "inputs": {"model": {"from": ["1", "model"]},
                                                        "lora_name": "style.safetensors", "strength_model": 1.0}},
    }}


def test_loader_nodes_run_and_cache(root, tmp_path):
    r, ns, lora_sd = root
    engine = Engine(models=r, output_dir=tmp_path, device="cpu")
    res = engine.run(_wf(), targets=["1", "4", "5", "6"])
    assert res.ok, res.failures
    model, clip, vae = res.output("1", "model"), res.output("1", "clip"), res.output("1", "vae")
    assert (model.family, clip.family, vae.scaling_factor) == ("sd1", "sd1", 0.18215)
    # node 4's conditioning = manual LoRA (0.7) + CLIP skip 2
    _, manual_clip = apply_lora(None, clip, parse_lora(lora_sd), 0.0, 0.7)
    [expect] = manual_clip.set_layer(-2).encode("a photo of a cat", device="cpu")
    [got] = res.output("4", "conditioning")
    assert torch.equal(got.embeds, expect.embeds)
    assert len(res.output("6", "model").patches) == 1 and model.patches == []
    assert res.output("5", "vae").latent_channels == 4
    assert res.output("5", "vae").scaling_factor == 0.18215  # "auto": no metadata -> SD1/SD2
    wf = _wf()
    wf["nodes"]["5"]["inputs"]["latent_format"] = "sdxl"
    assert engine.run(wf, targets=["5"]).output("5", "vae").scaling_factor == 0.13025
    # a second run is served from the cache; a changed strength re-runs only what depends on it
    again = engine.run(_wf(lora_strength=0.5), targets=["1", "4", "5", "6"])
    assert again.ok and sorted(again.executed) == ["2", "3", "4"]
    # the manager keeps loaded files across runs even when the output cache is bypassed
    m1 = engine.models.load_checkpoint(r / "checkpoints" / "tiny-sd1.safetensors")
    assert m1[0] is model


def test_diffusers_folder_checkpoint_in_engine(root, tmp_path):
    r, ns, _ = root
    engine = Engine(models=r, output_dir=tmp_path, device="cpu")
    res = engine.run(_wf(ckpt="tiny-sd1-diffusers"), targets=["4"])
    assert res.ok, res.failures
    ref = engine.run(_wf(), targets=["4"])
    assert torch.equal(res.output("4", "conditioning")[0].embeds, ref.output("4", "conditioning")[0].embeds)


def test_wrong_kind_and_missing_files_are_named(root, tmp_path):
    r, _, _ = root
    engine = Engine(models=r, output_dir=tmp_path, device="cpu")
    res = engine.run(_wf(ckpt="oops-a-lora.safetensors"), targets=["4"])
    assert not res.ok
    text = " ".join(str(f) for f in res.failures)
    assert "oops-a-lora.safetensors: this is a LoRA, not a checkpoint: use a LoRA loader" in text
    res = engine.run(_wf(ckpt="nope.safetensors"), targets=["4"])
    assert not res.ok
    assert "nope.safetensors" in " ".join(str(p) for p in res.problems) + " ".join(str(f) for f in res.failures)


def test_clip_set_last_layer_range(root, tmp_path):
    r, _, _ = root
    engine = Engine(models=r, output_dir=tmp_path, device="cpu")
    res = engine.run(_wf(clip_layer=-5), targets=["4"])  # the tiny encoder has 2 layers
    assert not res.ok
    assert "stop_at_clip_layer" in " ".join(str(f) for f in res.failures)


def test_schema_lists_model_files(root, tmp_path):
    r, _, _ = root
    engine = Engine(models=r, output_dir=tmp_path, device="cpu")
    schema = engine.schema()
    nodes = schema.get("nodes", schema)
    ckpt = nodes["CheckpointLoader"] if isinstance(nodes, dict) else next(n for n in nodes if n["type"] == "CheckpointLoader")
    choices = next(i for i in ckpt["inputs"] if i["name"] == "ckpt_name")["choices"]
    assert "tiny-sd1.safetensors" in choices and "tiny-sd1-diffusers" in choices
