"""Small image filters in torch (no weights, no OpenCV): grayscale, Gaussian blur, Sobel,
binary dilation/erosion. Tensors are [B,1,H,W] float unless said otherwise."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LUMA = (0.299, 0.587, 0.114)


def to_gray(image: torch.Tensor) -> torch.Tensor:
    """IMAGE [B,H,W,C] -> [B,1,H,W] luminance (Rec. 601); alpha is ignored."""
    if image.dim() != 4:
        raise ValueError(f"expected an IMAGE [B,H,W,C], got shape {tuple(image.shape)}")
    x = image.float()
    if x.shape[-1] >= 3:
        w = torch.tensor(LUMA, dtype=x.dtype, device=x.device)
        g = (x[..., :3] * w).sum(-1)
    else:
        g = x[..., 0]
    return g[:, None]


def gray_to_image(g: torch.Tensor) -> torch.Tensor:
    """[B,1,H,W] -> IMAGE [B,H,W,3]."""
    return g[:, 0, :, :, None].expand(-1, -1, -1, 3).contiguous().clamp(0.0, 1.0)


def gaussian_kernel1d(sigma: float, device=None) -> torch.Tensor:
    radius = max(1, int(math.ceil(3.0 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32, device=device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with reflect padding; sigma <= 0 returns x unchanged."""
    if sigma <= 0:
        return x
    k = gaussian_kernel1d(sigma, x.device).to(x.dtype)
    r = k.numel() // 2
    c = x.shape[1]
    pad_mode = "reflect" if min(x.shape[-2:]) > r else "replicate"
    y = F.pad(x, (r, r, 0, 0), mode=pad_mode)
    y = F.conv2d(y, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    y = F.pad(y, (0, 0, r, r), mode=pad_mode)
    return F.conv2d(y, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def sobel(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal and vertical derivatives of [B,1,H,W] with the Sobel kernels divided by 4,
    replicate padding: a sharp unit step gives a magnitude of 1 on the pixels either side."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]],
                      dtype=x.dtype, device=x.device) / 4.0
    ky = kx.t()
    y = F.pad(x, (1, 1, 1, 1), mode="replicate")
    gx = F.conv2d(y, kx.view(1, 1, 3, 3))
    gy = F.conv2d(y, ky.view(1, 1, 3, 3))
    return gx, gy


def dilate(binary: torch.Tensor, radius: int) -> torch.Tensor:
    """Binary dilation of [B,1,H,W] (0/1 floats) with a (2r+1) square."""
    if radius <= 0:
        return binary
    return F.max_pool2d(binary, 2 * radius + 1, stride=1, padding=radius)


def erode(binary: torch.Tensor, radius: int) -> torch.Tensor:
    if radius <= 0:
        return binary
    return 1.0 - dilate(1.0 - binary, radius)
