"""Every example graph in graphs/ validates and runs: model inputs are pointed at the small
fixture models (a models root built once per session), sizes and steps are cut down for speed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from safetensors.torch import save_file

from nodegen.kernel.workflow import Workflow, is_link
from nodegen.runtime.engine import Engine

ROOT = Path(__file__).resolve().parents[1]
GRAPHS = sorted((ROOT / "graphs").glob("*.json"))


@pytest.fixture(scope="session")
def models_root(tmp_path_factory):
    """checkpoints/{sd1,sdxl}.safetensors, loras/sd1_lora.safetensors, controlnet/sd1_cn.safetensors,
    upscale_models/esrgan.pth, style_models/vgg19.safetensors."""
    from tests.support.fixtures import sd1_fixture, sdxl_fixture
    from tests.support.lora_fixtures import peft_lora

    root = tmp_path_factory.mktemp("models")
    sd1, sdxl = sd1_fixture(), sdxl_fixture()
    for kind in ("checkpoints", "loras", "controlnet", "upscale_models", "style_models"):
        (root / kind).mkdir()
    os.symlink(sd1.single_file, root / "checkpoints" / "sd1.safetensors")
    os.symlink(sdxl.single_file, root / "checkpoints" / "sdxl.safetensors")
    save_file({k: v.contiguous() for k, v in peft_lora(sd1, seed=3).items()},
              str(root / "loras" / "sd1_lora.safetensors"))
    from tests.support.controlnet_fixtures import build_controlnet, save_controlnet

    save_controlnet(build_controlnet(sd1.unet, seed=5), root / "controlnet", "sd1_cn")
    from tests.support import upscale_fixtures as up

    up.save(up.esrgan_state_dict(), root / "upscale_models" / "esrgan.pth")
    from nodegen.style.vgg import random_vgg19_state_dict

    save_file(random_vgg19_state_dict(seed=0, width_div=8, blocks=5), str(root / "style_models" / "vgg19.safetensors"))
    _flow_models(root)
    return root


#: file names the SD3 / Flux example graphs use, linked to the tiny flow fixtures (kept by shrink)
FLOW_FILES = {"diffusion_models/flux1-dev.safetensors": ("flux", "diffusion_model"),
              "vae/ae.safetensors": ("flux", "vae_file"),
              "checkpoints/sd3.5_medium.safetensors": ("sd3", "single_file_no_te"),
              "text_encoders/clip_l.safetensors": ("sd3", "clip_l"),
              "text_encoders/clip_g.safetensors": ("sd3", "clip_g"),
              "text_encoders/t5xxl_fp16.safetensors": ("sd3", "t5xxl")}


def _flow_models(root: Path) -> None:
    from tests.support.flow_fixtures import fixture as flow_fixture

    for rel, (family, attr) in FLOW_FILES.items():
        (root / rel).parent.mkdir(exist_ok=True)
        os.symlink(getattr(flow_fixture(family), attr), root / rel)


FILES = {"checkpoints": "sd1.safetensors", "loras": "sd1_lora.safetensors",
         "controlnet": "sd1_cn.safetensors", "upscale_models": "esrgan.pth",
         "style_models": "vgg19.safetensors"}


def shrink(engine: Engine, wf: Workflow) -> None:
    """Point model inputs at fixtures; small latents and few steps."""
    sdxl = any(n["type"].startswith("CLIPTextEncodeSDXL") for n in wf.nodes.values())
    for n in wf.nodes.values():
        nd = engine.registry.get(n["type"])
        ins = n.setdefault("inputs", {})
        for spec in nd.inputs if nd else ():
            keep = f"{spec.file_kind}/{ins.get(spec.name)}" in FLOW_FILES
            if spec.widget == "file" and spec.file_kind in FILES and not is_link(ins.get(spec.name)) and not keep:
                ins[spec.name] = "sdxl.safetensors" if sdxl and spec.file_kind == "checkpoints" \
                    else FILES[spec.file_kind]
        if n["type"] in ("EmptyLatentImage", "EmptySD3LatentImage"):
            ins.update(width=64, height=64)
        for key in ("steps", "iterations"):
            if isinstance(ins.get(key), int) and ins[key] > 3:
                ins[key] = 3
        for key in ("width", "height", "target_width", "target_height"):
            if n["type"].startswith("CLIPTextEncodeSDXL") and key in ins:
                ins[key] = 64


@pytest.mark.parametrize("path", GRAPHS, ids=[p.stem for p in GRAPHS])
def test_example_graph_validates_and_runs(path, models_root, tmp_path):
    engine = Engine(models=models_root, output_dir=tmp_path / "out", input_dir=tmp_path / "in")
    wf = engine.prepare(path)
    assert wf.metadata.get("name") and wf.metadata.get("description"), "examples carry a name and description"
    shrink(engine, wf)
    result = engine.run(wf)
    assert result.ok, [str(p) for p in result.problems] + [str(f) + f.traceback for f in result.failures]
    assert result.images, "every example produces an image"
    for img in result.images:
        assert img.getextrema() != ((0, 0), (0, 0), (0, 0)), "not a blank image"


def test_graph_files_are_tidy():
    for path in GRAPHS:
        data = json.loads(path.read_text())
        assert data["format"] == "nodegen-workflow"
        titles = [n.get("title") for n in data["nodes"].values() if n.get("title")]
        assert all(isinstance(t, str) for t in titles)
