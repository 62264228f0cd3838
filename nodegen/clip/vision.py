"""CLIP_VISION (an image tower with its projection) and CLIP_VISION_OUTPUT.

:class:`ClipVision` is what the CLIP-vision loader returns and what a full CLIP
(:class:`nodegen.clip.model.ClipModel`) holds as its image half: one transformers
``CLIPVisionModelWithProjection`` plus the input size and a model manager for placement.
:class:`ClipVisionOutput` carries what image-prompt adapters consume (IP-Adapter, unCLIP, style
models): the projected embedding, the last hidden state and the penultimate hidden states.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from nodegen.clip import preprocess
from nodegen.models.manager import ModelManager
from nodegen.models.objects import use_module


@dataclass
class ClipVisionOutput:
    """CLIP_VISION_OUTPUT: ``image_embeds`` ``[B,D]`` (projected, not normalised),
    ``last_hidden_state`` ``[B,N,W]`` and ``penultimate_hidden_states`` ``[B,N,W]`` (the output of
    the second-to-last layer, before the final layer norm), float32 on the CPU."""

    image_embeds: torch.Tensor
    last_hidden_state: torch.Tensor
    penultimate_hidden_states: torch.Tensor

    def __getitem__(self, key: str) -> torch.Tensor:  # ComfyUI-style access: output["image_embeds"]
        return getattr(self, key)


class ClipVision:
    """CLIP_VISION: a CLIP image tower with its projection."""

    def __init__(self, module: torch.nn.Module, *, source: str = "", manager: ModelManager | None = None) -> None:
        self.module = module  # transformers CLIPVisionModelWithProjection
        self.source = source
        self.manager = manager

    @property
    def image_size(self) -> int:
        return int(self.module.config.image_size)

    @property
    def embed_dim(self) -> int:
        return int(self.module.visual_projection.weight.shape[0])

    @contextmanager
    def use(self, device=None, dtype=None) -> Iterator[torch.nn.Module]:
        """The tower placed on ``device`` (the manager's default) for the block."""
        with use_module(self.manager, self.module, device, dtype) as m:
            yield m

    def pixels(self, image: torch.Tensor, crop: str = "center") -> torch.Tensor:
        return preprocess.pixels(image, self.image_size, crop)

    def embed_pixels(self, module: torch.nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
        """Projected embeddings ``[B,D]`` of normalised pixels, through the placed ``module``
        (differentiable: CLIP guidance calls it with gradients on)."""
        p = next(module.parameters())
        return module(pixel_values=pixel_values.to(p.device, p.dtype)).image_embeds.float()

    @torch.no_grad()
    def encode(self, image: torch.Tensor, crop: str = "center", device=None) -> ClipVisionOutput:
        """CLIP_VISION_OUTPUT of an IMAGE batch ``[B,H,W,C]``."""
        with self.use(device) as m:
            p = next(m.parameters())
            px = self.pixels(image.to(p.device), crop).to(p.dtype)
            out = m(pixel_values=px, output_hidden_states=True)
        return ClipVisionOutput(out.image_embeds.float().cpu(), out.last_hidden_state.float().cpu(),
                                out.hidden_states[-2].float().cpu())

    def __repr__(self) -> str:
        c = self.module.config
        return (f"ClipVision(width={c.hidden_size}, layers={c.num_hidden_layers}, "
                f"image_size={c.image_size}, patch={c.patch_size}, dim={self.embed_dim}, source={self.source!r})")
