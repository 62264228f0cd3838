"""Align Your Steps (Sabour, Fidler & Kreis 2024, NVIDIA): noise levels optimised per model family
for 10 steps, published at research.nvidia.com/labs/toronto-ai/AlignYourSteps; other step counts
interpolate them log-linearly (the authors' recipe, as ComfyUI's AlignYourStepsScheduler)."""

from __future__ import annotations

import numpy as np
import torch

#: The published 10-step schedules (11 noise levels, high to low).
NOISE_LEVELS: dict[str, list[float]] = {
    "SD1": [14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520, 1.8841921177, 1.3943805092,
            0.9642583904, 0.6523686016, 0.3977456272, 0.1515232662, 0.0291671582],
    "SDXL": [14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769, 1.3405244945, 0.8620721141,
             0.5550693289, 0.3798540708, 0.2332364134, 0.1114188177, 0.0291671582],
    "SVD": [700.00, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002],
}
MODEL_TYPES = list(NOISE_LEVELS)


def loglinear_interp(levels: list[float], count: int) -> np.ndarray:
    """``count`` levels spread evenly over the published ones, interpolating log-sigma."""
    xs = np.linspace(0, 1, len(levels))
    ys = np.log(np.asarray(levels, dtype=np.float64)[::-1])
    return np.exp(np.interp(np.linspace(0, 1, count), xs, ys))[::-1].copy()


def ays_sigmas(model_type: str, steps: int, denoise: float = 1.0) -> torch.Tensor:
    """``steps + 1`` sigmas ending at 0 (fewer with ``denoise < 1``: the last
    ``round(steps * denoise)`` steps, as ComfyUI)."""
    if model_type not in NOISE_LEVELS:
        raise ValueError(f"unknown model type {model_type!r}; choose one of {', '.join(MODEL_TYPES)}")
    return sigmas_from_levels(NOISE_LEVELS[model_type], steps, denoise)


def sigmas_from_levels(levels: list[float], steps: int, denoise: float = 1.0) -> torch.Tensor:
    """A published table of noise levels (high to low) as ``steps + 1`` sigmas ending at 0: the
    table itself when it has that many, else log-linearly interpolated; with ``denoise < 1`` the
    last ``round(steps * denoise)`` steps (ComfyUI's rule for Align Your Steps and Optimal Steps)."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    total = steps
    if denoise < 1.0:
        if denoise <= 0.0:
            return torch.zeros(0, dtype=torch.float32)
        total = round(steps * denoise)
    sigmas = np.asarray(levels, dtype=np.float64) if steps + 1 == len(levels) else loglinear_interp(levels, steps + 1)
    sigmas = sigmas[-(total + 1):].copy()
    sigmas[-1] = 0.0
    return torch.tensor(sigmas, dtype=torch.float32)
