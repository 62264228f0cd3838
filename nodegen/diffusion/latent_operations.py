"""Latent operations: functions on latent tensors ``[B,C,h,w]`` that act on each pixel's vector
across channels, as ComfyUI's experimental LATENT_OPERATION nodes (comfy_extras/nodes_latent.py)
define them. They apply to a LATENT (LatentApplyOperation) or, while sampling, to the guidance
``cond - uncond`` before CFG (LatentApplyOperationCFG: :class:`GuidanceOperation`).

* :class:`TonemapReinhard`: each pixel's length ``m`` over channels is compressed with Reinhard's
  curve ``m / (m + 1)`` measured in units of ``top = (mean + 5 std) * multiplier`` of the lengths
  (per image), the direction kept: high-CFG blow-outs are pulled back.
* :class:`Sharpen`: the unit vectors (direction per pixel) are sharpened with an unsharp mask of a
  ``(2r+1)^2`` Gaussian on ``[-1, 1]`` (reflect padding), the lengths kept.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nodegen.image.filters import gaussian_kernel


class TonemapReinhard:
    def __init__(self, multiplier: float = 1.0) -> None:
        self.multiplier = float(multiplier)

    def __call__(self, latent: torch.Tensor) -> torch.Tensor:
        magnitude = (torch.linalg.vector_norm(latent, dim=1) + 1e-10)[:, None]
        direction = latent / magnitude
        mean = torch.mean(magnitude, dim=(1, 2, 3), keepdim=True)
        std = torch.std(magnitude, dim=(1, 2, 3), keepdim=True)
        top = (std * 5 + mean) * self.multiplier
        scaled = magnitude * (1.0 / top)
        return direction * (scaled / (scaled + 1.0) * top)


class Sharpen:
    def __init__(self, radius: int = 9, sigma: float = 1.0, alpha: float = 0.1) -> None:
        self.radius = int(radius)
        self.sigma = float(sigma)
        self.alpha = float(alpha)

    def __call__(self, latent: torch.Tensor) -> torch.Tensor:
        r = self.radius
        if min(latent.shape[-2:]) <= r:
            raise ValueError(f"LatentOperationSharpen: input 'sharpen_radius' {r} needs a latent larger than "
                             f"{r} on each side (an image larger than {8 * r} px), got {tuple(latent.shape[-2:])}")
        luminance = (torch.linalg.vector_norm(latent, dim=1) + 1e-6)[:, None]
        direction = latent / luminance
        kernel = gaussian_kernel(r, self.sigma).to(latent) * (self.alpha * -10)
        kernel[r, r] = kernel[r, r] - kernel.sum() + 1.0
        channels = latent.shape[1]
        padded = F.pad(direction, (r, r, r, r), mode="reflect")
        sharpened = F.conv2d(padded, kernel.expand(channels, 1, *kernel.shape), groups=channels)
        return luminance * sharpened


class GuidanceOperation:
    """A ``pre_cfg_hooks`` entry (see :mod:`nodegen.diffusion.denoiser`): the operation on the
    guidance ``cond - uncond``, or on ``cond`` where the negative was skipped (ComfyUI's skipped
    negative is zeros, which gives the same)."""

    def __init__(self, operation) -> None:
        self.operation = operation

    def __call__(self, den, x: torch.Tensor, sigma: float, cond: torch.Tensor, uncond: torch.Tensor | None):
        if uncond is None:
            return self.operation(cond), uncond
        return self.operation(cond - uncond) + uncond, uncond
