"""The example graphs graphs/upscale_esrgan.json and graphs/hires_fix_esrgan.json validate and run
(a random-weight fixture stands in for a user's Real-ESRGAN file; by default they use the
built-in nodegen-demo-esrgan-x4)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nodegen.runtime.engine import Engine
from nodegen.upscale.model import load_upscale_model
from tests.support import upscale_fixtures as F

torch.set_num_threads(1)
GRAPHS = Path(__file__).resolve().parents[1] / "graphs"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    # Real-ESRGAN's own layout: BasicSR keys wrapped in params_ema
    F.save(F.esrgan_to_new_layout(F.esrgan_state_dict()), root / "upscale_models" / "RealESRGAN_x4plus.pth",
           "params_ema")
    return root


def test_upscale_graph_runs_and_equals_the_model(models, tmp_path):
    engine = Engine(models=models, output_dir=tmp_path, input_dir=tmp_path, device="cpu")
    plan = engine.validate(GRAPHS / "upscale_esrgan.json")
    assert plan.ok, plan.problems
    # a 64 px crop of the example image keeps the 4x run cheap
    from PIL import Image

    small = tmp_path / "small.png"
    Image.open(GRAPHS / "images" / "shapes.png").convert("RGB").crop((64, 64, 128, 128)).save(small)
    res = engine.run(GRAPHS / "upscale_esrgan.json", targets=["1", "3", "4"],
                     set={"Source.image": small.name, "Upscale.tile_size": 40, "Upscale.overlap": 16,
                          "Upscale model.model_name": "RealESRGAN_x4plus.pth"})
    assert res.ok, res.failures
    src = res.outputs["1"]["image"]
    out = res.outputs["3"]["image"]
    assert out.shape == (1, src.shape[1] * 4, src.shape[2] * 4, 3)
    model = load_upscale_model(models / "upscale_models" / "RealESRGAN_x4plus.pth")
    assert src.shape == (1, 64, 64, 3)
    assert (out - model.upscale(src, 0, 0)).abs().max() < 1e-4  # tiled == whole at this overlap
    assert len(res.paths) == 1 and Path(res.paths[0]).is_file()


def test_hires_fix_graph_runs(models, tmp_path, tmp_path_factory):
    from tests.support.fixtures import fixture

    sd1 = fixture("sd1", tmp_path_factory.mktemp("sd1"))
    engine = Engine(models=models, output_dir=tmp_path, device="cpu")
    res = engine.run(GRAPHS / "hires_fix_esrgan.json",
                     set={"Demo model.ckpt_name": str(sd1.single_file), "First pass.steps": 3,
                          "Refine.steps": 3}, targets=["8", "12", "13"])
    assert res.ok, res.failures
    assert res.outputs["8"]["image"].shape == (1, 256, 256, 3)
    final = res.outputs["12"]["image"]
    assert final.shape == (1, 128, 128, 3) and torch.isfinite(final).all()
