"""Noise levels of a discrete-time diffusion model: sigma <-> timestep, and the output
conversion of eps / v-prediction models to a denoised estimate.

The convention is k-diffusion's (variance exploding view of a variance preserving model):
``x = x0 + sigma * noise`` with ``sigma = sqrt((1 - alphas_cumprod) / alphas_cumprod)``.
The UNet sees ``c_in * x`` with ``c_in = 1 / sqrt(sigma^2 + 1)`` (the VP-scaled sample diffusers
schedulers feed it) and the timestep of ``sigma``.

Prediction types: ``epsilon`` (noise), ``v_prediction`` (Salimans & Ho), ``x0`` (the model gives
the denoised sample itself); ``lcm`` (latent consistency distillation): :class:`DistilledModelSampling`
(:func:`discrete_sampling` picks the class).

Timesteps given to the UNet: by default the *nearest* training timestep in log-sigma (like
ComfyUI's ``ModelSamplingDiscrete.timestep`` and diffusers' DPM-Solver with Karras sigmas, which
rounds). ``discrete_timesteps=False`` passes the fractional timestep interpolated in log-sigma
(k-diffusion's ``DiscreteSchedule.sigma_to_t``; diffusers' Euler with Karras sigmas). On the
sigmas of the training table both are the same integer.
"""

from __future__ import annotations

import math
from bisect import bisect_left

import torch


