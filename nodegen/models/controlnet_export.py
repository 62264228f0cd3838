"""diffusers -> original (LDM) key layout for ControlNets.

Used to read diffusers-layout single files (most SDXL ControlNets ship as a bare
``diffusion_pytorch_model.safetensors``) through the same path as original files, and to write
the test fixtures. The encoder half shares the UNet's names (:func:`ldm_export.unet_to_ldm`);
the ControlNet parts map as::

    controlnet_cond_embedding.conv_in   -> input_hint_block.0
    controlnet_cond_embedding.blocks.i  -> input_hint_block.{2 (i + 1)}
    controlnet_cond_embedding.conv_out  -> input_hint_block.{2 (n_blocks + 1)}   (14 normally)
    controlnet_down_blocks.i            -> zero_convs.i.0
    controlnet_mid_block                -> middle_block_out.0

Proven by converting back with diffusers' ``convert_controlnet_checkpoint``
(tests/test_controlnet_load.py).
"""

from __future__ import annotations

import re

import torch

from nodegen.models.ldm_export import unet_to_ldm

PREFIX = "control_model."


def controlnet_to_ldm(sd: dict[str, torch.Tensor], prefix: str = PREFIX) -> dict[str, torch.Tensor]:
    resnets = {int(m.group(1)) for k in sd if (m := re.match(r"down_blocks\.0\.resnets\.(\d+)\.", k))}
    if not resnets:
        raise ValueError("not a diffusers ControlNet state dict (no down_blocks.0.resnets.*)")
    n_blocks = len({int(m.group(1)) for k in sd
                    if (m := re.match(r"controlnet_cond_embedding\.blocks\.(\d+)\.", k))})
    unet_part, out = {}, {}
    for key, t in sd.items():
        if key.startswith("controlnet_cond_embedding."):
            rest = key[len("controlnet_cond_embedding."):]
            if rest.startswith("conv_in."):
                new = "input_hint_block.0." + rest[len("conv_in."):]
            elif rest.startswith("conv_out."):
                new = f"input_hint_block.{2 * (n_blocks + 1)}." + rest[len("conv_out."):]
            else:
                m = re.match(r"blocks\.(\d+)\.(.*)", rest)
                new = f"input_hint_block.{2 * (int(m.group(1)) + 1)}.{m.group(2)}"
        elif key.startswith("controlnet_down_blocks."):
            _, i, leaf = key.split(".")
            new = f"zero_convs.{i}.0.{leaf}"
        elif key.startswith("controlnet_mid_block."):
            new = "middle_block_out.0." + key.split(".")[-1]
        else:
            unet_part[key] = t
            continue
        out[prefix + new] = t
    out.update(unet_to_ldm(unet_part, {"layers_per_block": len(resnets), "up_block_types": []},
                           prefix=prefix))
    return out
