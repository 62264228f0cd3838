"""FreeU (Si et al. 2023, "FreeU: Free Lunch in Diffusion U-Net"), as ComfyUI's FreeU and FreeU_V2
nodes apply it.

Before each decoder (up-block) ResNet, where the backbone features ``h`` and the skip features
``hsp`` are concatenated: when ``h`` has ``4 * C`` channels (``C`` = the first block's width: 320 for
SD1/SDXL) the first half of its channels is scaled by ``b1`` and ``hsp`` is filtered by ``s1``; at
``2 * C`` channels ``b2`` and ``s2``. The filter scales the lowest frequencies of ``hsp`` (a 2x2
window around the centre of the shifted 2-D spectrum) by ``s``. V2 scales the backbone by
``1 + (b - 1) * m`` instead, ``m`` the channel mean of ``h`` min-max normalised per image.

ComfyUI chooses the scale by the channel count of ``h``; diffusers' ``enable_freeu`` by up-block
index, so the two differ on the first ResNet of each block after an upsample. nodegen follows
ComfyUI (the workflows that use these nodes were tuned on it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FreeU:
    b1: float
    b2: float
    s1: float
    s2: float
    v2: bool = False

    def scales(self, model_channels: int) -> dict[int, tuple[float, float]]:
        """Backbone and skip scale by the channel count of ``h``."""
        return {model_channels * 4: (self.b1, self.s1), model_channels * 2: (self.b2, self.s2)}


def fourier_filter(x: torch.Tensor, threshold: int, scale: float) -> torch.Tensor:
    """``x`` with its shifted 2-D spectrum's central ``2*threshold`` square scaled by ``scale`` (in float32)."""
    freq = torch.fft.fftshift(torch.fft.fftn(x.float(), dim=(-2, -1)), dim=(-2, -1))
    h, w = freq.shape[-2:]
    mask = torch.ones(h, w, device=x.device)
    mask[h // 2 - threshold: h // 2 + threshold, w // 2 - threshold: w // 2 + threshold] = scale
    freq = torch.fft.ifftshift(freq * mask, dim=(-2, -1))
    return torch.fft.ifftn(freq, dim=(-2, -1)).real.to(x.dtype)


def backbone_scale(h: torch.Tensor, b: float, v2: bool) -> torch.Tensor | float:
    """The factor for the first half of ``h``'s channels: ``b`` (V1) or ``1 + (b - 1) * m`` (V2)."""
    if not v2:
        return b
    mean = h.mean(1, keepdim=True)
    flat = mean.flatten(1)
    lo = flat.min(dim=1).values.view(-1, 1, 1, 1)
    hi = flat.max(dim=1).values.view(-1, 1, 1, 1)
    return (b - 1) * ((mean - lo) / (hi - lo)) + 1


def apply_pair(h: torch.Tensor, hsp: torch.Tensor, b: float, s: float, v2: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """FreeU on one (backbone, skip) pair."""
    half = h.shape[1] // 2
    h = torch.cat([h[:, :half] * backbone_scale(h, b, v2), h[:, half:]], dim=1)
    return h, fourier_filter(hsp, 1, s)


def backbone_channels(unet: torch.nn.Module) -> list[list[int]]:
    """Per up block, per ResNet: the channels of ``h`` in its concatenated input (diffusers' layout)."""
    rev = list(reversed(unet.config.block_out_channels))
    out = []
    for i, block in enumerate(unet.up_blocks):
        prev = rev[max(i - 1, 0)]
        out.append([prev if j == 0 else rev[i] for j in range(len(block.resnets))])
    return out


@contextmanager
def installed(unet: torch.nn.Module, settings: FreeU | None) -> Iterator[torch.nn.Module]:
    """``unet`` with FreeU applied before its decoder ResNets while the context is open."""
    if settings is None:
        yield unet
        return
    scales = settings.scales(int(unet.config.block_out_channels[0]))
    handles = []
    for block, channels in zip(unet.up_blocks, backbone_channels(unet), strict=True):
        for resnet, ch in zip(block.resnets, channels, strict=True):
            if ch in scales:
                handles.append(resnet.register_forward_pre_hook(_hook(ch, *scales[ch], settings.v2)))
    try:
        yield unet
    finally:
        for handle in handles:
            handle.remove()


def _hook(channels: int, b: float, s: float, v2: bool):
    def pre_hook(module, args):
        x = args[0]
        h, hsp = apply_pair(x[:, :channels], x[:, channels:], b, s, v2)
        return (torch.cat([h, hsp], dim=1), *args[1:])
    return pre_hook
