"""ImageMorphology (ComfyUI's "Morphology" node) against kornia.morphology's rules with a square
kernel of ones and its defaults, transcribed here (kornia 0.9, kornia/morphology/morphology.py):

* erosion: ``min`` over rows ``y - k//2 .. y - k//2 + k - 1`` (columns alike);
* dilation reflects the kernel (Minkowski): ``max`` over rows ``y - (k - 1 - k//2) .. y + k//2``;
* border "geodesic": pixels outside the image take no part;
* opening = dilation(erosion), closing = erosion(dilation), gradient = dilation - erosion,
  top_hat = x - opening, bottom_hat = closing - x.

The small arrays below were worked out by hand from those rules."""

from __future__ import annotations

import pytest
import torch

from nodegen.image.morphology import dilate, erode, morphology
from tests.support.nodes import run

# a 3 x 4 image (tenths), distinct values so each window's extreme is visible
X = torch.tensor([[1, 5, 2, 8],
                  [7, 3, 9, 4],
                  [6, 0, 5, 2]], dtype=torch.float32)[None, None] / 10


def tenths(rows):
    return torch.tensor(rows, dtype=torch.float32)[None, None] / 10


def test_erode_and_dilate_match_hand_worked_windows_with_geodesic_borders():
    # k = 3: the centred 3 x 3 window, cut at the borders (a zero border would make every edge pixel 0)
    assert torch.equal(erode(X, 3), tenths([[1, 1, 2, 2], [0, 0, 0, 2], [0, 0, 0, 2]]))
    assert torch.equal(dilate(X, 3), tenths([[7, 9, 9, 9], [7, 9, 9, 9], [7, 9, 9, 9]]))
    # k = 2 (even): erosion reads the pixel and the one above / left; dilation the one below / right
    assert torch.equal(erode(X, 2), tenths([[1, 1, 2, 2], [1, 1, 2, 2], [6, 0, 0, 2]]))
    assert torch.equal(dilate(X, 2), tenths([[7, 9, 9, 8], [7, 9, 9, 4], [6, 5, 5, 2]]))
    # a kernel larger than the image: every window is the whole image
    assert torch.equal(erode(X, 9), torch.zeros_like(X)) and torch.equal(dilate(X, 9), torch.full_like(X, 0.9))


def test_even_kernel_on_the_node_moves_erosion_up_left_and_dilation_down_right():
    hot = torch.zeros(1, 5, 6, 1)
    hot[0, 1, 2] = 1.0
    dilated = run("ImageMorphology", image=hot, operation="dilate", kernel_size=4)["image"]
    want = torch.zeros(5, 6)
    want[0:3, 0:4] = 1.0  # rows y-1..y+2 hold row 1 for y = 0..2; columns x-1..x+2 hold column 2 for x = 0..3
    assert torch.equal(dilated[0, ..., 0], want)
    eroded = run("ImageMorphology", image=1 - hot, operation="erode", kernel_size=4)["image"]
    want = torch.ones(5, 6)
    want[0:4, 1:5] = 0.0  # rows y-2..y+1 hold row 1 for y = 0..3; columns x-2..x+1 hold column 2 for x = 1..4
    assert torch.equal(eroded[0, ..., 0], want)


def _reference(x: torch.Tensor, k: int, dilation: bool) -> torch.Tensor:
    """kornia's rule, one window at a time."""
    before = k - 1 - k // 2 if dilation else k // 2
    h, w = x.shape[-2:]
    out = torch.empty_like(x)
    for y in range(h):
        for xx in range(w):
            rows = slice(max(0, y - before), min(h, y - before + k))
            cols = slice(max(0, xx - before), min(w, xx - before + k))
            window = x[..., rows, cols].flatten(-2)
            out[..., y, xx] = window.amax(-1) if dilation else window.amin(-1)
    return out


def _kornia_composite(x: torch.Tensor, op: str, k: int) -> torch.Tensor:
    def ero(t):
        return _reference(t, k, dilation=False)

    def dil(t):
        return _reference(t, k, dilation=True)
    return {"erode": lambda: ero(x), "dilate": lambda: dil(x), "open": lambda: dil(ero(x)),
            "close": lambda: ero(dil(x)), "gradient": lambda: dil(x) - ero(x),
            "top_hat": lambda: x - dil(ero(x)), "bottom_hat": lambda: ero(dil(x)) - x}[op]()


def test_the_reference_agrees_with_the_hand_worked_arrays():
    for k in (2, 3):
        assert torch.equal(_reference(X, k, dilation=False), erode(X, k))
        assert torch.equal(_reference(X, k, dilation=True), dilate(X, k))


@pytest.mark.parametrize("k", [3, 4, 5])
def test_every_operation_of_the_node_is_kornias_on_an_rgba_batch(k):
    image = torch.rand(2, 6, 7, 4, generator=torch.Generator().manual_seed(k))
    for op in ("erode", "dilate", "open", "close", "gradient", "bottom_hat", "top_hat"):
        got = run("ImageMorphology", image=image, operation=op, kernel_size=k)["image"]
        want = _kornia_composite(image.movedim(-1, 1), op, k).movedim(1, -1)
        assert got.shape == image.shape and torch.equal(got, want), (op, k)
    # opening removes what the kernel cannot fit into and never adds; closing never removes
    opened = morphology(image.movedim(-1, 1), "open", k)
    closed = morphology(image.movedim(-1, 1), "close", k)
    assert bool((opened <= image.movedim(-1, 1)).all()) and bool((closed >= image.movedim(-1, 1)).all())


def test_bad_inputs_name_the_node_and_input():
    image = torch.rand(1, 4, 4, 3)
    with pytest.raises(ValueError, match=r"ImageMorphology: input 'kernel_size'"):
        run("ImageMorphology", image=image, operation="erode", kernel_size=2)
    with pytest.raises(ValueError, match=r"ImageMorphology: input 'operation'.*'thin'"):
        run("ImageMorphology", image=image, operation="thin", kernel_size=3)
    with pytest.raises(ValueError, match=r"ImageMorphology: input 'image'"):
        run("ImageMorphology", image=torch.rand(1, 4, 4), operation="erode", kernel_size=3)  # a MASK
    with pytest.raises(ValueError, match="kernel size"):
        erode(X, 0)
