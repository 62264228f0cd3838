"""Whole-tensor changes in LoRA files: ComfyUI's ``.diff`` / ``.diff_b`` and LyCORIS' norm-layer
``w_norm`` / ``b_norm``, added to the weight (or bias) with the strength."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class DiffLayer:
    """A whole-tensor change (ComfyUI's LoraSave writes ``<param>.diff`` for 1-D weights, such as
    norms, and ``<module>.diff_b`` for biases)."""
    component: str
    module: str
    leaf: str  # "weight" or "bias"
    diff: torch.Tensor

    def delta(self, weight: torch.Tensor) -> torch.Tensor:
        return self.diff.to(weight.device, torch.float32).reshape(weight.shape)
