"""The CLIP image tower an unCLIP checkpoint carries (``embedder.model.visual.*``, open_clip layout:
LAION ViT-H/14 in ``sd21-unclip-h``, OpenAI ViT-L/14 in ``sd21-unclip-l``), as CLIP_VISION.

Only the tower's tensors are read from the file (safetensors lazily). They go through the same
layout conversion and shape-derived config as a CLIP-vision file (:mod:`nodegen.clip.layout`), as
ComfyUI's ``load_clipvision_from_sd`` with the ``embedder.model.`` prefix does.
"""

from __future__ import annotations

import os

from nodegen.clip import layout
from nodegen.clip.load import _vision
from nodegen.clip.vision import ClipVision
from nodegen.compat import torchvision as torchvision_fix
from nodegen.models.files import open_state_dict
from nodegen.models.manager import ModelManager
from nodegen.models.unclip import VISION_PREFIX

#: The open_clip prefix kept when the tower's keys are cut out of the checkpoint.
_KEEP = "visual."


def vision_tensors(sd) -> dict:
    """The tower's tensors of a checkpoint state dict, keyed as open_clip saves them (``visual.*``)."""
    cut = len(VISION_PREFIX) - len(_KEEP)
    return {k[cut:]: sd[k].float() for k in list(sd.keys()) if k.startswith(VISION_PREFIX)}


def load_unclip_vision(path: str | os.PathLike, *, manager: ModelManager | None = None) -> ClipVision:
    """CLIP_VISION of an unCLIP checkpoint's image tower; ValueError naming the file when it has none."""
    torchvision_fix.apply()
    sd = vision_tensors(open_state_dict(path))
    if "visual.conv1.weight" not in sd:
        raise ValueError(f"{path}: holds no CLIP image tower under '{VISION_PREFIX}' (not an unCLIP checkpoint)")
    sd = layout.to_transformers(sd)
    cfg = layout.vision_config(sd)
    return _vision(sd, cfg, str(path), manager)
