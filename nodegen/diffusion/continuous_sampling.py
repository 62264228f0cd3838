"""Noise levels of a continuous-time diffusion model: any sigma in ``[sigma_min, sigma_max]``, no
training table (ComfyUI's ``ModelSamplingContinuousEDM``, ``ModelSamplingContinuousV`` and
``ModelSamplingCosmosRFlow``; the nodes of the same names set it on a MODEL).

Checkpoints trained this way: Playground v2.5 and CosXL (EDM, ``sigma_data = 0.5``), SD/SDXL
fine-tunes with continuous v-prediction, Cosmos (rectified flow seen through EDM sigmas).

As for discrete models the sample is ``x = x0 + sigma * noise`` and the samplers see
``model(x, sigma) -> denoised``. What differs is how sigma reaches the network and how its output
becomes ``denoised`` (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based
Generative Models", table 1; diffusers' ``EDMEulerScheduler.precondition_*``):

* the timestep input (``timing``): ``edm``: ``c_noise = 0.25 * ln(sigma)``; ``v``:
  ``atan(sigma) * 2 / pi``; ``cosmos_rflow``: ``sigma / (sigma + 1)``;
* the input scaling ``c_in = 1 / sqrt(sigma^2 + sigma_data^2)`` (``cosmos_rflow``: ``1 / (sigma + 1)``,
  the rectified-flow sample ``(1 - t) * x0 + t * noise`` with ``t = sigma / (sigma + 1)``);
* ``denoised = c_skip * x + c_out * output`` by prediction type: ``epsilon``: ``x - sigma * output``;
  ``v_prediction``: ``c_skip = sd^2 / (sigma^2 + sd^2)``, ``c_out = -sigma * sd / sqrt(sigma^2 + sd^2)``;
  ``edm`` (the network's output is Karras' F): the same with ``+`` for ``c_out``; ``cosmos_rflow``:
  ``(1 - t) * x - t * output`` (velocity).

For the schedules, the ControlNet / conditioning ranges (``percent_to_sigma``) and ``sigma_to_t``,
the range is a table of 1000 sigmas evenly spaced in log-sigma from ``sigma_min`` to ``sigma_max``
(ComfyUI's "for compatibility with some schedulers" table): ``sigma_to_t`` / ``t_to_sigma`` work on
that table's index, so ``normal`` is evenly spaced in log-sigma and percent ``p`` is
``exp(ln sigma_min + (1 - p) * (ln sigma_max - ln sigma_min))``, as in ComfyUI. The network's own
timestep is :meth:`ContinuousModelSampling.timestep`.
"""

from __future__ import annotations

import math

import torch

from nodegen.diffusion.model_sampling import _bcast

#: how sigma becomes the network's timestep input
TIMINGS = ("edm", "v", "cosmos_rflow")
PREDICTIONS = ("epsilon", "v_prediction", "edm", "cosmos_rflow")
TABLE_SIZE = 1000


