"""PHOTOMAKER: TencentARC's PhotoMaker v1 id encoder, read from ``models/photomaker``.

``photomaker-v1.bin`` (a pickle, read only through ``torch.load(weights_only=True)``) holds two
dicts: ``id_encoder`` and ``lora_weights``. As ComfyUI's ``PhotoMakerLoader`` does, only the id
encoder is loaded; the LoRA is not applied (ComfyUI users load a PhotoMaker LoRA with a LoRA loader,
if they want it). A ``.safetensors`` file holds the id encoder's tensors directly.

The id encoder (TencentARC's ``PhotoMakerIDEncoder``, Apache-2.0) is a CLIP ViT-L/14 image tower
(transformers' key names: ``vision_model.*``, ``visual_projection.weight`` to 768) plus
``visual_projection_2`` (1024 -> 1280, no bias) and a fuse module (:mod:`nodegen.models.photomaker_fuse`)
2048 wide. An image's id embedding is ``cat(visual_projection(pooled), visual_projection_2(pooled))``
where ``pooled`` is the tower's layer-normed class token: CLIP-L's width then OpenCLIP-G's, the
order of SDXL's text conditioning. Every size is read from the tensors, so smaller models with the
same layout load too.

The image goes in as ComfyUI's ``clip_preprocess`` prepares it: the short side resized to the
tower's size (bicubic, antialiased), the centre cropped, quantized to 8 bits, CLIP's mean and
standard deviation.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from nodegen.clip import layout, preprocess
from nodegen.models.files import SAFETENSORS, ModelFileError, check_model_file, load_state_dict
from nodegen.models.manager import ModelManager
from nodegen.models.objects import use_module
from nodegen.models.photomaker_fuse import FuseModule

#: Tensors every PhotoMaker id encoder has (after ``id_encoder`` is unwrapped).
REQUIRED = ("vision_model.embeddings.patch_embedding.weight", "visual_projection.weight",
            "visual_projection_2.weight", "fuse_module.mlp1.fc1.weight", "fuse_module.layer_norm.weight")


class IdEncoder(nn.Module):
    """The id encoder's modules under the file's names."""

    def __init__(self, vision_config: dict, projection_2_dim: int, fuse_dim: int) -> None:
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        super().__init__()
        tower = CLIPVisionModelWithProjection(CLIPVisionConfig(**vision_config))
        self.vision_model = tower.vision_model
        self.visual_projection = tower.visual_projection
        self.visual_projection_2 = nn.Linear(vision_config["hidden_size"], projection_2_dim, bias=False)
        self.fuse_module = FuseModule(fuse_dim)

    def id_embeds(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Normalised pixels ``[B,3,S,S]`` -> id embeddings ``[B, D]``."""
        pooled = self.vision_model(pixel_values=pixel_values).pooler_output
        return torch.cat([self.visual_projection(pooled), self.visual_projection_2(pooled)], dim=-1)


class PhotoMaker:
    """PHOTOMAKER: fuses a face image into one token of a text conditioning."""

    def __init__(self, module: IdEncoder, *, source: str = "", manager: ModelManager | None = None) -> None:
        self.module = module
        self.source = source
        self.manager = manager

    @property
    def image_size(self) -> int:
        return int(self.module.vision_model.config.image_size)

    @property
    def embed_dim(self) -> int:
        """The width of the conditioning it fuses into (2048: SDXL's CLIP-L + OpenCLIP-G)."""
        return self.module.fuse_module.embed_dim

    def pixels(self, image: torch.Tensor) -> torch.Tensor:
        """IMAGE ``[B,H,W,C]`` -> ``[B,3,S,S]`` as ComfyUI's ``clip_preprocess``."""
        x = image[..., :3].permute(0, 3, 1, 2).float()
        size = self.image_size
        if tuple(x.shape[-2:]) != (size, size):
            scale = size / min(x.shape[-2:])
            x = preprocess.resize(x, round(scale * x.shape[-2]), round(scale * x.shape[-1]))
            top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
            x = x[..., top : top + size, left : left + size]
        x = torch.clip(255.0 * x, 0, 255).round() / 255.0
        return preprocess.normalise(x)

    @torch.no_grad()
    def fuse(self, embeds: torch.Tensor, image: torch.Tensor, position: int, device=None) -> torch.Tensor:
        """``embeds`` ``[1, L, D]`` with the token at ``position`` fused with the id embedding of
        the first image of ``image`` (ComfyUI passes the whole batch and keeps the first, one id
        image per class token)."""
        if embeds.shape[-1] != self.embed_dim:
            raise ValueError(f"the text conditioning is {embeds.shape[-1]} wide but this PhotoMaker model "
                             f"fuses {self.embed_dim}-wide embeddings (PhotoMaker v1: an SDXL CLIP, 2048)")
        if not 0 <= position < embeds.shape[1]:
            raise ValueError(f"token position {position} is outside the {embeds.shape[1]}-token conditioning")
        with use_module(self.manager, self.module, device) as m:
            p = next(m.parameters())
            ids = m.id_embeds(self.pixels(image[:1]).to(p.device, p.dtype))
            token = embeds[0, position : position + 1].to(p.device, p.dtype)
            fused = m.fuse_module(token, ids).float().cpu()
        out = embeds.clone()
        out[0, position] = fused[0].to(out.dtype)
        return out

    def __repr__(self) -> str:
        return f"PhotoMaker(size={self.image_size}, dim={self.embed_dim}, source={self.source!r})"


