"""ComfyUI's Flux schnell, Flux dev and SD 3.5 workflows (tests/data/comfy/{flux_schnell,flux_dev,sd35},
both formats, made by make_flow.py) import, validate and run on the tiny flow fixtures; the two
formats give the same images. Sizes and steps are cut down with ``set=`` for speed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from nodegen.formats import open_any
from nodegen.kernel.workflow import Workflow
from nodegen.runtime.engine import Engine
from tests.support.flow_fixtures import fixture

torch.set_num_threads(1)
DATA = Path(__file__).parent / "data" / "comfy"
FILES = {"diffusion_models/flux1-schnell.safetensors": ("flux", "diffusion_model_schnell"),
         "diffusion_models/flux1-dev.safetensors": ("flux", "diffusion_model"),
         "vae/ae.safetensors": ("flux", "vae_file"),
         "checkpoints/sd3.5_large.safetensors": ("sd3", "single_file_no_te"),
         "text_encoders/clip_l.safetensors": ("sd3", "clip_l"),
         "text_encoders/clip_g.safetensors": ("sd3", "clip_g"),
         "text_encoders/t5xxl_fp16.safetensors": ("sd3", "t5xxl")}
NAMES = ["flux_schnell", "flux_dev", "sd35"]
SMALL = {"EmptySD3LatentImage": {"width": 64, "height": 64}, "ModelSamplingFlux": {"width": 64, "height": 64},
         "KSampler": {"steps": 2}, "BasicScheduler": {"steps": 2}, "BetaSamplingScheduler": {"steps": 3}}


def small(wf: Workflow) -> Workflow:
    for n in wf.nodes.values():
        n.setdefault("inputs", {}).update(SMALL.get(n["type"], {}))
    return wf


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    for rel, (family, attr) in FILES.items():
        (root / rel).parent.mkdir(exist_ok=True)
        os.symlink(getattr(fixture(family), attr), root / rel)
    return Engine(models=root, output_dir=tmp_path_factory.mktemp("out"), device="cpu")


@pytest.mark.parametrize("name", NAMES)
def test_flow_workflow_imports_validates_and_runs(engine, name):
    api = engine.run(small(open_any(DATA / f"{name}.api.json")))
    assert api.ok, (api.problems, [str(f) + getattr(f, "traceback", "") for f in api.failures])
    assert api.images and api.images[0].size == (64, 64)
    assert api.images[0].getextrema() != ((0, 0), (0, 0), (0, 0))
    ui = engine.run(small(open_any(DATA / f"{name}.ui.json")))
    assert ui.ok, (ui.problems, [str(f) for f in ui.failures])
    assert [list(a.getdata()) for a in ui.images] == [list(a.getdata()) for a in api.images]
