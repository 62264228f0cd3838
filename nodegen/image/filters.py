"""Gaussian blur and unsharp-mask sharpening of IMAGE batches ``[B,H,W,C]``, as ComfyUI's
ImageBlur and ImageSharpen (comfy_extras/nodes_post_processing.py) compute them: a
``(2r+1) x (2r+1)`` Gaussian sampled on ``[-1, 1]`` (so ``sigma`` is relative to the radius),
reflect padding, one kernel per channel."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_kernel(radius: int, sigma: float) -> torch.Tensor:
    """The normalised ``[2r+1, 2r+1]`` kernel ``exp(-d^2 / (2 sigma^2))``, ``d`` the distance on a
    ``linspace(-1, 1)`` grid."""
    size = 2 * radius + 1
    ax = torch.linspace(-1, 1, size)
    y, x = torch.meshgrid(ax, ax, indexing="ij")
    g = torch.exp(-(x * x + y * y) / (2.0 * sigma * sigma))
    return g / g.sum()


def _convolve(image: torch.Tensor, kernel: torch.Tensor, radius: int) -> torch.Tensor:
    channels = image.shape[-1]
    x = F.pad(image.permute(0, 3, 1, 2), (radius,) * 4, mode="reflect")
    weight = kernel.to(x).expand(channels, 1, *kernel.shape)
    return F.conv2d(x, weight, groups=channels).permute(0, 2, 3, 1)


def blur(image: torch.Tensor, radius: int, sigma: float) -> torch.Tensor:
    if radius == 0:
        return image
    return _convolve(image, gaussian_kernel(radius, sigma), radius)


def sharpen(image: torch.Tensor, radius: int, sigma: float, alpha: float) -> torch.Tensor:
    """``image`` convolved with ``delta - 10 * alpha * (gaussian - delta-sum correction)``: the centre
    weight is set so the kernel sums to 1; clamped to [0, 1]."""
    if radius == 0:
        return image
    kernel = gaussian_kernel(radius, sigma) * -(alpha * 10)
    kernel[radius, radius] = kernel[radius, radius] - kernel.sum() + 1.0
    return _convolve(image, kernel, radius).clamp(0, 1)
