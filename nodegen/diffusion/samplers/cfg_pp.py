"""What the CFG++ samplers (Chung et al. 2024, "CFG++: Manifold-constrained Classifier Free
Guidance") need from the denoiser: the unconditional prediction of each call.

CFG++ takes the guided prediction as the step's target but renoises along the *unconditional*
direction. :func:`uncond_of` asks a :class:`nodegen.diffusion.denoiser.Denoiser` to keep that
prediction (even at cfg 1, as ComfyUI's samplers do); a model that does not provide one (a plain
function) gives the guided prediction, so the sampler falls back to its plain variant.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def uncond_of(model) -> Callable[[torch.Tensor], torch.Tensor]:
    """A reader ``(denoised) -> uncond_denoised`` for the model's last call."""
    if hasattr(model, "keep_uncond"):
        model.keep_uncond = True

    def read(denoised: torch.Tensor) -> torch.Tensor:
        u = getattr(model, "last_uncond", None)
        return denoised if u is None else u

    return read
