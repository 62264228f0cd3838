"""Save one component (diffusion model, VAE or text encoders) with its patches baked in, in the
layouts ComfyUI's ModelSave, VAESave and CLIPSave write (comfy_extras/nodes_model_merging.py):

* diffusion model: the original UNet keys under ``model.diffusion_model.`` (plus ComfyUI's empty
  ``v_pred`` marker for v-prediction models), as a checkpoint holds them without CLIP and VAE;
* VAE: the original (LDM) VAE keys without a prefix, as the files of the ``vae`` folder;
* text encoders: one file per encoder, named for it (``clip_l``, ``clip_g``, ``clip_h``,
  ``t5xxl``), in the transformers layout the files of the ``text_encoders`` folder use
  (``text_model.*`` and ``text_projection.weight`` for CLIP; T5's own keys).

SD1.x / SD2 / SDXL diffusion models are written; SD3 and Flux diffusion models are not yet (no
exporter back to their original layout here). Weights are copied in the widest float dtype the
component holds.
"""

from __future__ import annotations

import torch

from nodegen.models.checkpoint_save import cpu_copies
from nodegen.models.ldm_export import VAE_PREFIX, unet_to_ldm, vae_to_ldm
from nodegen.models.objects import FLOW_FAMILIES

#: Each text-encoder family's encoders (their names in the CLIP object) and ComfyUI's file suffixes.
CLIP_PARTS = {
    "sd1": {"text_encoder": "clip_l"},
    "sd2": {"text_encoder": "clip_h"},
    "sdxl": {"text_encoder": "clip_l", "text_encoder_2": "clip_g"},
    "sdxl_refiner": {"text_encoder_2": "clip_g"},
}
FLOW_PARTS = {"clip_l": "clip_l", "clip_g": "clip_g", "t5": "t5xxl"}


def diffusion_model_state_dict(model) -> dict[str, torch.Tensor]:
    family = getattr(model, "family", None)
    if family in FLOW_FAMILIES:
        raise ValueError(f"saving a {family} diffusion model alone is not supported yet (SD1.x, SD2 and SDXL are)")
    with model.use("cpu") as unet:
        sd = cpu_copies(unet_to_ldm({k: v.detach() for k, v in unet.state_dict().items()}, dict(unet.config)))
    if model.prediction_type == "v_prediction":
        sd["v_pred"] = torch.tensor([])  # ComfyUI's marker, which the loader reads
    return sd


def vae_state_dict(vae) -> dict[str, torch.Tensor]:
    with vae.use("cpu") as v:
        sd = vae_to_ldm({k: t.detach() for k, t in v.state_dict().items()})
        return cpu_copies({k.removeprefix(VAE_PREFIX): t for k, t in sd.items()})


def _clip_layout(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers' CLIPTextModel(WithProjection) file layout: everything but the projection
    under ``text_model.``."""
    out = {}
    for k, t in sd.items():
        if k.startswith(("text_model.", "text_projection.")):
            out[k] = t
        else:
            out["text_model." + k] = t
    return out


def text_encoder_state_dicts(clip) -> dict[str, dict[str, torch.Tensor]]:
    """``{file suffix: state dict}``, one per encoder of the CLIP."""
    names = tuple(getattr(clip, "encoder_names", ()))
    if not names:
        raise ValueError("the CLIP holds no text encoders (a checkpoint without them)")
    roles = getattr(clip, "roles", None)
    suffixes = ([FLOW_PARTS[r] for r in roles] if roles is not None
                else [CLIP_PARTS[clip.family][n] for n in names])
    out = {}
    with clip.use("cpu") as encoders:
        modules = list(encoders.values()) if isinstance(encoders, dict) else list(encoders)
        for suffix, module in zip(suffixes, modules, strict=True):
            sd = {k: v.detach() for k, v in module.state_dict().items()}
            out[suffix] = cpu_copies(sd if suffix == "t5xxl" else _clip_layout(sd))
    return out
