"""SigLIP image towers (Google's sigmoid-loss CLIP; Flux.1 Redux encodes its image prompts with
SigLIP so400m-patch14-384), loaded offline as a CLIP_VISION.

A SigLIP state dict in transformers' layout (``SiglipVisionModel`` / ``SiglipModel``, and the
``sigclip_vision_patch14_384.safetensors`` file ComfyUI's CLIP-vision loader takes) is told from a
CLIP one by its patch embedding's bias and its position table with no class token. The
configuration comes from the shapes (width, MLP size, layers, patch, grid; the attention pooling
head when present); the head count follows the published models (so400m and large: 16, base: 12,
else 64-channel heads) and a folder's ``config.json`` overrides it. Pixels are scaled to [-1, 1]
(SigLIP's mean and std of 0.5), not CLIP's statistics.

CLIP_VISION_OUTPUT of a SigLIP tower, as ComfyUI's: ``last_hidden_state`` after the final layer
norm (what Redux consumes; equal to transformers' ``last_hidden_state``), ``penultimate_hidden_states``
the second-to-last layer's output; ``image_embeds`` the attention-pooled embedding ``[B, width]``
(transformers' ``pooler_output``; the token mean for a file without the pooling head).
"""

from __future__ import annotations

import torch

from nodegen.clip import preprocess
from nodegen.clip.vision import ClipVision, ClipVisionOutput

MEAN = STD = (0.5, 0.5, 0.5)
#: Head counts of the published SigLIP image towers by width (so400m, large, base).
HEADS = {1152: 16, 1024: 16, 768: 12}
_PATCH = "vision_model.embeddings.patch_embedding"
_CONFIG_KEYS = ("hidden_act", "num_attention_heads", "layer_norm_eps")


def with_tower_prefix(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A SigLIP tower saved without its ``vision_model.`` prefix (as transformers 5 saves a
    ``SiglipVisionModel``) gets it back; any other state dict is returned as it is."""
    if "embeddings.patch_embedding.bias" in sd and "encoder.layers.0.layer_norm1.weight" in sd:
        return {f"vision_model.{k}": v for k, v in sd.items()}
    return sd


def is_siglip(sd: dict[str, torch.Tensor]) -> bool:
    """Whether a transformers-layout state dict holds a SigLIP image tower (not a CLIP one)."""
    return (f"{_PATCH}.bias" in sd and "vision_model.embeddings.class_embedding" not in sd
            and "vision_model.pre_layrnorm.weight" not in sd)


def siglip_config(sd: dict[str, torch.Tensor], given: dict | None = None) -> dict:
    """transformers ``SiglipVisionConfig`` arguments derived from the tensors (``given``: a
    folder's config.json, whole-model or vision-only, overriding heads, activation and eps)."""
    from nodegen.clip.layout import _count_layers

    width, _, patch, _ = sd[f"{_PATCH}.weight"].shape
    n_pos = sd["vision_model.embeddings.position_embedding.weight"].shape[0]
    grid = round(n_pos**0.5)
    if grid * grid != n_pos:
        raise ValueError(f"the SigLIP image tower has {n_pos} positions: not a square grid")
    cfg = dict(hidden_size=width, intermediate_size=sd["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0],
               num_hidden_layers=_count_layers(sd, "vision_model.encoder.layers"),
               num_attention_heads=HEADS.get(width, max(1, width // 64)), patch_size=patch,
               image_size=grid * patch, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6,
               vision_use_head="vision_model.head.probe" in sd)
    vision = (given or {}).get("vision_config", given) or {}
    cfg.update({k: vision[k] for k in _CONFIG_KEYS if k in vision})
    return cfg


class SiglipVision(ClipVision):
    """CLIP_VISION backed by a transformers ``SiglipVisionModel``."""

    @property
    def embed_dim(self) -> int:
        return int(self.module.config.hidden_size)

    def pixels(self, image: torch.Tensor, crop: str = "center") -> torch.Tensor:
        return preprocess.pixels(image, self.image_size, crop, mean=MEAN, std=STD)

    def embed_pixels(self, module: torch.nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
        p = next(module.parameters())
        return _pooled(module(pixel_values=pixel_values.to(p.device, p.dtype))).float()

    @torch.no_grad()
    def encode(self, image: torch.Tensor, crop: str = "center", device=None) -> ClipVisionOutput:
        with self.use(device) as m:
            p = next(m.parameters())
            px = self.pixels(image.to(p.device), crop).to(p.dtype)
            out = m(pixel_values=px, output_hidden_states=True)
        return ClipVisionOutput(_pooled(out).float().cpu(), out.last_hidden_state.float().cpu(),
                                out.hidden_states[-2].float().cpu())

    def __repr__(self) -> str:
        c = self.module.config
        return (f"SiglipVision(width={c.hidden_size}, layers={c.num_hidden_layers}, "
                f"image_size={c.image_size}, patch={c.patch_size}, source={self.source!r})")


def _pooled(out) -> torch.Tensor:
    return out.pooler_output if out.pooler_output is not None else out.last_hidden_state.mean(dim=1)