class ContinuousModelSampling:
    """The sigma range and in/out conversions of a continuous-time model."""

    discrete_timesteps = False

    def __init__(self, timing: str = "edm", prediction_type: str = "epsilon", sigma_min: float = 0.002,
                 sigma_max: float = 120.0, sigma_data: float = 1.0) -> None:
        if timing not in TIMINGS:
            raise ValueError(f"unknown continuous timing {timing!r}; use one of {', '.join(TIMINGS)}")
        if prediction_type not in PREDICTIONS:
            raise ValueError(f"unknown prediction type {prediction_type!r}; use one of {', '.join(PREDICTIONS)}")
        if not (sigma_min > 0 and math.isfinite(sigma_max) and sigma_max > sigma_min):
            raise ValueError(f"the sigma range needs 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, "
                             f"sigma_max={sigma_max}")
        if not sigma_data > 0:
            raise ValueError(f"sigma_data must be greater than 0, got {sigma_data}")
        self.timing = timing
        self.prediction_type = prediction_type
        self._sigma_min, self._sigma_max = float(sigma_min), float(sigma_max)
        self.sigma_data = float(sigma_data)
        self._log_min, self._log_max = math.log(sigma_min), math.log(sigma_max)
        self.log_sigmas = torch.linspace(self._log_min, self._log_max, TABLE_SIZE, dtype=torch.float64)
        self.sigmas = self.log_sigmas.exp()
        self.sigmas[0], self.sigmas[-1] = self._sigma_min, self._sigma_max  # the ends exactly as given

    @property
    def num_timesteps(self) -> int:
        return TABLE_SIZE

    @property
    def sigma_min(self) -> float:
        return self._sigma_min

    @property
    def sigma_max(self) -> float:
        return self._sigma_max

    # -- sigma <-> position in the range (schedules, percent_to_sigma, progress) -------------
    def sigma_to_t(self, sigma: torch.Tensor | float) -> torch.Tensor:
        """The (fractional, clamped) index of ``sigma`` on the log-spaced table."""
        s = torch.as_tensor(sigma, dtype=torch.float64).cpu().clamp_min(1e-30)
        t = (s.log() - self._log_min) / (self._log_max - self._log_min) * (TABLE_SIZE - 1)
        return t.clamp(0, TABLE_SIZE - 1)

    def t_to_sigma(self, t: torch.Tensor | float) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.float64).cpu().clamp(0, TABLE_SIZE - 1)
        return (self._log_min + t / (TABLE_SIZE - 1) * (self._log_max - self._log_min)).exp()

    # -- what the network sees ----------------------------------------------------------------
    def timestep(self, sigma: torch.Tensor | float) -> torch.Tensor:
        """The network's timestep input for ``sigma`` (see the module docstring)."""
        s = torch.as_tensor(sigma, dtype=torch.float64).cpu()
        if self.timing == "edm":
            return 0.25 * s.log()
        if self.timing == "v":
            return s.atan() / math.pi * 2
        return s / (s + 1)

    def c_in(self, sigma: torch.Tensor) -> torch.Tensor:
        sigma = torch.as_tensor(sigma)
        if self.prediction_type == "cosmos_rflow":
            return 1.0 / (sigma + 1.0)
        return 1.0 / (sigma**2 + self.sigma_data**2) ** 0.5

    def c_skip_out(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``denoised = c_skip * x + c_out * model_output``."""
        sigma = torch.as_tensor(sigma)
        if self.prediction_type == "epsilon":
            return torch.ones_like(sigma), -sigma
        if self.prediction_type == "cosmos_rflow":
            t = sigma / (sigma + 1.0)
            return 1.0 - t, -t
        sd2 = self.sigma_data**2
        c_skip = sd2 / (sigma**2 + sd2)
        c_out = sigma * self.sigma_data / (sigma**2 + sd2) ** 0.5
        return c_skip, (c_out if self.prediction_type == "edm" else -c_out)

    def denoised(self, x: torch.Tensor, sigma: torch.Tensor, model_output: torch.Tensor) -> torch.Tensor:
        c_skip, c_out = self.c_skip_out(_bcast(sigma, x))
        return c_skip * x + c_out * model_output

    # -- starting noise ----------------------------------------------------------------------
    def is_max_sigma(self, sigma: float) -> bool:
        return sigma >= self.sigma_max * (1 - 1e-5)

    def noise_scaling(self, sigma: float, noise: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """The first sample: ``latent + noise * sigma``; at full denoise ``latent + noise *
        sqrt(1 + sigma^2)`` (ComfyUI's EPS rule, which all but ``cosmos_rflow`` follow; diffusers'
        EDM schedulers start at ``noise * sqrt(sigma_max^2 + 1)`` too)."""
        full = self.prediction_type != "cosmos_rflow" and self.is_max_sigma(sigma)
        scale = (1.0 + sigma**2) ** 0.5 if full else sigma
        return latent + noise * scale

    def __repr__(self) -> str:
        return (f"ContinuousModelSampling({self.timing}, {self.prediction_type}, sigma_min={self.sigma_min:g}, "
                f"sigma_max={self.sigma_max:g}, sigma_data={self.sigma_data:g})")
