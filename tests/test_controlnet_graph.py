"""graphs/controlnet.json validates and runs; the ControlNet changes the picture. A ControlNet
built from the checkpoint's UNet stands in for nodegen-demo-canny.safetensors, and a small SD1
fixture for the demo checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from nodegen.runtime.engine import Engine
from tests.support.controlnet_fixtures import build_controlnet, save_controlnet
from tests.support.fixtures import fixture

torch.set_num_threads(1)
GRAPHS = Path(__file__).resolve().parents[1] / "graphs"


def test_controlnet_graph(tmp_path, tmp_path_factory):
    sd1 = fixture("sd1", tmp_path_factory.mktemp("sd1"))
    root = tmp_path / "models"
    cn = save_controlnet(build_controlnet(sd1.unet, seed=5), root / "controlnet", "nodegen-demo-canny")
    assert cn.single_file.name == "nodegen-demo-canny.safetensors"
    engine = Engine(models=root, output_dir=tmp_path / "out", device="cpu")
    over = {"Demo model.ckpt_name": str(sd1.single_file), "Sample.steps": 3}
    targets = ["4", "5", "12", "13"]
    res = engine.run(GRAPHS / "controlnet.json", set=over, targets=targets)
    assert res.ok, res.failures
    edges = res.outputs["4"]["image"]
    assert edges.shape == (1, 64, 64, 3) and 0 < float(edges.mean()) < 0.5
    with_cn = res.outputs["12"]["image"]
    off = engine.run(GRAPHS / "controlnet.json", set={**over, "Apply ControlNet.strength": 0.0},
                     targets=targets)
    assert off.ok and sorted(off.executed) == ["11", "12", "13", "9"]  # incremental re-run
    assert (off.outputs["12"]["image"] - with_cn).abs().max() > 0.05
