"""Grey-scale morphology with a flat square structuring element (a k x k kernel of ones), as
kornia.morphology computes it with its defaults (kornia 0.9; ComfyUI's Morphology node calls it),
in plain torch.

Rules (kornia's, for a kernel of ones and its default origin ``k // 2`` on each axis):

* erosion: each pixel becomes the minimum over the window of rows ``y - k//2 .. y + (k-1) - k//2``
  (columns alike); dilation reflects the kernel (Minkowski dilation, as ``scipy.ndimage``), so its
  window is rows ``y - (k-1) + k//2 .. y + k//2``. For odd ``k`` both are the centred window
  ``y - k//2 .. y + k//2``; for even ``k`` erosion reaches one pixel further up/left and dilation
  one pixel further down/right. (kornia before 0.9 anchored dilation like erosion; only even
  kernels differ.)
* border "geodesic": pixels outside the image take no part (the window is cut at the border).
* opening = dilation(erosion(x)); closing = erosion(dilation(x)); gradient = dilation(x) - erosion(x);
  top_hat = x - opening(x); bottom_hat = closing(x) - x.

A flat square window is separable (the max over a square is the max over rows of the max over
columns), and each 1-D running maximum takes a few passes whatever ``k`` is (van Herk, Pattern
Recognition Letters 13(7), 1992; Gil and Werman, IEEE PAMI 15(5), 1993), so a 999-pixel kernel
costs about what a 3-pixel one does.
"""

from __future__ import annotations

from nodegen.kernel.lazy import lazy_import

torch = lazy_import("torch")
F = lazy_import("torch.nn.functional")

OPERATIONS = ("erode", "dilate", "open", "close", "gradient", "bottom_hat", "top_hat")


def _window_max(x: "torch.Tensor", size: int, before: int) -> "torch.Tensor":  # noqa: F821
    """Per pixel, the maximum over rows ``y - before .. y - before + size - 1`` and the same columns
    of ``x`` [B, C, H, W]; pixels outside the image are ignored (padded with -inf)."""
    after = size - 1 - before
    padded = F.pad(x, (before, after, before, after), mode="constant", value=float("-inf"))
    rows = _running_max(padded, size, dim=-2)
    return _running_max(rows, size, dim=-1)


def _running_max(x: "torch.Tensor", size: int, dim: int) -> "torch.Tensor":  # noqa: F821
    """The maximum of every ``size`` consecutive values along ``dim`` (the result is ``size - 1``
    shorter there), in a few passes whatever ``size`` is (van Herk / Gil-Werman: running maxima
    forwards and backwards inside blocks of ``size``; a window meets at most two blocks)."""
    x = x.movedim(dim, -1)
    length = x.shape[-1]
    out_len = length - size + 1
    blocks = -(-length // size)
    x = F.pad(x, (0, blocks * size - length), value=float("-inf")).unflatten(-1, (blocks, size))
    forward = x.cummax(-1).values.flatten(-2)
    backward = x.flip(-1).cummax(-1).values.flip(-1).flatten(-2)
    out = torch.maximum(backward[..., :out_len], forward[..., size - 1 : size - 1 + out_len])
    return out.movedim(-1, dim)


def erode(x: "torch.Tensor", size: int) -> "torch.Tensor":  # noqa: F821
    """kornia.morphology.erosion(x, torch.ones(size, size)) for x [B, C, H, W]."""
    _check_size(size)
    return -_window_max(-x, size, size // 2)


def dilate(x: "torch.Tensor", size: int) -> "torch.Tensor":  # noqa: F821
    """kornia.morphology.dilation(x, torch.ones(size, size)) for x [B, C, H, W]."""
    _check_size(size)
    return _window_max(x, size, size - 1 - size // 2)


def morphology(x: "torch.Tensor", operation: str, size: int) -> "torch.Tensor":  # noqa: F821
    """One of :data:`OPERATIONS` on x [B, C, H, W] with a size x size kernel of ones."""
    if operation == "erode":
        return erode(x, size)
    if operation == "dilate":
        return dilate(x, size)
    if operation == "open":
        return dilate(erode(x, size), size)
    if operation == "close":
        return erode(dilate(x, size), size)
    if operation == "gradient":
        return dilate(x, size) - erode(x, size)
    if operation == "top_hat":
        return x - dilate(erode(x, size), size)
    if operation == "bottom_hat":
        return erode(dilate(x, size), size) - x
    raise ValueError(f"unknown morphology operation {operation!r}: one of {', '.join(OPERATIONS)}")


def _check_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"the kernel size must be a whole number of pixels >= 1, got {size!r}")
