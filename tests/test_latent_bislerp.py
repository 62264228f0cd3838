"""The "bislerp" latent upscale method (ComfyUI's LatentUpscale / LatentUpscaleBy choice) against a
per-pixel computation written here from the method's definition, and ComfyUI workflows that
pick it import, validate and run in both formats."""

from __future__ import annotations

import math

import pytest
import torch

from nodegen.image.bislerp import bislerp

torch.set_num_threads(1)


def _slerp(a: list[float], b: list[float], t: float) -> list[float]:
    na, nb = math.sqrt(sum(v * v for v in a)), math.sqrt(sum(v * v for v in b))
    ua = [v / na if na else 0.0 for v in a]
    ub = [v / nb if nb else 0.0 for v in b]
    cos = sum(x * y for x, y in zip(ua, ub, strict=True))
    if cos > 1 - 1e-5:
        return list(a)
    if cos < -1 + 1e-5:
        return [x * (1 - t) + y * t for x, y in zip(a, b, strict=True)]
    om = math.acos(cos)
    length = na * (1 - t) + nb * t
    return [(math.sin((1 - t) * om) * x + math.sin(t * om) * y) / math.sin(om) * length
            for x, y in zip(ua, ub, strict=True)]


def _resize_row(row: list[list[float]], new: int) -> list[list[float]]:
    """One line of channel vectors, resized with torch-bilinear sample positions."""
    old = len(row)
    out = []
    for j in range(new):
        src = max((j + 0.5) * old / new - 0.5, 0.0)
        lo = min(int(math.floor(src)), old - 1)
        hi = min(lo + 1, old - 1)
        out.append(_slerp(row[lo], row[hi], src - lo))
    return out


def _reference(x: torch.Tensor, width: int, height: int) -> torch.Tensor:
    b, c, h, w = x.shape
    out = torch.zeros(b, c, height, width, dtype=torch.float64)
    for n in range(b):
        rows = [_resize_row([[float(x[n, k, i, j]) for k in range(c)] for j in range(w)], width) for i in range(h)]
        for j in range(width):
            col = _resize_row([rows[i][j] for i in range(h)], height)
            for i in range(height):
                out[n, :, i, j] = torch.tensor(col[i], dtype=torch.float64)
    return out


@pytest.mark.parametrize("size", [(7, 5), (3, 2), (4, 3)])
def test_bislerp_matches_the_definition(size):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 3, 4, generator=g)
    x[0, :, 1, 1] = 0  # a zero vector: its direction counts as none
    x[1, :, 0, 1] = x[1, :, 0, 0] * 2  # parallel neighbours keep the first one
    x[1, :, 2, 1] = -x[1, :, 2, 0]  # opposite neighbours blend linearly
    width, height = size
    got = bislerp(x, width, height)
    assert got.shape == (2, 4, height, width) and got.dtype == x.dtype
    torch.testing.assert_close(got.double(), _reference(x, width, height), atol=2e-5, rtol=1e-5)


def test_bislerp_keeps_lengths_between_its_neighbours():
    x = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(2))
    up = bislerp(x, 8, 8)
    norms = up.norm(dim=1)
    assert norms.max() <= x.norm(dim=1).max() + 1e-5 and norms.min() >= x.norm(dim=1).min() - 1e-5


def _api(method: str) -> dict:
    return {
        "1": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "2": {"class_type": "LatentUpscaleBy", "inputs": {"upscale_method": method, "scale_by": 1.5,
                                                          "samples": ["1", 0]}},
        "3": {"class_type": "LatentUpscale", "inputs": {"upscale_method": method, "width": 128, "height": 96,
                                                        "crop": "disabled", "samples": ["2", 0]}},
    }


def _ui(method: str) -> dict:
    return {"nodes": [
        {"id": 1, "type": "EmptyLatentImage", "outputs": [{"name": "LATENT", "type": "LATENT"}],
         "widgets_values": [64, 64, 1]},
        {"id": 2, "type": "LatentUpscaleBy", "inputs": [{"name": "samples", "type": "LATENT", "link": 1}],
         "outputs": [{"name": "LATENT", "type": "LATENT"}], "widgets_values": [method, 1.5]},
        {"id": 3, "type": "LatentUpscale", "inputs": [{"name": "samples", "type": "LATENT", "link": 2}],
         "outputs": [{"name": "LATENT", "type": "LATENT"}], "widgets_values": [method, 128, 96, "disabled"]},
    ], "links": [[1, 1, 0, 2, 0, "LATENT"], [2, 2, 0, 3, 0, "LATENT"]]}


def test_comfy_workflows_picking_bislerp_run_in_both_formats(tmp_path):
    from nodegen.formats import comfy
    from nodegen.runtime.engine import Engine

    engine = Engine(models=tmp_path, input_dir=tmp_path, output_dir=tmp_path, device="cpu")
    outs = []
    for data in (_api("bislerp"), _ui("bislerp")):
        doc, notes = comfy.import_comfy(data)
        assert doc["nodes"]["2"]["inputs"]["upscale_method"] == "bislerp"
        result = engine.run(doc, targets=["3"])
        assert result.ok, (result.problems, [str(f) for f in result.failures])
        outs.append(result.outputs["3"]["latent"]["samples"])
    assert outs[0].shape == (1, 4, 12, 16)
    torch.testing.assert_close(outs[0], outs[1])
