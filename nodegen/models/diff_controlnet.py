"""'Diff' ControlNets: files whose ``control_model.*`` weights are stored as differences from the
base model's UNet (marked by a ``difference`` key), as ComfyUI's DiffControlNetLoader reads them
(comfy/controlnet.py): each weight whose name the base UNet also has (original LDM names) gets the
base model's weight (with the MODEL's patches, as used) added; the others are taken as stored."""

from __future__ import annotations

import torch

from nodegen.models.objects import FLOW_FAMILIES

#: The ControlNet weights' prefix in original-layout files (as nodegen.models.controlnet.PREFIX).
PREFIX = "control_model."


def base_unet_weights(model) -> dict[str, torch.Tensor]:
    """The MODEL's UNet weights as used (patches applied), under original names without a prefix."""
    from nodegen.models.ldm_export import unet_to_ldm

    if getattr(model, "family", None) in FLOW_FAMILIES:
        raise ValueError(f"a diff ControlNet adds a UNet's weights; the model is {model.family}, which has none")
    with model.use("cpu") as unet:
        sd = unet_to_ldm({k: v.detach() for k, v in unet.state_dict().items()}, dict(unet.config), prefix="")
        return {k: v.float().clone() for k, v in sd.items()}


def undiff(sd: dict[str, torch.Tensor], base: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The full ControlNet state dict (without the ``difference`` marker)."""
    out = {}
    for key, value in sd.items():
        if key == "difference":
            continue
        name = key[len(PREFIX):] if key.startswith(PREFIX) else None
        if name is not None and name in base:
            b = base[name]
            if tuple(b.shape) != tuple(value.shape):
                raise ValueError(f"the diff ControlNet's {key} {tuple(value.shape)} does not fit the model's "
                                 f"{name} {tuple(b.shape)}: it was made for another model family")
            value = value + b.to(value.dtype)
        out[key] = value
    return out
