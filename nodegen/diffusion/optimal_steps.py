"""Optimal Stepsize schedules (Pei et al. 2025, "Optimal Stepsize for Diffusion Sampling",
arXiv:2503.21774; github.com/bebebe666/OptimalSteps), as ComfyUI's OptimalStepsScheduler uses them:
the published noise levels of flow models, log-linearly interpolated to other step counts (as Align
Your Steps), the last set to 0; with ``denoise < 1`` the last ``round(steps * denoise)`` steps."""

from __future__ import annotations

import torch

from nodegen.diffusion.align_your_steps import sigmas_from_levels

#: The published levels (sigma of flow models), as ComfyUI ships them.
NOISE_LEVELS: dict[str, list[float]] = {
    "FLUX": [0.9968, 0.9886, 0.9819, 0.975, 0.966, 0.9471, 0.9158, 0.8287, 0.5512, 0.2808, 0.001],
    "Wan": [1.0, 0.997, 0.995, 0.993, 0.991, 0.989, 0.987, 0.985, 0.98, 0.975, 0.973, 0.968, 0.96, 0.946, 0.927,
            0.902, 0.864, 0.776, 0.539, 0.208, 0.001],
    "Chroma": [0.992, 0.99, 0.988, 0.985, 0.982, 0.978, 0.973, 0.968, 0.961, 0.953, 0.943, 0.931, 0.917, 0.9,
               0.881, 0.858, 0.832, 0.802, 0.769, 0.731, 0.69, 0.646, 0.599, 0.55, 0.501, 0.451, 0.402, 0.355,
               0.311, 0.27, 0.232, 0.199, 0.169, 0.143, 0.12, 0.101, 0.084, 0.07, 0.058, 0.048, 0.001],
}
MODEL_TYPES = list(NOISE_LEVELS)


def optimal_steps_sigmas(model_type: str, steps: int, denoise: float = 1.0) -> torch.Tensor:
    if model_type not in NOISE_LEVELS:
        raise ValueError(f"unknown model type {model_type!r}; choose one of {', '.join(MODEL_TYPES)}")
    return sigmas_from_levels(NOISE_LEVELS[model_type], steps, denoise)
