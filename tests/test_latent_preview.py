"""Sampling previews project the denoised latent to RGB with ComfyUI's factors for its family."""

from __future__ import annotations

import pytest
import torch

from nodegen.diffusion import preview


def comfy_preview(x0: torch.Tensor, factors: list, bias: list) -> torch.Tensor:
    """ComfyUI's Latent2RGBPreviewer (latent_preview.py), transcribed: a linear map of the first
    item's channels with the factors transposed, then (x + 1) / 2 clamped."""
    weight = torch.tensor(factors).transpose(0, 1)
    rgb = torch.nn.functional.linear(x0[0].movedim(0, -1), weight, bias=torch.tensor(bias))
    return ((rgb + 1.0) / 2.0).clamp(0, 1)[None]


@pytest.mark.parametrize("family, channels, factors, bias", [
    ("sd1", 4, preview.SD1_FACTORS, preview.SD1_BIAS),
    ("sdxl", 4, preview.SDXL_FACTORS, preview.SDXL_BIAS),
    ("sd3", 16, preview.SD3_FACTORS, preview.SD3_BIAS),
    ("flux", 16, preview.FLUX_FACTORS, preview.FLUX_BIAS),
    ("chroma", 16, preview.FLUX_FACTORS, preview.FLUX_BIAS),
])
def test_each_family_uses_its_own_factors(family, channels, factors, bias):
    x0 = torch.randn(2, channels, 6, 5, generator=torch.Generator().manual_seed(1)) * 2
    got = preview.latent_preview(x0, family)
    assert got.shape == (1, 6, 5, 3)
    assert torch.allclose(got, comfy_preview(x0, factors, bias), atol=1e-6)


def test_16_channel_factors_are_comfyuis():
    assert len(preview.SD3_FACTORS) == len(preview.FLUX_FACTORS) == 16
    assert preview.SD3_FACTORS[0] == [-0.0922, -0.0175, 0.0749] and preview.SD3_BIAS == [0.2394, 0.2135, 0.1925]
    assert preview.FLUX_FACTORS[-1] == [-0.1262, -0.0982, -0.0778] and preview.FLUX_BIAS == [-0.0329, -0.0718, -0.0851]
