"""Latent formats of the 16-channel families (ComfyUI's convention): a LATENT holds the VAE's raw
latents (16-channel VAEs neither scale nor shift, so one VAE file serves SD3 and Flux alike), and
the sampler moves them into the model's space, ``(z - shift) * scale``, and back.

SD3 / SD 3.5: scale 1.5305, shift 0.0609; Flux.1 and Chroma (which uses Flux's VAE): scale 0.3611, shift
0.1159 (the values in the models' diffusers VAE configs).

A model-sampling node may give a MODEL another format (``model.options["latent_format"]``, read by
:func:`format_of`): ``sdxl_playground_2_5`` (ModelSamplingContinuousEDM's ``edm_playground_v2.5``)
normalises each channel, ``(raw - mean) * 0.5 / std`` with Playground v2.5's per-channel mean and std
(its diffusers VAE config's ``latents_mean`` / ``latents_std``; ComfyUI's ``SDXL_Playground_2_5``).
Its LATENT stays an SDXL one (``raw * 0.13025``, what nodegen's SDXL VAE encodes and decodes), and an
all-zero latent (EmptyLatentImage) is left as it is, as ComfyUI does not shift the empty latent.
"""

from __future__ import annotations

import torch

from nodegen.models.objects import SCALING_FACTORS

#: family -> (scaling_factor, shift_factor)
LATENT_FORMATS: dict[str, tuple[float, float]] = {"sd3": (1.5305, 0.0609), "flux": (0.3611, 0.1159),
                                                   "chroma": (0.3611, 0.1159)}
LATENT_CHANNELS: dict[str, int] = {"sd3": 16, "flux": 16, "chroma": 16}
#: per-channel formats: name -> (family of the LATENT, scale, mean, std)
CHANNEL_FORMATS: dict[str, tuple[str, float, tuple[float, ...], tuple[float, ...]]] = {
    "sdxl_playground_2_5": ("sdxl", 0.5, (-1.6574, 1.886, -1.383, 2.5155), (8.4927, 5.9022, 6.5498, 5.2299)),
}


def format_of(model) -> str:
    """The latent format of a MODEL: the one a model-sampling node set, else its family's."""
    return (getattr(model, "options", None) or {}).get("latent_format") or getattr(model, "family", "sd1")


def latent_in(family: str, z: torch.Tensor) -> torch.Tensor:
    """A LATENT's samples in the model's space; ``family`` is a family or a :func:`format_of` name."""
    if family in CHANNEL_FORMATS:
        return _channels_in(family, z)
    fmt = LATENT_FORMATS.get(family)
    if fmt is None:
        return z
    scale, shift = fmt
    return (z - shift) * scale


def latent_out(family: str, x: torch.Tensor) -> torch.Tensor:
    if family in CHANNEL_FORMATS:
        return _channels_out(family, x)
    fmt = LATENT_FORMATS.get(family)
    if fmt is None:
        return x
    scale, shift = fmt
    return x / scale + shift


def _channel_stats(name: str, like: torch.Tensor) -> tuple[float, float, torch.Tensor, torch.Tensor]:
    base, scale, mean, std = CHANNEL_FORMATS[name]
    mean_t, std_t = (torch.tensor(v, dtype=like.dtype, device=like.device).view(1, -1, 1, 1) for v in (mean, std))
    return SCALING_FACTORS[base], scale, mean_t, std_t


def _channels_in(name: str, z: torch.Tensor) -> torch.Tensor:
    if not torch.count_nonzero(z):
        return z
    base, scale, mean, std = _channel_stats(name, z)
    return (z / base - mean) * scale / std


def _channels_out(name: str, x: torch.Tensor) -> torch.Tensor:
    base, scale, mean, std = _channel_stats(name, x)
    return (x * std / scale + mean) * base
