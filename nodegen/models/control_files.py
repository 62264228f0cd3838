"""What ControlNetLoader loads: a ControlNet, a union ControlNet (ControlNet++ / promax), a
T2I-Adapter, a Flux.1 ControlNet or an SD3 / SD 3.5 ControlNet (diffusers layout or Stability's
own), recognised by the file's tensors (or a diffusers folder's config), as ComfyUI's loader does."""

from __future__ import annotations

import json
import os
from pathlib import Path

from nodegen.compat import torchvision as torchvision_fix
from nodegen.models import controlnet as cn
from nodegen.models import flux_controlnet as flux_cn
from nodegen.models import sd3_controlnet as sd3_cn
from nodegen.models import t2i_adapter as t2i
from nodegen.models import union_controlnet as union


def load_control(path: str | os.PathLike, manager=None, base=None):
    """``base``: for 'diff' ControlNets only (see :func:`nodegen.models.controlnet.load_single_file`)."""
    # before any loader below imports diffusers (which imports transformers, then torchvision)
    torchvision_fix.apply()
    p = Path(path)
    if p.is_dir():
        cfg = p / "config.json"
        if cfg.is_file() and json.loads(cfg.read_text(encoding="utf-8")).get("_class_name") == "T2IAdapter":
            return t2i.load_t2i_adapter(p, manager)
        if flux_cn.is_flux_controlnet_folder(p):
            return flux_cn.load_flux_controlnet(p, manager=manager)
        if sd3_cn.is_sd3_controlnet_folder(p):
            return sd3_cn.load_sd3_controlnet(p, manager=manager)
        return cn.load_folder(p, manager)
    if not p.is_file():
        raise FileNotFoundError(f"ControlNet file not found: {p}")
    sd = cn._read(p)
    if t2i.is_t2i_adapter(sd):
        return t2i.load_t2i_adapter(p, manager, state_dict=sd)
    if flux_cn.is_flux_controlnet(sd):
        return flux_cn.load_flux_controlnet(p, sd, manager)
    if sd3_cn.is_sd3_controlnet(sd) or sd3_cn.is_stability_sd35_controlnet(sd):
        return sd3_cn.load_sd3_controlnet(p, sd, manager)
    if union.is_union(sd):
        return union.load_union(p, sd, manager)
    return cn.load_single_file(p, manager, base)
