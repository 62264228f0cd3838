"""SD1 / SD2 / SDXL UNets saved alone (what ComfyUI's UNETLoader reads for these families): LDM
keys with or without ``model.diffusion_model.``, or diffusers keys; built like a checkpoint's UNet
(:mod:`nodegen.models.loader`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from nodegen.compat import lean_imports
from nodegen.compat import torchvision as torchvision_fix
from nodegen.models import configs
from nodegen.models.detect import detect, require
from nodegen.models.files import load_state_dict, shapes_of
from nodegen.models.module_build import _build, _cast, _target_device, _target_dtype
from nodegen.models.objects import DiffusionModel
from nodegen.models.unused_keys import dropped, warn_unused

if TYPE_CHECKING:
    from nodegen.models.manager import ModelManager


def _diffusers_unet_to_ldm(sd: dict) -> dict:
    """diffusers ``UNet2DConditionModel`` keys -> LDM keys (``model.diffusion_model.``), the
    layout read from the keys."""
    from nodegen.models.ldm_export import unet_to_ldm

    layers = len({k.split(".")[3] for k in sd if k.startswith("down_blocks.0.resnets.")})
    n_up = len({k.split(".")[1] for k in sd if k.startswith("up_blocks.")})
    up = ["CrossAttnUpBlock2D" if any(k.startswith(f"up_blocks.{b}.attentions.") for k in sd) else "UpBlock2D"
          for b in range(n_up)]
    return unet_to_ldm(sd, {"layers_per_block": layers, "up_block_types": up}, prefix=configs.UNET)


def load_unet_only(path: str | os.PathLike, prediction: str = "auto",
                   manager: ModelManager | None = None) -> DiffusionModel:
    """An SD1 / SD2 / SDXL UNet saved alone (what ComfyUI's UNETLoader reads): LDM keys with
    or without ``model.diffusion_model.``, or diffusers keys (a diffusers folder's
    ``unet/diffusion_pytorch_model.safetensors``, SDXL-Lightning's UNet files). SDXL's
    size-conditioning width follows the real models (256 per value, pooled width 1280)."""
    torchvision_fix.apply()
    lean_imports.apply()
    from diffusers import UNet2DConditionModel
    from diffusers.loaders import single_file_utils as sfu

    path = Path(path)
    dtype = _target_dtype(manager)
    device = _target_device(manager)
    sd = load_state_dict(path)
    det = detect(shapes_of(sd), sd)
    require(det, ("unet", "checkpoint"), str(path))
    if det.layout == "diffusers":
        sd = _diffusers_unet_to_ldm(sd)
    elif det.layout == "ldm_bare":
        sd = {configs.UNET + k: v for k, v in sd.items()}
    pred = det.prediction if prediction == "auto" else prediction
    unet_src = {k: v for k, v in sd.items() if k.startswith(configs.UNET)}
    ucfg = configs.unet_config(shapes_of(unet_src), det.family, det.inpaint, pred)
    unet_sd = sfu.convert_ldm_unet_checkpoint(unet_src, ucfg)
    warn_unused(path, dropped(unet_src, unet_sd), "UNet")
    warn_unused(path, [k for k in sd if not k.startswith((configs.UNET, "cond_stage_model.", "conditioner.",
                                                          "first_stage_model."))], "UNet")
    unet = _build(UNet2DConditionModel, ucfg, _cast(unet_sd, dtype, device), "UNet", path, device)
    return DiffusionModel(unet, det.family, pred, source=str(path), manager=manager)