class ModelSampling:
    """Discrete schedule built from ``alphas_cumprod`` (float64 [T])."""

    def __init__(self, alphas_cumprod: torch.Tensor, prediction_type: str = "epsilon",
                 discrete_timesteps: bool = True):
        if prediction_type not in ("epsilon", "v_prediction", "x0", "img_to_img", "lcm"):
            raise ValueError(f"unknown prediction_type {prediction_type!r}; use 'epsilon', 'v_prediction', "
                             "'x0', 'img_to_img' or 'lcm'")
        ac = torch.as_tensor(alphas_cumprod, dtype=torch.float64).cpu()
        self.alphas_cumprod = ac
        self.sigmas = ((1 - ac) / ac) ** 0.5  # increasing with t, float64
        self.log_sigmas = self.sigmas.log()
        self.prediction_type = prediction_type
        self.discrete_timesteps = discrete_timesteps

    @classmethod
    def from_model(cls, model) -> ModelSampling:
        """From a ``DiffusionModel`` (anything with ``alphas_cumprod`` and ``prediction_type``)."""
        return discrete_sampling(model.alphas_cumprod, getattr(model, "prediction_type", "epsilon"))

    @property
    def num_timesteps(self) -> int:
        return len(self.sigmas)

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    # -- sigma <-> t ---------------------------------------------------------------------
    def sigma_to_t(self, sigma: torch.Tensor | float) -> torch.Tensor:
        """Fractional timestep of ``sigma`` by linear interpolation in log-sigma (clamped)."""
        s = torch.as_tensor(sigma, dtype=torch.float64).cpu()
        log_sigma = s.clamp_min(1e-30).log()
        ls = self.log_sigmas
        dists = log_sigma - ls[:, None]
        low_idx = dists.ge(0).cumsum(dim=0).argmax(dim=0).clamp(max=ls.shape[0] - 2)
        high_idx = low_idx + 1
        low, high = ls[low_idx], ls[high_idx]
        w = ((low - log_sigma) / (low - high)).clamp(0, 1)
        t = (1 - w) * low_idx + w * high_idx
        return t.view(s.shape)

    @property
    def log_sigmas(self) -> torch.Tensor:
        return self._log_sigmas

    @log_sigmas.setter
    def log_sigmas(self, value: torch.Tensor) -> None:
        # a subclass that replaces the table (DistilledModelSampling) keeps the list in step
        self._log_sigmas = value
        self._log_sigma_list = value.tolist()  # for the per-step nearest_t of one sigma

    def nearest_t(self, sigma: torch.Tensor | float) -> torch.Tensor:
        """Nearest training timestep of ``sigma`` in log-sigma (an integer-valued tensor)."""
        if isinstance(sigma, float | int):
            return torch.tensor(float(self._nearest_index(sigma)), dtype=torch.float64)
        s = torch.as_tensor(sigma, dtype=torch.float64).cpu()
        dists = s.clamp_min(1e-30).log() - self.log_sigmas[:, None]
        return dists.abs().argmin(dim=0).view(s.shape).to(torch.float64)

    def _nearest_index(self, sigma: float) -> int:
        """``nearest_t`` of one sigma by bisection (the sampler asks once per step): the same
        log, distances and first-index tie rule as the tensor path, without a [T] temporary."""
        x = float(torch.as_tensor(sigma, dtype=torch.float64).clamp_min(1e-30).log())
        ls = self._log_sigma_list
        i = bisect_left(ls, x)
        if i == 0:
            return 0
        if i == len(ls):
            i = len(ls) - 1
        elif abs(x - ls[i - 1]) <= abs(x - ls[i]):
            i -= 1
        return bisect_left(ls, ls[i])  # the first of equal table entries, as argmin

    def timestep(self, sigma: torch.Tensor | float) -> torch.Tensor:
        """The timestep the UNet is called with for ``sigma`` (see the module docstring)."""
        return self.nearest_t(sigma) if self.discrete_timesteps else self.sigma_to_t(sigma)

    def t_to_sigma(self, t: torch.Tensor | float) -> torch.Tensor:
        """Sigma of a (fractional) timestep by linear interpolation in log-sigma."""
        t = torch.as_tensor(t, dtype=torch.float64).cpu().clamp(0, self.num_timesteps - 1)
        low_idx, high_idx, w = t.floor().long(), t.ceil().long(), t.frac()
        log_sigma = (1 - w) * self.log_sigmas[low_idx] + w * self.log_sigmas[high_idx]
        return log_sigma.exp()

    # -- network in/out scalings -----------------------------------------------------------
    def c_in(self, sigma: torch.Tensor) -> torch.Tensor:
        """The input scaling; 1 for ``img_to_img`` models, which see the sample as it is
        (ComfyUI's ``IMG_TO_IMG``: an x0 model fed its input unscaled, as Lotus' depth and normal
        estimators are)."""
        if self.prediction_type == "img_to_img":
            return torch.ones_like(sigma)
        return 1.0 / (sigma**2 + 1.0) ** 0.5

    def c_skip_out(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``denoised = c_skip * x + c_out * model_output``."""
        if self.prediction_type in ("epsilon", "lcm"):
            return torch.ones_like(sigma), -sigma
        if self.prediction_type in ("x0", "img_to_img"):
            return torch.zeros_like(sigma), torch.ones_like(sigma)
        # v-prediction (Salimans & Ho), sigma_data = 1
        return 1.0 / (sigma**2 + 1.0), -sigma / (sigma**2 + 1.0) ** 0.5

    def denoised(self, x: torch.Tensor, sigma: torch.Tensor, model_output: torch.Tensor) -> torch.Tensor:
        sigma = _bcast(sigma, x)
        if self.prediction_type == "epsilon":  # c_skip is 1: the same bits, two operations fewer
            return x + (-sigma) * model_output
        c_skip, c_out = self.c_skip_out(sigma)
        return c_skip * x + c_out * model_output

    # -- starting noise ----------------------------------------------------------------------
    def is_max_sigma(self, sigma: float) -> bool:
        return sigma >= self.sigma_max * (1 - 1e-5)

    def noise_scaling(self, sigma: float, noise: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """The first sample: ``latent + noise * sigma``; at full denoise (sigma at the model's
        maximum) ``latent + noise * sqrt(1 + sigma^2)`` (like ComfyUI; equals diffusers' DPM-Solver
        / DDIM start ``noise * init_noise_sigma=1`` in VP space)."""
        scale = (1.0 + sigma**2) ** 0.5 if self.is_max_sigma(sigma) else sigma
        return latent + noise * scale


ORIGINAL_STEPS = 50
SIGMA_DATA = 0.5
TIMESTEP_SCALING = 10.0


class DistilledModelSampling(ModelSampling):
    """Model sampling of a latent consistency (LCM) model (Luo et al. 2023, "Latent Consistency
    Models"), as ComfyUI's ``ModelSamplingDiscrete`` with ``sampling = lcm`` does it.

    * The sigma table keeps the 50 timesteps LCM was distilled on: ``skip = T // 50`` and table entry
      ``k`` is the training sigma of timestep ``k * skip + skip - 1`` (19, 39, ..., 999 for T = 1000).
    * The UNet is called with that training timestep (the nearest table entry's); fractional timesteps
      on the 0..T-1 axis map back onto the table by ``(t - (skip - 1)) / skip``, interpolated in log-sigma.
    * The output is eps; the denoised estimate has the consistency boundary condition
      ``c_skip * x + c_out * x0`` with ``x0 = x - sigma * eps``, ``c_skip = s_d^2 / (ts^2 + s_d^2)``,
      ``c_out = ts / sqrt(ts^2 + s_d^2)``, ``ts = 10 * timestep`` and ``s_d = 0.5`` (diffusers'
      ``LCMScheduler.get_scalings_for_boundary_condition_discrete``; ComfyUI applies it to the
      unscaled sample ``x``, which is what nodegen does).
    """

    def __init__(self, alphas_cumprod: torch.Tensor):
        super().__init__(alphas_cumprod, "lcm")
        full = self.sigmas
        self.total_timesteps = len(full)
        self.skip = self.total_timesteps // ORIGINAL_STEPS
        keep = torch.arange(ORIGINAL_STEPS) * self.skip + (self.skip - 1)
        keep = keep + (self.total_timesteps - 1 - int(keep[-1]))  # end on the last timestep
        self.sigmas = full[keep]
        self.log_sigmas = self.sigmas.log()

    @property
    def num_timesteps(self) -> int:
        """The timestep axis (0..T-1) the UNet, the schedules and ControlNet ranges use."""
        return self.total_timesteps

    def _offset(self) -> int:
        return self.total_timesteps - 1 - (ORIGINAL_STEPS - 1) * self.skip

    def sigma_to_t(self, sigma: torch.Tensor | float) -> torch.Tensor:
        return super().sigma_to_t(sigma) * self.skip + self._offset()

    def nearest_t(self, sigma: torch.Tensor | float) -> torch.Tensor:
        return super().nearest_t(sigma) * self.skip + self._offset()

    def timestep(self, sigma: torch.Tensor | float) -> torch.Tensor:
        return self.nearest_t(sigma)

    def t_to_sigma(self, t: torch.Tensor | float) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.float64).cpu()
        k = ((t - self._offset()) / self.skip).clamp(0, len(self.sigmas) - 1)
        low, high, w = k.floor().long(), k.ceil().long(), k.frac()
        return ((1 - w) * self.log_sigmas[low] + w * self.log_sigmas[high]).exp()

    def denoised(self, x: torch.Tensor, sigma: torch.Tensor, model_output: torch.Tensor) -> torch.Tensor:
        sig = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1)
        ts = self.nearest_t(sig) * TIMESTEP_SCALING
        c_skip = SIGMA_DATA**2 / (ts**2 + SIGMA_DATA**2)
        c_out = ts / (ts**2 + SIGMA_DATA**2) ** 0.5
        sigma_b = _bcast(sig.to(x.dtype), x)
        x0 = x - model_output * sigma_b
        return _bcast(c_out.to(x.dtype), x) * x0 + _bcast(c_skip.to(x.dtype), x) * x


def discrete_sampling(alphas_cumprod: torch.Tensor, prediction_type: str = "epsilon",
                      discrete_timesteps: bool = True) -> ModelSampling:
    """The model sampling of a discrete-time model: LCM's distilled one for ``lcm``, else :class:`ModelSampling`."""
    if prediction_type == "lcm":
        return DistilledModelSampling(alphas_cumprod)
    return ModelSampling(alphas_cumprod, prediction_type, discrete_timesteps)


def zero_terminal_snr(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """The schedule rescaled to zero terminal SNR (Lin et al. 2023, "Common Diffusion Noise
    Schedules and Sample Steps are Flawed", algorithm 1): ``sqrt(alphas_cumprod)`` shifted so its
    last value is 0 and scaled so its first is unchanged. The last value is then set to the tiny
    ``4.8973451890853435e-08`` ComfyUI uses (a finite top sigma of about 4519) instead of 0."""
    root = torch.as_tensor(alphas_cumprod, dtype=torch.float64).sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * (first / (first - last))
    out = root**2
    out[-1] = 4.8973451890853435e-08
    return out


def _bcast(sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if sigma.ndim == 0:
        return sigma
    return sigma.reshape(sigma.shape[0], *([1] * (x.ndim - 1)))


def percent_to_sigma(ms, percent: float) -> float:
    """ComfyUI's ``percent_to_sigma``: the sigma at a fraction of the schedule (0: before it
    starts, infinity; 1: its end, 0). Discrete models: timestep ``(1 - p) * (T - 1)``; flow
    models: time ``1 - p`` (table units ``t * T``)."""
    if percent <= 0:
        return math.inf
    if percent >= 1:
        return 0.0
    flow = getattr(ms, "prediction_type", "") == "flow"
    axis = ms.num_timesteps if flow else ms.num_timesteps - 1
    return float(ms.t_to_sigma((1.0 - percent) * axis))
