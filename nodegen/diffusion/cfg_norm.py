"""CFGNorm, as ComfyUI's experimental node (comfy_extras/nodes_cfg.py) applies it after CFG: where
the guided denoised prediction is longer than the conditional one (the L2 norm over channels, per
pixel), it is scaled back to that length, then everything is multiplied by ``strength``:

    denoised * clamp(|cond| / (|denoised| + 1e-8), 0, 1) * strength

(so ``strength`` other than 1 scales the result at any cfg, as in ComfyUI).
"""

from __future__ import annotations

import torch


class CFGNorm:
    """A ``denoise_hooks`` entry (see :mod:`nodegen.diffusion.denoiser`)."""

    def __init__(self, strength: float = 1.0) -> None:
        self.strength = float(strength)

    def __call__(self, den, x: torch.Tensor, sigma: float, denoised: torch.Tensor) -> torch.Tensor:
        cond_norm = torch.norm(den.last_cond, dim=1, keepdim=True)
        scale = (cond_norm / (torch.norm(denoised, dim=1, keepdim=True) + 1e-8)).clamp(min=0.0, max=1.0)
        return denoised * scale * self.strength
