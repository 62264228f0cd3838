"""CONDITIONING values: a list of :class:`CondItem`.

Several CondItems in one CONDITIONING are combined by averaging their predictions (ComfyUI's
"combine"); helpers for combine/concat/zero-out live here too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class CondItem:
    """One conditioning entry.

    * ``embeds``: ``[1, tokens, dim]`` (tokens a multiple of 77 for CLIP text).
    * ``pooled``: ``[1, dim_pooled]`` (SDXL ``text_embeds``) or None.
    * ``extras``: free-form options, e.g. "width", "height", "crop_w", "crop_h",
      "target_width", "target_height" (SDXL size conditioning), "strength", "area", "mask",
      "controls".
    """

    embeds: torch.Tensor
    pooled: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def copy(self, **changes: Any) -> CondItem:
        """A shallow copy (tensors shared, extras dict copied) with ``changes`` applied."""
        item = CondItem(self.embeds, self.pooled, dict(self.extras))
        for key, value in changes.items():
            setattr(item, key, value)
        return item