def read_id_encoder(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The id encoder's tensors of a PhotoMaker file (``.bin``: its ``id_encoder`` dict)."""
    path = check_model_file(path)
    if path.suffix.lower() in SAFETENSORS:
        sd = load_state_dict(path)
    else:
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - name the file
            raise ModelFileError(f"{path}: not a readable PyTorch file (only plain tensors are read): {e}") from e
        if not isinstance(obj, dict):
            raise ModelFileError(f"{path}: holds {type(obj).__name__}, not a PhotoMaker state dict")
        sd = obj["id_encoder"] if isinstance(obj.get("id_encoder"), dict) else obj
    if any(k.startswith("id_encoder.") for k in sd):  # one flat dict with both parts
        sd = {k[len("id_encoder."):]: v for k, v in sd.items() if k.startswith("id_encoder.")}
    return {k: v for k, v in sd.items() if torch.is_tensor(v) and not k.endswith("position_ids")}


def _check(sd: dict[str, torch.Tensor], path: Path) -> tuple[int, int]:
    """``(projection_2 width, fuse width)``; ValueError for anything that is not PhotoMaker v1."""
    if any(k.startswith("qformer_perceiver.") for k in sd):
        raise ValueError(f"{path} is a PhotoMaker v2 model (it needs InsightFace face embeddings); "
                         "PhotoMakerLoader loads PhotoMaker v1 (photomaker-v1.bin), as ComfyUI's")
    missing = [k for k in REQUIRED if k not in sd]
    if missing:
        raise ValueError(f"{path} is not a PhotoMaker model: no {', '.join(missing[:3])} "
                         f"(expected photomaker-v1.bin with an id_encoder; first keys: {', '.join(sorted(sd)[:3])})")
    proj, proj2 = sd["visual_projection.weight"], sd["visual_projection_2.weight"]
    fuse_dim = sd["fuse_module.layer_norm.weight"].shape[0]
    if proj.shape[0] + proj2.shape[0] != fuse_dim or sd["fuse_module.mlp1.fc1.weight"].shape[1] != 2 * fuse_dim:
        raise ValueError(f"{path}: the projections ({proj.shape[0]} + {proj2.shape[0]}) do not make the fuse "
                         f"module's width {fuse_dim}")
    return int(proj2.shape[0]), int(fuse_dim)


def load_photomaker(path: str | os.PathLike, *, manager: ModelManager | None = None) -> PhotoMaker:
    """PHOTOMAKER of a PhotoMaker v1 file (``.bin`` or ``.safetensors``)."""
    from nodegen.compat import torchvision as torchvision_fix

    torchvision_fix.apply()
    path = Path(path)
    sd = read_id_encoder(path)
    proj2, fuse_dim = _check(sd, path)
    vision = layout.vision_config(sd)
    with torch.device("meta"):
        module = IdEncoder(vision, proj2, fuse_dim)
    missing, unexpected = module.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False, assign=True)
    if missing or unexpected:
        raise ValueError(f"{path}: the id encoder's tensors do not fit a PhotoMaker v1 layout "
                         f"(missing {sorted(missing)[:4]}, unexpected {sorted(unexpected)[:4]})")
    _rebuild_position_ids(module)
    return PhotoMaker(module.eval().requires_grad_(False), source=str(path), manager=manager)


def _rebuild_position_ids(module: nn.Module) -> None:
    """transformers does not save ``position_ids``: rebuilt after the meta-device build."""
    for mod in module.modules():
        pid = getattr(mod, "position_ids", None)
        if isinstance(pid, torch.Tensor) and pid.is_meta:
            mod.register_buffer("position_ids", torch.arange(pid.shape[-1]).expand(1, -1), persistent=False)
