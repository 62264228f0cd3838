"""CLIP_MODEL: a full CLIP (image and text towers) for scoring, ranking and guidance.

The image half is a :class:`nodegen.clip.vision.ClipVision` (the same object the CLIP-vision
loader returns); the text half a transformers ``CLIPTextModelWithProjection`` with the real CLIP
tokenizer built from the vocabulary shipped in the package (:mod:`nodegen.models.clip_tokenizer`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

from nodegen.clip.vision import ClipVision
from nodegen.models.manager import ModelManager
from nodegen.models.objects import use_module


class ClipModel:
    """CLIP_MODEL: image tower, text tower and tokenizer."""

    def __init__(self, vision: ClipVision, text: torch.nn.Module, *, logit_scale: float = 100.0,
                 source: str = "", manager: ModelManager | None = None) -> None:
        self.vision = vision
        self.text = text  # transformers CLIPTextModelWithProjection
        self.logit_scale = float(logit_scale)
        self.source = source
        self.manager = manager

    @functools.cached_property
    def tokenizer(self):
        from nodegen.models.clip_tokenizer import load_clip_tokenizer

        return load_clip_tokenizer(int(self.text.config.max_position_embeddings))

    @property
    def embed_dim(self) -> int:
        return int(self.text.text_projection.weight.shape[0])

    @contextmanager
    def use_text(self, device=None, dtype=None) -> Iterator[torch.nn.Module]:
        with use_module(self.manager, self.text, device, dtype) as m:
            yield m

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str], device=None) -> torch.Tensor:
        """Projected text embeddings ``[N,D]`` (not normalised), float32 on the CPU."""
        texts = list(texts)
        if not texts:
            raise ValueError("no text to embed")
        n = int(self.text.config.max_position_embeddings)
        ids = self.tokenizer(texts, padding="max_length", max_length=n, truncation=True,
                             return_tensors="pt")["input_ids"]
        with self.use_text(device) as m:
            p = next(m.parameters())
            out = m(input_ids=ids.to(p.device)).text_embeds
        return out.float().cpu()

    @torch.no_grad()
    def embed_images(self, image: torch.Tensor, crop: str = "center", device=None) -> torch.Tensor:
        """Projected image embeddings ``[B,D]`` of an IMAGE batch, float32 on the CPU."""
        return self.vision.encode(image, crop, device).image_embeds

    def __repr__(self) -> str:
        c = self.text.config
        return (f"ClipModel(vision={self.vision!r}, text(width={c.hidden_size}, layers={c.num_hidden_layers}), "
                f"dim={self.embed_dim}, source={self.source!r})")
