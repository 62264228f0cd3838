"""RGB <-> YCbCr ("YUV") with kornia.color's coefficients (kornia 0.9, kornia/color/ycbcr.py), which
ComfyUI's ImageRGBToYUV / ImageYUVToRGB call; channel-last tensors [..., 3], values in [0, 1]:

    Y = 0.299 R + 0.587 G + 0.114 B,  Cb = 0.564 (B - Y) + 0.5,  Cr = 0.713 (R - Y) + 0.5

and back with the exact inverse of those coefficients, clamped to [0, 1]. (kornia before 0.9 used
the rounded 1.403, 0.714, 0.344 and 1.773 on the way back: up to ~3e-4 apart.)
"""

from __future__ import annotations

from nodegen.kernel.lazy import lazy_import

torch = lazy_import("torch")


def rgb_to_ycbcr(rgb: "torch.Tensor") -> "torch.Tensor":  # noqa: F821
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = (b - y) * 0.564 + 0.5
    cr = (r - y) * 0.713 + 0.5
    return torch.stack([y, cb, cr], -1)


def ycbcr_to_rgb(ycbcr: "torch.Tensor") -> "torch.Tensor":  # noqa: F821
    y, cb, cr = ycbcr[..., 0], ycbcr[..., 1] - 0.5, ycbcr[..., 2] - 0.5
    r = y + 1.4025245442 * cr
    g = y - 0.7144034731 * cr - 0.3443401356 * cb
    b = y + 1.7730496454 * cb
    return torch.stack([r, g, b], -1).clamp(0, 1)
