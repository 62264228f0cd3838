"""ColorTransfer (Reinhard in Lab, histogram matching) and LatentStyleAdaIN: statistics checked
numerically."""

from __future__ import annotations

import pytest
import torch

from nodegen.style.color import lab_to_rgb, match_histogram, rgb_to_lab

torch.set_num_threads(1)


def rand_image(seed, lo, hi, h=24, w=20, tint=(1.0, 1.0, 1.0)):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, h, w, 3, generator=g) * (hi - lo) + lo
    return (x * torch.tensor(tint)).clamp(0, 1)


def test_lab_known_values_and_round_trip():
    white = rgb_to_lab(torch.tensor([1.0, 1.0, 1.0]))
    assert torch.allclose(white, torch.tensor([100.0, 0.0, 0.0], dtype=torch.float64), atol=1e-2)
    red = rgb_to_lab(torch.tensor([1.0, 0.0, 0.0]))  # reference: L 53.24, a 80.09, b 67.20
    assert torch.allclose(red, torch.tensor([53.24, 80.09, 67.20], dtype=torch.float64), atol=0.05)
    x = torch.rand(50, 3)
    assert torch.allclose(lab_to_rgb(rgb_to_lab(x)).float(), x, atol=1e-5)


def test_reinhard_matches_lab_statistics():
    from nodegen.nodes.style import color_transfer

    img = rand_image(0, 0.3, 0.6)
    ref = rand_image(1, 0.35, 0.55, h=16, w=30, tint=(1.0, 0.8, 0.7))  # warmer, other size
    out = color_transfer.run(None, image=img, reference=ref, method="reinhard_lab", strength=1.0)
    lo, lr, li = rgb_to_lab(out[0]), rgb_to_lab(ref[0]), rgb_to_lab(img[0])
    assert torch.allclose(lo.mean((0, 1)), lr.mean((0, 1)), atol=0.05)
    assert torch.allclose(lo.std((0, 1), unbiased=False), lr.std((0, 1), unbiased=False), atol=0.05)
    assert (li.mean((0, 1)) - lr.mean((0, 1))).abs().max() > 3  # it did have to move
    # strength 0 is the identity, 0.5 lands half way (means in Lab)
    same = color_transfer.run(None, image=img, reference=ref, method="reinhard_lab", strength=0.0)
    assert torch.allclose(same, img, atol=1e-5)
    half = color_transfer.run(None, image=img, reference=ref, method="reinhard_lab", strength=0.5)
    mid = (li.mean((0, 1)) + lr.mean((0, 1))) / 2
    assert torch.allclose(rgb_to_lab(half[0]).mean((0, 1)), mid, atol=0.05)


def test_histogram_matches_sorted_values():
    from nodegen.nodes.style import color_transfer

    img = rand_image(2, 0.0, 1.0, h=10, w=12)
    ref = rand_image(3, 0.0, 1.0, h=12, w=10) ** 2  # same pixel count, other distribution
    out = color_transfer.run(None, image=img, reference=ref, method="histogram", strength=1.0)
    for c in range(3):
        assert torch.allclose(torch.sort(out[0, ..., c].flatten()).values,
                              torch.sort(ref[0, ..., c].flatten()).values, atol=1e-6)
        # the order of the pixels is kept (monotone map)
        assert torch.equal(torch.argsort(out[0, ..., c].flatten(), stable=True),
                           torch.argsort(img[0, ..., c].flatten(), stable=True))
    # different sizes: quantiles match
    v = torch.rand(1000)
    r = torch.rand(37) * 0.5 + 0.25
    m = match_histogram(v, r)
    assert abs(float(m.min()) - float(r.min())) < 1e-6 and abs(float(m.max()) - float(r.max())) < 1e-6
    assert abs(float(m.median()) - float(r.median())) < 0.02


def test_color_transfer_batch_alpha_and_errors():
    from nodegen.nodes.style import color_transfer

    img = torch.cat([rand_image(4, 0.2, 0.7), rand_image(5, 0.2, 0.7)])
    img = torch.cat([img, torch.rand(2, 24, 20, 1)], dim=-1)  # RGBA
    ref = rand_image(6, 0.3, 0.5, tint=(0.6, 0.9, 1.0))
    out = color_transfer.run(None, image=img, reference=ref, method="reinhard_lab", strength=1.0)
    assert out.shape == img.shape and torch.equal(out[..., 3], img[..., 3])
    for b in range(2):
        assert torch.allclose(rgb_to_lab(out[b, ..., :3]).mean((0, 1)),
                              rgb_to_lab(ref[0]).mean((0, 1)), atol=0.1)
    with pytest.raises(ValueError, match="method"):
        color_transfer.run(None, image=img, reference=ref, method="xyz", strength=1.0)
    with pytest.raises(ValueError, match="reference batch"):
        color_transfer.run(None, image=img, reference=torch.cat([ref] * 3), method="histogram",
                           strength=1.0)


def test_latent_adain_statistics():
    from nodegen.nodes.style import latent_style_adain

    g = torch.Generator().manual_seed(0)
    content = torch.randn(2, 4, 8, 8, generator=g) * 0.5 + 0.2
    style = torch.randn(1, 4, 6, 10, generator=g) * torch.tensor([1.0, 2.0, 0.3, 0.7]).view(1, 4, 1, 1) \
        + torch.tensor([0.5, -1.0, 0.0, 2.0]).view(1, 4, 1, 1)
    mask = torch.ones(2, 1, 8, 8)
    out = latent_style_adain.run(None, content={"samples": content, "noise_mask": mask},
                                 style={"samples": style}, strength=1.0)
    s = out["samples"]
    assert s.shape == content.shape and out["noise_mask"] is mask
    for b in range(2):
        assert torch.allclose(s[b].mean((1, 2)), style[0].mean((1, 2)), atol=1e-5)
        assert torch.allclose(s[b].std((1, 2), unbiased=False), style[0].std((1, 2), unbiased=False),
                              atol=1e-4)
        # spatial structure of the content is kept: per channel the map is affine increasing
        for c in range(4):
            corr = torch.corrcoef(torch.stack([s[b, c].flatten(), content[b, c].flatten()]))[0, 1]
            assert corr > 0.9999
    half = latent_style_adain.run(None, content={"samples": content}, style={"samples": style},
                                  strength=0.5)["samples"]
    assert torch.allclose(half, (content + s) / 2, atol=1e-6)
    with pytest.raises(ValueError, match="channels"):
        latent_style_adain.run(None, content={"samples": content},
                               style={"samples": torch.zeros(1, 16, 8, 8)}, strength=1.0)
