"""VAEModel: encode/decode against diffusers; tiled variants (blending is exact for pointwise
maps, a single tile equals the plain call)."""

from __future__ import annotations

import pytest
import torch

from nodegen.image.tiling import run_tiled
from nodegen.models.objects import VAEModel
from tests.support.fixtures import fixture

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def sd1(tmp_path_factory):
    return fixture("sd1", tmp_path_factory.mktemp("sd1"))


def test_decode_and_encode_equal_diffusers(sd1):
    vae = VAEModel.from_vae(sd1.vae)
    z = torch.randn(2, 4, 4, 6, generator=torch.Generator().manual_seed(0))
    img = vae.decode(z, device="cpu")
    with torch.no_grad():
        ref = sd1.vae.decode(z / 0.18215).sample
    ref = (ref / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)
    assert img.shape == (2, 32, 48, 3) and img.dtype == torch.float32
    assert torch.equal(img, ref)
    lat = vae.encode(img, device="cpu")
    with torch.no_grad():
        ref_lat = sd1.vae.encode(img.permute(0, 3, 1, 2) * 2 - 1).latent_dist.mean * 0.18215
    assert torch.equal(lat, ref_lat)
    with pytest.raises(ValueError, match="image batch"):
        vae.encode(img[0])


def test_tiled_blending_is_exact_for_pointwise_maps():
    lat = torch.randn(1, 4, 20, 28, generator=torch.Generator().manual_seed(1))

    def up(t):  # "decode": nearest 8x upsample
        return torch.nn.functional.interpolate(t, scale_factor=8, mode="nearest")

    out = run_tiled(up, lat, 8, tile=8, overlap=3)
    torch.testing.assert_close(out, up(lat), rtol=1e-6, atol=1e-6)
    img = torch.rand(2, 3, 64, 88, generator=torch.Generator().manual_seed(2))

    def down(t):  # "encode": 8x8 average pooling
        return torch.nn.functional.avg_pool2d(t, 8)

    enc = run_tiled(down, img, 1 / 8, tile=32, overlap=8)
    torch.testing.assert_close(enc, down(img), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="overlap"):
        run_tiled(up, lat, 8, tile=8, overlap=4)


def test_vae_tiled_variants(sd1):
    vae = VAEModel.from_vae(sd1.vae)
    z = torch.randn(1, 4, 12, 10, generator=torch.Generator().manual_seed(3))
    # one tile = the plain call
    assert torch.equal(vae.decode_tiled(z, tile=16, overlap=4, device="cpu"), vae.decode(z, device="cpu"))
    img = vae.decode_tiled(z, tile=6, overlap=2, device="cpu")
    assert img.shape == (1, 96, 80, 3) and torch.isfinite(img).all() and 0 <= img.min() and img.max() <= 1
    lat = vae.encode_tiled(img, tile=48, overlap=16, device="cpu")
    assert lat.shape == (1, 4, 12, 10) and torch.isfinite(lat).all()
