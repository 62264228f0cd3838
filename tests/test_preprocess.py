"""Weightless ControlNet preprocessors, checked numerically on synthetic images."""

from __future__ import annotations

import pytest
import torch

from nodegen.preprocess import edges as E
from nodegen.preprocess.filters import gaussian_blur, sobel

torch.set_num_threads(1)


def square(h=32, w=32, a=8, b=24, batch=1):
    img = torch.zeros(batch, h, w, 3)
    img[:, a:b, a:b] = 1.0
    return img


def border(a=8, b=24, h=32, w=32):
    """Pixels on the inside border of the square [a, b)."""
    m = torch.zeros(h, w, dtype=torch.bool)
    m[a:b, a:b] = True
    inner = torch.zeros_like(m)
    inner[a + 1:b - 1, a + 1:b - 1] = True
    return m & ~inner


def test_canny_square_gives_one_pixel_border():
    from nodegen.nodes.preprocess import canny_edges

    out = canny_edges.run(None, image=square(), low_threshold=0.2, high_threshold=0.5, sigma=1.0)
    assert out.shape == (1, 32, 32, 3)
    e = out[0, :, :, 0] > 0.5
    assert torch.equal(out[..., 0], out[..., 2])  # grey
    # every edge pixel is within one pixel of the square's border, and the edge is closed
    near = torch.zeros(32, 32, dtype=torch.bool)
    near[6:26, 6:26] = True
    near[10:22, 10:22] = False
    assert e.any() and not (e & ~near).any()
    for row in range(10, 22):  # each row crossing the square meets the left and right edges once
        assert int(e[row, :16].sum()) == 1 and int(e[row, 16:].sum()) == 1
    for col in range(10, 22):
        assert int(e[:16, col].sum()) == 1 and int(e[16:, col].sum()) == 1
    # flat image: no edges
    assert canny_edges.run(None, image=torch.full((1, 16, 16, 3), 0.7), low_threshold=0.1,
                           high_threshold=0.2, sigma=1.0).sum() == 0


def test_canny_thresholds_and_hysteresis():
    # two steps: a strong one (1.0) and a weak one (0.3) in separate places
    img = torch.zeros(1, 32, 64, 3)
    img[:, :, 16:32] = 1.0  # strong step at x=16, falls back at x=32 (strong)
    img[:, :, 48:] = 0.3    # weak step at x=48
    strong_only = E.canny(img, 0.4, 0.5)[0, :, :, 0]
    assert strong_only[:, 14:18].sum() > 0 and strong_only[:, 46:50].sum() == 0
    low = E.canny(img, 0.1, 0.15)[0, :, :, 0]  # the 0.3 step scores 0.3 * 0.64 = 0.19
    assert low[:, 46:50].sum() > 0
    # hysteresis: a horizontal edge whose contrast fades from 1.0 to 0.3 along x is kept whole
    # (weak pixels connected to the strong start); the same fade from 0.4 to 0.3 (all weak) is lost
    def fading(c0, c1):
        img = torch.zeros(1, 32, 48, 3)
        img[:, 16:] = torch.linspace(c0, c1, 48).view(1, 1, 48, 1)
        return E.canny(img, 0.15, 0.5)[0, :, :, 0]

    m = fading(1.0, 0.3)
    assert m[15:17, 4:44].sum(0).min() == 1  # one edge pixel per column, all along
    assert m[:14].sum() == 0 and m[18:].sum() == 0
    assert fading(0.4, 0.3).sum() == 0
    # the weak part alone passes the low threshold: with high lowered it appears
    assert E.canny(torch.zeros(1, 32, 48, 3).index_fill_(1, torch.arange(16, 32), 0.3), 0.15,
                   0.15)[0, 15:17].sum() > 0
    with pytest.raises(ValueError, match="low_threshold"):
        E.canny(img, 0.6, 0.5)


def test_sobel_and_blur_numbers():
    x = torch.zeros(1, 1, 5, 8)
    x[..., 4:] = 1.0
    gx, gy = sobel(x)
    assert torch.allclose(gx[0, 0, 2], torch.tensor([0, 0, 0, 1.0, 1.0, 0, 0, 0]))
    assert gy.abs().max() == 0
    b = gaussian_blur(torch.rand(1, 1, 20, 20), 1.5)
    assert abs(float(b.mean()) - float(b.mean())) < 1e-6
    const = gaussian_blur(torch.full((1, 1, 9, 9), 0.25), 2.0)
    assert torch.allclose(const, torch.full_like(const, 0.25), atol=1e-6)


@pytest.mark.parametrize("method", ["sobel", "dog"])
def test_lineart_square(method):
    from nodegen.nodes.preprocess import lineart_edges

    out = lineart_edges.run(None, image=square(), method=method, sigma=1.0, strength=1.0)[0, :, :, 0]
    b = border()
    # lines are bright on the border (a sharp unit step gives ~1), dark far from it
    assert float(out[b].mean()) > 0.6
    assert float(out[:4, :4].max()) < 1e-3 and float(out[14:18, 14:18].max()) < 0.05
    assert 0.9 <= float(out.max()) <= 1.0
    half = lineart_edges.run(None, image=square(), method=method, sigma=1.0, strength=0.5)
    unclamped = out < 1.0
    assert torch.allclose(half[0, :, :, 0][unclamped], out[unclamped] * 0.5, atol=1e-6)
    with pytest.raises(ValueError, match="method"):
        E.lineart(square(), "laplace")


