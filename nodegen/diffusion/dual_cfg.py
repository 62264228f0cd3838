"""Dual CFG, as ComfyUI's DualCFGGuider computes it from three conditionings (``cond1``, ``cond2``
and a negative) and two scales:

* regular: ``cfg(cond2, negative, cfg2) + cfg1 * (cond1 - cond2)``;
* nested: ``negative + cfg2 * (cfg(cond1, cond2, cfg1) - negative)``, which is the same with the
  last term scaled by ``cfg1 * cfg2``.

nodegen runs it as plain CFG of ``cond2`` against the negative (the denoiser's own, including
the skipped negative at ``cfg2 = 1``) plus this hook, which predicts ``cond1`` and adds the last
term: the same result as ComfyUI's single batched call.
"""

from __future__ import annotations

import torch


class DualCFG:
    """A ``denoise_hooks`` entry (see :mod:`nodegen.diffusion.denoiser`) for the guider's model."""

    def __init__(self, cond1: list, cfg1: float, cfg2: float, nested: bool = False) -> None:
        self.cond1 = cond1
        self.scale = float(cfg1) * (float(cfg2) if nested else 1.0)

    def __call__(self, den, x: torch.Tensor, sigma: float, denoised: torch.Tensor) -> torch.Tensor:
        first = den.predict(self.cond1, x, sigma, active_only=True)
        return denoised + (first - den.last_cond) * self.scale
