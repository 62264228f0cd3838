"""Noise levels of a rectified-flow model (SD3 / SD 3.5, Flux.1): ``x = (1 - sigma) * x0 + sigma * noise``
with sigma in [0, 1], the model predicting the velocity ``v = noise - x0``, so
``denoised = x - sigma * v``. The samplers see the same ``model(x, sigma) -> denoised`` interface as
for discrete-time models; ``to_d`` then gives ``v`` and Euler steps are exactly the flow ODE steps.

The sigma table (what the schedules walk) follows ComfyUI's ``ModelSamplingDiscreteFlow`` /
``ModelSamplingFlux`` and diffusers' ``FlowMatchEulerDiscreteScheduler``: ``T`` evenly spaced times
``t = k / T`` (k = 1..T) mapped through the shift:

* ``flow`` (SD3, Flux schnell): ``sigma = shift * t / (1 + (shift - 1) * t)`` (SD3: shift 3.0, T 1000);
* ``flux`` (Flux dev): ``sigma = e^mu / (e^mu + 1 / t - 1)`` with ``mu`` the resolution-dependent
  shift (diffusers' ``calculate_shift``; ComfyUI's ModelSamplingFlux), T 10000.

``sigma_to_t`` / ``t_to_sigma`` work in table units (``t * T``), so the ``normal`` schedule equals
diffusers' default flow-match schedule and ``simple`` equals FluxPipeline's ``linspace(1, 1/N, N)``.
The model is called with ``timestep(sigma) = sigma * multiplier`` (SD3: 1000; Flux: 1, the
transformer scales it itself).
"""

from __future__ import annotations

import math

import torch

from nodegen.diffusion.model_sampling import _bcast

KINDS = ("flow", "flux")


def flux_mu(width: int, height: int, base_shift: float = 0.5, max_shift: float = 1.15) -> float:
    """Flux's shift for an image size: linear in the number of 2x2 latent patches, ``base_shift`` at
    256 patches (512 px square) and ``max_shift`` at 4096 (1024 px)."""
    seq = (width // 16) * (height // 16)
    m = (max_shift - base_shift) / (4096 - 256)
    return seq * m + (base_shift - m * 256)


class FlowModelSampling:
    """The sigma table and in/out conversions of a rectified-flow model."""

    prediction_type = "flow"
    discrete_timesteps = False

    def __init__(self, kind: str = "flow", shift: float = 1.0, multiplier: float = 1000.0,
                 timesteps: int | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown flow model sampling {kind!r}; use one of {', '.join(KINDS)}")
        self.kind = kind
        self.shift = float(shift)
        self.multiplier = float(multiplier)
        self.T = int(timesteps or (10000 if kind == "flux" else 1000))
        t = torch.arange(1, self.T + 1, dtype=torch.float64) / self.T
        self.sigmas = self.shifted(t)  # increasing
        self.log_sigmas = self.sigmas.log()

    def shifted(self, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.float64)
        if self.kind == "flux":
            e = math.exp(self.shift)
            return e / (e + (1.0 / t - 1.0))
        return self.shift * t / (1 + (self.shift - 1) * t)

    @property
    def num_timesteps(self) -> int:
        return self.T

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    def sigma_to_t(self, sigma) -> torch.Tensor:
        return torch.as_tensor(sigma, dtype=torch.float64).cpu() * self.T

    def t_to_sigma(self, t) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.float64).cpu() / self.T
        return torch.where(t <= 0, torch.zeros_like(t), self.shifted(t.clamp_min(1e-12)))

    def timestep(self, sigma) -> torch.Tensor:
        return torch.as_tensor(sigma, dtype=torch.float64).cpu() * self.multiplier

    @staticmethod
    def c_in(sigma: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(torch.as_tensor(sigma, dtype=torch.float64))

    def denoised(self, x: torch.Tensor, sigma: torch.Tensor, model_output: torch.Tensor) -> torch.Tensor:
        return x - _bcast(sigma, x) * model_output

    def is_max_sigma(self, sigma: float) -> bool:
        return sigma >= self.sigma_max * (1 - 1e-5)

    def noise_scaling(self, sigma: float, noise: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """The first sample: ``sigma * noise + (1 - sigma) * latent``."""
        return sigma * noise + (1.0 - sigma) * latent

    def __repr__(self) -> str:
        return f"FlowModelSampling({self.kind}, shift={self.shift:g}, multiplier={self.multiplier:g})"


#: the model sampling a flow family uses when no ModelSamplingSD3 / ModelSamplingFlux node set one
DEFAULTS = {"sd3": {"kind": "flow", "shift": 3.0, "multiplier": 1000.0},
            "flux": {"kind": "flux", "shift": 1.15, "multiplier": 1.0},
            "flux_schnell": {"kind": "flow", "shift": 1.0, "multiplier": 1.0},
            "chroma": {"kind": "flux", "shift": 1.15, "multiplier": 1.0}}  # ComfyUI's Chroma: Flux sampling


def flow_sampling_for(model) -> FlowModelSampling:
    """The model's :class:`FlowModelSampling`: ``model.options["model_sampling"]`` (set by the
    ModelSampling nodes) or the family default (Flux models without a guidance input are schnell)."""
    opts = (getattr(model, "options", {}) or {}).get("model_sampling")
    if opts is None:
        key = model.family
        if key == "flux" and not getattr(model.unet.config, "guidance_embeds", False):
            key = "flux_schnell"
        opts = DEFAULTS[key]
    return FlowModelSampling(**opts)