def test_scribble_from_mask_outline():
    from nodegen.nodes.preprocess import scribble_from_mask

    mask = torch.zeros(2, 32, 32)
    mask[0, 8:24, 8:24] = 1
    out = scribble_from_mask.run(None, mask=mask, thickness=3)
    assert out.shape == (2, 32, 32, 3)
    s = out[0, :, :, 0]
    # a 3-pixel line centred on the boundary: rows 7..9 on the top edge, nothing inside/outside
    assert torch.equal(s[7:10, 12], torch.ones(3)) and s[6, 12] == 0 and s[10, 12] == 0
    assert s[16, 16] == 0 and s[2, 2] == 0
    ring = torch.zeros(32, 32)
    ring[7:25, 7:25] = 1
    ring[10:22, 10:22] = 0
    assert torch.equal(s, ring)
    assert out[1].sum() == 0  # empty mask: empty scribble


def test_image_threshold():
    from nodegen.nodes.preprocess import image_threshold

    img = torch.zeros(1, 2, 2, 3)
    img[0, 0, 0] = torch.tensor([1.0, 1.0, 1.0])  # luma 1
    img[0, 0, 1] = torch.tensor([1.0, 0.0, 0.0])  # luma 0.299
    img[0, 1, 0] = torch.tensor([0.0, 1.0, 0.0])  # luma 0.587
    out = image_threshold.run(None, image=img, threshold=0.5, mode="luminance")
    assert out[0, :, :, 0].tolist() == [[1.0, 0.0], [1.0, 0.0]]
    assert torch.equal(out[..., 0], out[..., 1])
    pc = image_threshold.run(None, image=img, threshold=0.5, mode="per_channel")
    assert pc[0, 0, 1].tolist() == [1.0, 0.0, 0.0]


def test_tile_preprocess_blurs_but_keeps_colours():
    from nodegen.nodes.preprocess import tile_preprocess

    g = torch.Generator().manual_seed(0)
    img = torch.rand(1, 32, 32, 3, generator=g)
    out = tile_preprocess.run(None, image=img, downscale_factor=4.0)
    assert out.shape == img.shape
    # mean colour kept, detail (high frequencies) removed
    assert torch.allclose(out.mean((1, 2)), img.mean((1, 2)), atol=0.02)
    hf = lambda t: (t[:, 1:] - t[:, :-1]).abs().mean()  # noqa: E731
    assert hf(out) < 0.5 * hf(img)
    # factor 1 is the identity; a smooth image barely changes
    assert torch.allclose(tile_preprocess.run(None, image=img, downscale_factor=1.0), img, atol=1e-5)
    ramp = torch.linspace(0, 1, 32).view(1, 1, 32, 1).expand(1, 32, 32, 3)
    assert (tile_preprocess.run(None, image=ramp, downscale_factor=2.0) - ramp).abs().max() < 0.03


def test_canny_sees_edges_between_colours_of_equal_brightness():
    # red (1, 0, 0) and a grey of the same luminance (0.299): invisible in luminance
    img = torch.full((1, 32, 32, 3), 0.299)
    img[:, :, 16:] = torch.tensor([1.0, 0.0, 0.0])
    from nodegen.preprocess.filters import to_gray

    assert (to_gray(img).amax() - to_gray(img).amin()) < 1e-6
    e = E.canny(img, 0.1, 0.2)[0, :, :, 0]
    assert int(e[4:28, 14:18].sum(1).min()) == 1 and e[:, :13].sum() == 0 and e[:, 19:].sum() == 0


def test_hysteresis_equals_growing_the_strong_set():
    """The edge-list components == the textbook definition (grow strong through weak, 8-neighbours,
    one pixel per round) on random masks; batch items never leak into each other."""
    from nodegen.preprocess.edges import hysteresis
    from nodegen.preprocess.filters import dilate

    def reference(strong, weak):
        while True:
            grown = torch.maximum(dilate(strong, 1) * weak, strong)
            if torch.equal(grown, strong):
                return strong
            strong = grown

    g = torch.Generator().manual_seed(0)
    for density in (0.3, 0.5, 0.6):
        weak = (torch.rand(3, 1, 23, 31, generator=g) < density).float()
        strong = weak * (torch.rand(3, 1, 23, 31, generator=g) < 0.03).float()
        assert torch.equal(hysteresis(strong, weak), reference(strong, weak))
    # a diagonal chain is one component; the item below it in the batch has no strong pixel
    weak = torch.zeros(2, 1, 8, 8)
    weak[:, 0, torch.arange(8), torch.arange(8)] = 1
    strong = torch.zeros_like(weak)
    strong[0, 0, 0, 0] = 1
    out = hysteresis(strong, weak)
    assert torch.equal(out[0], weak[0]) and out[1].sum() == 0
    assert hysteresis(strong, torch.zeros_like(weak)).sum() == 0
