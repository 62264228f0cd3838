"""FreSca (Huang et al. 2025, "FreSca: Scaling in Frequency Space Enhances Diffusion Models",
github.com/WikiChao/FreSca, MIT), as ComfyUI's FreSca node applies it before CFG
(comfy_extras/nodes_fresca.py): the guidance ``cond - uncond`` is scaled in Fourier space, by
``scale_low`` in the centred ``2 * freq_cutoff`` square of low frequencies and by ``scale_high``
elsewhere. The square is cut with Python slicing as ComfyUI cuts it (a cutoff larger than half the
latent reaches round to the whole). Where the negative was skipped (cfg 1), ComfyUI's zeros make
the guidance the positive prediction itself.
"""

from __future__ import annotations

import torch
import torch.fft as fft


def fourier_filter(x: torch.Tensor, scale_low: float = 1.0, scale_high: float = 1.5,
                   freq_cutoff: int = 20) -> torch.Tensor:
    dtype = x.dtype
    freq = fft.fftshift(fft.fftn(x.to(torch.float32), dim=(-2, -1)), dim=(-2, -1))
    h, w = freq.shape[-2:]
    crow, ccol = h // 2, w // 2
    mask = torch.full(freq.shape, float(scale_high), device=x.device)
    mask[..., crow - freq_cutoff: crow + freq_cutoff, ccol - freq_cutoff: ccol + freq_cutoff] = float(scale_low)
    return fft.ifftn(fft.ifftshift(freq * mask, dim=(-2, -1)), dim=(-2, -1)).real.to(dtype)


class FrequencyScaledGuidance:
    """A ``pre_cfg_hooks`` entry (see :mod:`nodegen.diffusion.denoiser`)."""

    def __init__(self, scale_low: float = 1.0, scale_high: float = 1.25, freq_cutoff: int = 20) -> None:
        self.scale_low = float(scale_low)
        self.scale_high = float(scale_high)
        self.freq_cutoff = int(freq_cutoff)

    def __call__(self, den, x: torch.Tensor, sigma: float, cond: torch.Tensor, uncond: torch.Tensor | None):
        base = torch.zeros_like(cond) if uncond is None else uncond
        filtered = fourier_filter(cond - base, self.scale_low, self.scale_high, self.freq_cutoff)
        return filtered + base, uncond
