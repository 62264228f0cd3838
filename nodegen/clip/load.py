"""Load a CLIP (full, or only its image tower) from a file or a transformers folder, offline.

One implementation for both loaders: read the tensors (safetensors; pickled files only through
``torch.load(weights_only=True)``), bring them to transformers' layout
(:mod:`nodegen.clip.layout`), derive the configs from the shapes (a folder's ``config.json``
overrides the heads and the activation), build the towers and load the weights strictly. Nothing
is fetched: no hub config, and the tokenizer comes from the vocabulary shipped in the package.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from nodegen.clip import layout, siglip
from nodegen.clip.model import ClipModel
from nodegen.clip.vision import ClipVision
from nodegen.compat import torchvision as torchvision_fix
from nodegen.models.manager import ModelManager

#: Weight files looked for in a folder, in order.
FOLDER_WEIGHTS = ("model.safetensors", "open_clip_model.safetensors", "pytorch_model.bin",
                  "open_clip_pytorch_model.bin")
_CONFIG_KEYS = ("hidden_act", "num_attention_heads", "layer_norm_eps")


def read_tensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict | None]:
    """The state dict of a file or transformers folder, and the folder's ``config.json`` (or None)."""
    p = Path(path)
    config = None
    if p.is_dir():
        cfg = p / "config.json"
        config = json.loads(cfg.read_text(encoding="utf-8")) if cfg.is_file() else None
        weights = next((p / n for n in FOLDER_WEIGHTS if (p / n).is_file()), None)
        if weights is None:
            raise ValueError(f"CLIP folder {p} holds none of {', '.join(FOLDER_WEIGHTS)}")
        p = weights
    elif p.name in FOLDER_WEIGHTS and (p.parent / "config.json").is_file():  # a folder's weight file
        config = json.loads((p.parent / "config.json").read_text(encoding="utf-8"))
    if p.suffix in (".safetensors", ".sft"):
        from safetensors.torch import load_file

        sd = load_file(str(p))
    else:
        sd = torch.load(str(p), map_location="cpu", weights_only=True)
        if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
            sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(torch.is_tensor(v) for v in sd.values()):
        raise ValueError(f"{p} does not hold a plain state dict of tensors")
    return sd, config


def _override(cfg: dict, given: dict | None) -> dict:
    if given:
        cfg.update({k: given[k] for k in _CONFIG_KEYS if k in given})
    return cfg


def _tower_configs(sd: dict, config: dict | None) -> tuple[dict | None, dict | None]:
    vision, text = layout.vision_config(sd), None
    text = layout.text_config(sd, vision)
    if config:
        is_full = "vision_config" in config or "text_config" in config
        if vision is not None:
            _override(vision, config.get("vision_config") if is_full else config)
        if text is not None and is_full:
            _override(text, config.get("text_config"))
    return vision, text


def _fix_position_ids(module: torch.nn.Module) -> None:
    """Buffers transformers does not save (``position_ids``) are rebuilt after a meta-device build."""
    for mod in module.modules():
        pid = getattr(mod, "position_ids", None)
        if isinstance(pid, torch.Tensor) and pid.is_meta:
            mod.register_buffer("position_ids", torch.arange(pid.shape[-1]).expand(1, -1), persistent=False)


def _build(cls, config, sd: dict, prefixes: tuple[str, ...], what: str, source: str) -> torch.nn.Module:
    part = {k: v.float() for k, v in sd.items() if k.startswith(prefixes)}
    with torch.device("meta"):
        module = cls(config)
    missing, unexpected = module.load_state_dict(part, strict=False, assign=True)
    if missing or unexpected:
        raise ValueError(f"{source}: the {what} tensors do not fit the derived configuration "
                         f"(missing {sorted(missing)[:4]}, unexpected {sorted(unexpected)[:4]})")
    _fix_position_ids(module)
    return module.eval().requires_grad_(False)


def _vision(sd: dict, cfg: dict, source: str, manager: ModelManager | None) -> ClipVision:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    if "visual_projection.weight" not in sd:  # a bare CLIPVisionModel: identity projection
        sd = dict(sd, **{"visual_projection.weight": torch.eye(cfg["hidden_size"])})
    module = _build(CLIPVisionModelWithProjection, CLIPVisionConfig(**cfg), sd,
                    ("vision_model.", "visual_projection."), "image tower", source)
    return ClipVision(module, source=source, manager=manager)


def load_clip_vision(path: str | os.PathLike, *, manager: ModelManager | None = None) -> ClipVision:
    """CLIP_VISION of a CLIP-vision file, the image tower of a full CLIP, or a SigLIP image tower."""
    torchvision_fix.apply()
    sd, config = read_tensors(path)
    sd = layout.to_transformers(siglip.with_tower_prefix(sd))
    if siglip.is_siglip(sd):
        return _siglip(sd, config, str(path), manager)
    vision, _ = _tower_configs(sd, config)
    if vision is None:
        raise ValueError(f"{path} holds no CLIP image tower (no patch embedding); is it a text encoder?")
    return _vision(sd, vision, str(path), manager)


def _siglip(sd: dict, config: dict | None, source: str, manager: ModelManager | None) -> ClipVision:
    from transformers import SiglipVisionConfig, SiglipVisionModel

    cfg = SiglipVisionConfig(**siglip.siglip_config(sd, config))
    with torch.device("meta"):
        nested = any(k.startswith("vision_model.") for k in SiglipVisionModel(cfg).state_dict())
    if not nested:  # transformers 5 keeps the tower's modules at the top level
        sd = {k[len("vision_model."):]: v for k, v in sd.items() if k.startswith("vision_model.")}
    module = _build(SiglipVisionModel, cfg, sd, ("vision_model.",) if nested else ("",), "SigLIP image tower", source)
    return siglip.SiglipVision(module, source=source, manager=manager)


def load_clip(path: str | os.PathLike, *, manager: ModelManager | None = None) -> ClipModel:
    """CLIP_MODEL (both towers) of a full CLIP file or folder."""
    torchvision_fix.apply()
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    sd, config = read_tensors(path)
    sd = layout.to_transformers(sd)
    vision, text = _tower_configs(sd, config)
    if vision is None or text is None:
        has = "an image tower only (a CLIP-vision file: load it with CLIPVisionLoader)" if text is None \
            else "a text tower only"
        raise ValueError(f"{path} is not a full CLIP: it holds {has}")
    if "text_projection.weight" not in sd:
        raise ValueError(f"{path}: the text tower has no projection (a text encoder, not a full CLIP)")
    text_module = _build(CLIPTextModelWithProjection, CLIPTextConfig(**text), sd,
                         ("text_model.", "text_projection."), "text tower", str(path))
    scale = float(sd["logit_scale"].exp()) if "logit_scale" in sd else 100.0
    return ClipModel(_vision(sd, vision, str(path), manager), text_module, logit_scale=scale,
                     source=str(path), manager=manager)
