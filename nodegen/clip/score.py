"""CLIP scores and ranking.

The score of an image and a text (or a reference image) is the usual CLIP score: 100 times the
cosine similarity of their projected embeddings. For every OpenAI and LAION CLIP (whose learned
logit scale sits at its cap, 100) it equals ``CLIPModel``'s ``logits_per_image``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from nodegen.clip.model import ClipModel

SCALE = 100.0


def similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``100 x cos`` between every row of ``a`` ``[N,D]`` and every row of ``b`` ``[M,D]``: ``[N,M]``."""
    return SCALE * F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).t()


def clip_scores(clip: ClipModel, images: torch.Tensor, texts: Sequence[str] = (),
                references: torch.Tensor | None = None, crop: str = "center", device=None) -> torch.Tensor:
    """Scores ``[B, N]`` of an IMAGE batch against ``texts`` (N texts) or against ``references``
    (an IMAGE batch of N reference pictures)."""
    if bool(texts) == (references is not None):
        raise ValueError("give either texts or reference images (not both, not neither)")
    img = clip.embed_images(images, crop, device)
    other = clip.embed_texts(texts, device) if texts else clip.embed_images(references, crop, device)
    return similarity(img, other)


def rank(scores: torch.Tensor, k: int | None = None) -> list[int]:
    """Indices of the best ``k`` (all when None) entries of a ``[B]`` score vector, best first;
    ties keep the batch order."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    return order if k is None else order[: max(0, k)]


def summary(scores: torch.Tensor, labels: Sequence[str]) -> str:
    """A plain-text table: one line per image, one column per text or reference."""
    lines = []
    for i, row in enumerate(scores):
        cells = ", ".join(f"{lab}: {float(v):.2f}" for lab, v in zip(labels, row, strict=True))
        lines.append(f"image {i}: {cells}")
    return "\n".join(lines)
