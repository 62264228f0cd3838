"""Which scale a 4-channel LATENT is in: the records that say it, and the rescaling they drive.

A LATENT of an SD1/SD2/SDXL model holds *scaled* latents (diffusers' convention): VAE latents
times the family's scaling factor (SD1/SD2 0.18215, SDXL 0.13025). A standalone VAE file
without metadata, loaded with no latent format chosen, does not say which family it is for (the
architectures are the same), so its scale is assumed (:attr:`VAEModel.scale_assumed`); a latent
read from a ComfyUI ``.latent`` file holds raw latents of an unknown family. Two keys of the LATENT
dict close those gaps; the latent nodes copy the dict, so they travel along:

* ``"family"``: set on every sampler output (:func:`with_family`); a VAE whose scale was assumed
  decodes such a latent with that family's scale (:func:`decode_scale`).
* ``"vae_scale"``: the scale the samples are in (samples = raw VAE latents x ``vae_scale``), set
  by the encode nodes (:func:`encoded`) and by LoadLatent (1.0: ComfyUI's raw latents); a sampler
  whose model is of a family with another scale rescales the latent once,
  ``z * family_scale / vae_scale``, before sampling (:func:`to_model_scale`, as ComfyUI's model
  scales raw latents with its own latent format), and the decode nodes divide by it
  (:func:`decode_scale`).

:func:`samples_scale` reads these records back: what SaveLatent divides by to write ComfyUI's raw
latents.

Inpainting models' masked-image latents travel in the conditioning instead (InpaintModelConditioning's
``concat_latent_image``); :func:`encoded_extras` records the assumed scale beside them
(``"concat_latent_scale"``) and the denoiser brings them to the model's family with
:func:`concat_in_model_scale`, as ComfyUI scales them with the model's latent format.

An explicit latent format (VAELoader's ``latent_format``) or file metadata is never overridden:
such VAEs do not have ``scale_assumed``, and decode sampler outputs at their own scale.
"""

from __future__ import annotations

import logging

import torch

from nodegen.models.objects import SCALING_FACTORS

log = logging.getLogger(__name__)

FAMILY_KEY = "family"
VAE_SCALE_KEY = "vae_scale"
CONCAT_SCALE_KEY = "concat_latent_scale"


def _family(model) -> str | None:
    return getattr(model, "family", None)


def with_family(model, latent: dict) -> dict:
    """``latent`` (a sampler's output) marked with the family of the model that made it."""
    family = _family(model)
    return dict(latent, **{FAMILY_KEY: family}) if family else dict(latent)


def to_model_scale(model, latent: dict) -> dict:
    """``latent`` in the scale of ``model``'s family: a latent whose recorded scale (``vae_scale``)
    is not that of the model's 4-channel family is rescaled once; the record is dropped either way
    (the sampler's output is in the model's scale)."""
    if VAE_SCALE_KEY not in latent:
        return latent
    out = {k: v for k, v in latent.items() if k != VAE_SCALE_KEY}
    family = _family(model)
    recorded = float(latent[VAE_SCALE_KEY])
    target = SCALING_FACTORS.get(family or "")
    if target is None or target == recorded or not torch.is_tensor(latent.get("samples")):
        return out
    log.info("latent in the scale %g (as recorded); rescaled to the %s scale %g", recorded, family, target)
    out["samples"] = latent["samples"] * (target / recorded)
    return out


def decode_scale(vae, latent: dict) -> float:
    """The scale to decode ``latent`` with: the family's scale when the VAE's own was assumed
    and the latent records a 4-channel family; else the recorded ``vae_scale`` (the scale the
    samples are in, whichever VAE decodes them); else the VAE's."""
    if not getattr(vae, "scale_assumed", False):
        return float(latent[VAE_SCALE_KEY]) if VAE_SCALE_KEY in latent else vae.scaling_factor
    family = latent.get(FAMILY_KEY)
    if family in SCALING_FACTORS:
        scale = vae.scale_for(family)
        if scale != vae.scaling_factor:
            log.info("VAE %s has no latent format; decoding with the %s scale %g taken from the latent's model",
                     getattr(vae, "source", ""), family, scale)
        return scale
    if VAE_SCALE_KEY in latent:
        return float(latent[VAE_SCALE_KEY])
    return vae.scaling_factor


def encoded(vae, latent: dict) -> dict:
    """An encode node's LATENT, with the scale the VAE encoded at recorded (assumed or not)."""
    return dict(latent, **{VAE_SCALE_KEY: float(vae.scaling_factor)})


def samples_scale(latent: dict) -> float | None:
    """What ``latent``'s samples are multiplied by relative to the VAE's raw latents (ComfyUI's
    convention): the recorded model ``family``'s scale (sampler outputs; 1 for the 16-channel
    families, whose latents are raw), else the recorded ``vae_scale`` (encode nodes, LoadLatent),
    else 1 for a latent of other than 4 channels (nodegen keeps those raw); None for a 4-channel
    latent that records neither: its scale is unknown."""
    family = latent.get(FAMILY_KEY)
    if family is not None:
        return SCALING_FACTORS.get(family, 1.0)
    if VAE_SCALE_KEY in latent:
        return float(latent[VAE_SCALE_KEY])
    samples = latent.get("samples")
    if torch.is_tensor(samples) and samples.ndim >= 2 and samples.shape[1] != 4:
        return 1.0
    return None


def encoded_extras(vae, extras: dict) -> dict:
    """Conditioning extras holding ``concat_latent_image`` encoded by ``vae``, with the scale it
    assumed recorded when the VAE's was assumed."""
    if getattr(vae, "scale_assumed", False):
        return dict(extras, **{CONCAT_SCALE_KEY: float(vae.scaling_factor)})
    return extras


def concat_in_model_scale(family: str, extras: dict, latent: torch.Tensor) -> torch.Tensor:
    """``latent`` (the extras' ``concat_latent_image``) in the scale of ``family``: rescaled when it
    was encoded with an assumed scale that differs from the family's."""
    recorded = extras.get(CONCAT_SCALE_KEY)
    target = SCALING_FACTORS.get(family)
    if recorded is None or target is None or float(recorded) == target:
        return latent
    return latent * (target / float(recorded))
