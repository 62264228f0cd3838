"""TCFG, Tangential Damping Classifier-free Guidance (Kwon et al. 2025, arXiv:2503.18137), as
ComfyUI's TCFG node applies it before CFG (comfy_extras/nodes_tcfg.py): per image, the
unconditional score ``x - uncond`` keeps only its component along the first right-singular vector
of the 2-row matrix [uncond score; cond score], so the negative loses what points away from the
positive's manifold. Off where the negative was skipped (cfg 1).
"""

from __future__ import annotations

import torch


def tangential_damping(cond_score: torch.Tensor, uncond_score: torch.Tensor) -> torch.Tensor:
    """ComfyUI's ``score_tangential_damping``."""
    b = cond_score.shape[0]
    cond_flat = cond_score.reshape(b, 1, -1).float()
    uncond_flat = uncond_score.reshape(b, 1, -1).float()
    _, _, vh = torch.linalg.svd(torch.cat((uncond_flat, cond_flat), dim=1), full_matrices=False)
    v1 = vh[:, 0:1, :]
    return ((uncond_flat @ v1.transpose(-2, -1)) * v1).reshape_as(uncond_score).to(uncond_score.dtype)


class TangentialDampingCFG:
    """A ``pre_cfg_hooks`` entry (see :mod:`nodegen.diffusion.denoiser`)."""

    def __call__(self, den, x: torch.Tensor, sigma: float, cond: torch.Tensor, uncond: torch.Tensor | None):
        if uncond is None:
            return cond, uncond
        return cond, x - tangential_damping(x - cond, x - uncond)
