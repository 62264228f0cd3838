"""The example graphs graphs/style_transfer.json and graphs/style_to_img2img.json validate and run
(a narrow random-weight VGG-19 in torchvision's layout stands in for vgg19-dcbb9e9d.pth)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nodegen.runtime.engine import Engine
from nodegen.style.color import rgb_to_lab
from nodegen.style.vgg import random_vgg19_state_dict

torch.set_num_threads(1)
GRAPHS = Path(__file__).resolve().parents[1] / "graphs"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    (root / "style_models").mkdir()
    torch.save(random_vgg19_state_dict(0, width_div=16), root / "style_models" / "vgg19-dcbb9e9d.pth")
    return root


def test_style_transfer_graph(models, tmp_path):
    engine = Engine(models=models, output_dir=tmp_path, device="cpu")
    res = engine.run(GRAPHS / "style_transfer.json", set={"Style transfer.iterations": 3},
                     targets=["1", "2", "4", "5", "6"])
    assert res.ok, res.failures
    content, style = res.outputs["1"]["image"], res.outputs["2"]["image"]
    styled, final = res.outputs["4"]["image"], res.outputs["5"]["image"]
    assert styled.shape == final.shape == content.shape
    assert (styled - content).abs().mean() > 1e-3
    # colour matching at strength 0.5 moves the mean Lab colour half way to the style's
    mid = (rgb_to_lab(styled[0]).mean((0, 1)) + rgb_to_lab(style[0]).mean((0, 1))) / 2
    assert torch.allclose(rgb_to_lab(final[0]).mean((0, 1)), mid, atol=1.5)


def test_style_to_img2img_graph(models, tmp_path, tmp_path_factory):
    from tests.support.fixtures import fixture

    sd1 = fixture("sd1", tmp_path_factory.mktemp("sd1"))
    engine = Engine(models=models, output_dir=tmp_path, device="cpu")
    res = engine.run(GRAPHS / "style_to_img2img.json",
                     set={"Demo model.ckpt_name": str(sd1.single_file), "Style transfer.iterations": 2,
                          "Redraw.steps": 3}, targets=["8", "9", "10", "14", "15"])
    assert res.ok, res.failures
    out = res.outputs["14"]["image"]
    assert out.shape == (1, 64, 64, 3) and torch.isfinite(out).all()
    lat, sty, mixed = (res.outputs[n]["latent"]["samples"] for n in ("8", "9", "10"))
    want = (lat.mean((2, 3)) + sty.mean((2, 3))) / 2  # AdaIN at strength 0.5
    assert torch.allclose(mixed.mean((2, 3)), want, atol=1e-4)
