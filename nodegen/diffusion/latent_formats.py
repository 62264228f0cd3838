"""Latent formats of the 16-channel families (ComfyUI's convention): a LATENT holds the VAE's raw
latents (16-channel VAEs neither scale nor shift, so one VAE file serves SD3 and Flux alike), and
the sampler moves them into the model's space, ``(z - shift) * scale``, and back.

SD3 / SD 3.5: scale 1.5305, shift 0.0609; Flux.1: scale 0.3611, shift 0.1159 (the values in the
models' diffusers VAE configs).
"""

from __future__ import annotations

import torch

#: family -> (scaling_factor, shift_factor)
LATENT_FORMATS: dict[str, tuple[float, float]] = {"sd3": (1.5305, 0.0609), "flux": (0.3611, 0.1159)}
LATENT_CHANNELS: dict[str, int] = {"sd3": 16, "flux": 16}


def latent_in(family: str, z: torch.Tensor) -> torch.Tensor:
    fmt = LATENT_FORMATS.get(family)
    if fmt is None:
        return z
    scale, shift = fmt
    return (z - shift) * scale


def latent_out(family: str, x: torch.Tensor) -> torch.Tensor:
    fmt = LATENT_FORMATS.get(family)
    if fmt is None:
        return x
    scale, shift = fmt
    return x / scale + shift
