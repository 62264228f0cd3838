"""IP-Adapter presets: which IP-Adapter and CLIP-vision files a preset name means, found by their
usual file names in the ``ipadapter`` and ``clip_vision`` model folders.

The preset names and the file-name patterns are those of ComfyUI_IPAdapter_plus's
IPAdapterUnifiedLoader (by cubiq), so a published workflow finds the files its author downloaded
under their published names (``ip-adapter_sd15.safetensors``,
``CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors``, ...). FaceID presets need InsightFace and a LoRA
and are not offered.
"""

from __future__ import annotations

import re
from typing import Any

_EXT = r"\.(safetensors|bin)$"
#: preset -> (patterns for SD1.x, patterns for SDXL), each tried in order; none: no file for that family.
IPADAPTER_PATTERNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "LIGHT - SD1.5 only (low strength)": ((r"sd15.light.v11" + _EXT, r"sd15.light" + _EXT), ()),
    "STANDARD (medium strength)": ((r"ip.adapter.sd15" + _EXT,), (r"ip.adapter.sdxl.vit.h" + _EXT,)),
    "VIT-G (medium strength)": ((r"sd15.vit.g" + _EXT,), (r"ip.adapter.sdxl" + _EXT,)),
    "PLUS (high strength)": ((r"ip.adapter.plus.sd15" + _EXT,), (r"plus.sdxl.vit.h" + _EXT,)),
    "PLUS FACE (portraits)": ((r"plus.face.sd15" + _EXT,), (r"plus.face.sdxl.vit.h" + _EXT,)),
    "FULL FACE - SD1.5 only (portraits stronger)": ((r"full.face.sd15" + _EXT,), ()),
}
PRESETS = tuple(IPADAPTER_PATTERNS)
#: CLIP-vision encoders: ViT-bigG for the VIT-G preset, ViT-H for every other.
CLIP_VISION_PATTERNS = {
    "vit-g": r"ViT.bigG.14.*39B.b160k|ipadapter.*sdxl|sdxl.*model\.(bin|safetensors)",
    "vit-h": r"ViT.H.14.*s32B.b79K|ipadapter.*sd15|sd1.?5.*model\.(bin|safetensors)",
}


class PresetError(ValueError):
    pass


def _first_match(names: list[str], pattern: str) -> str | None:
    return next((n for n in names if re.search(pattern, n, re.IGNORECASE)), None)


def preset_files(paths: Any, preset: str, sdxl: bool) -> tuple[str, str]:
    """``(ipadapter name, clip_vision name)`` for ``preset`` and the model's family, from the
    names ``paths.list`` finds; a :class:`PresetError` says which file is missing and why."""
    if preset not in IPADAPTER_PATTERNS:
        raise PresetError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    family = "SDXL" if sdxl else "SD1.5"
    patterns = IPADAPTER_PATTERNS[preset][1 if sdxl else 0]
    if not patterns:
        raise PresetError(f"preset {preset!r} has no IP-Adapter for {family} models")
    names = paths.list("ipadapter")
    adapter = next((found for p in patterns if (found := _first_match(names, p)) is not None), None)
    if adapter is None:
        raise PresetError(f"preset {preset!r} needs an IP-Adapter for {family} named like "
                          f"/{patterns[-1]}/ in the ipadapter models folder ({paths.describe('ipadapter')})")
    cv_pattern = CLIP_VISION_PATTERNS["vit-g" if preset.startswith("VIT-G") else "vit-h"]
    vision = _first_match(paths.list("clip_vision"), cv_pattern)
    if vision is None:
        raise PresetError(f"preset {preset!r} needs a CLIP-vision model named like /{cv_pattern}/ in the "
                          f"clip_vision models folder ({paths.describe('clip_vision')})")
    return adapter, vision
