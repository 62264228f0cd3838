"""Noise schedules: the decreasing list of sigmas a sampler walks down (last element 0).

Definitions follow ComfyUI's schedulers (so a workflow gives the same sigmas):

* ``normal``: timesteps evenly spaced from the model's last to first training timestep
  (``linspace(T-1, 0, steps)``), sigma by log-sigma interpolation, then 0. Equals diffusers'
  Euler/Heun/LMS schedulers with ``timestep_spacing="linspace"`` whenever ``(T-1)/(steps-1)`` is an
  integer (e.g. 4 or 10 steps for T = 1000; otherwise diffusers interpolates sigma linearly
  rather than in log-sigma and the values differ in the 4th digit).
* ``sgm_uniform``: ``linspace(T-1, 0, steps + 1)[:-1]`` then 0. Equals diffusers'
  DPM-Solver(++) with ``timestep_spacing="linspace"`` when ``T-1`` divides by ``steps``.
* ``karras``: Karras et al. (2022) rho = 7 between the model's sigma_min and sigma_max
  (diffusers ``use_karras_sigmas=True``).
* ``exponential``: evenly spaced in log-sigma.
* ``simple``: every ``T/steps``-th sigma of the table from the top.
* ``ddim_uniform``: table sigmas at ``1 + k * (T // steps)`` (diffusers DDIM ``"leading"`` spacing,
  ``steps_offset=1``, ``set_alpha_to_one=True``).
* ``kl_optimal``: evenly spaced in arctan(sigma) (Sabour et al., 2024).
* ``beta``: timesteps at the quantiles of Beta(0.6, 0.6) (Lee et al., 2024), rounded to table
  entries; repeated timesteps are dropped, so it can give fewer than ``steps`` steps (as ComfyUI).
* ``linear_quadratic``: (Genmo's Mochi schedule, as ComfyUI) the noise level ``1 - sigma/sigma_max``
  rises linearly to 0.025 over the first half of the steps, then quadratically to 1.

``denoise < 1`` (img2img) takes the last ``steps + 1`` sigmas of a schedule of
``int(steps / denoise)`` steps, like ComfyUI's BasicScheduler (with a 1e-6 tolerance so that
e.g. 5 steps at denoise 0.5 is always a 10-step schedule). diffusers' img2img with ``strength=s``
and ``num_inference_steps=N`` runs the last ``k = int(N * s)`` steps of an N-step schedule:
use ``steps = k`` and ``denoise = k / N``.
"""

from __future__ import annotations

import math

import torch

from nodegen.diffusion.model_sampling import ModelSampling

SCHEDULER_NAMES = ["normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform", "beta",
                   "kl_optimal", "linear_quadratic"]


def _append_zero(sigmas: list[float] | torch.Tensor) -> torch.Tensor:
    s = torch.as_tensor(sigmas, dtype=torch.float64)
    return torch.cat([s, s.new_zeros(1)])


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    min_inv_rho = sigma_min ** (1 / rho)
    max_inv_rho = sigma_max ** (1 / rho)
    sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
    return _append_zero(sigmas).float()


def exponential_sigmas(steps: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    sigmas = torch.linspace(math.log(sigma_max), math.log(sigma_min), steps, dtype=torch.float64).exp()
    return _append_zero(sigmas).float()


def polyexponential_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 1.0) -> torch.Tensor:
    """k-diffusion's ``get_sigmas_polyexponential``: log-sigma falls as ``ramp ** rho`` (rho 1:
    the exponential schedule)."""
    ramp = torch.linspace(1, 0, steps, dtype=torch.float64) ** rho
    sigmas = torch.exp(ramp * (math.log(sigma_max) - math.log(sigma_min)) + math.log(sigma_min))
    return _append_zero(sigmas).float()


def vp_sigmas(steps: int, beta_d: float = 19.9, beta_min: float = 0.1, eps_s: float = 1e-3) -> torch.Tensor:
    """k-diffusion's ``get_sigmas_vp``: the continuous VP schedule of Song et al. (2021)."""
    t = torch.linspace(1, eps_s, steps, dtype=torch.float64)
    sigmas = torch.sqrt(torch.exp(beta_d * t**2 / 2 + beta_min * t) - 1)
    return _append_zero(sigmas).float()


def kl_optimal_sigmas(steps: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    adj = torch.linspace(0, 1, steps, dtype=torch.float64)
    sigmas = torch.tan(adj * math.atan(sigma_min) + (1 - adj) * math.atan(sigma_max))
    return _append_zero(sigmas).float()


def laplace_sigmas(steps: int, sigma_min: float, sigma_max: float, mu: float = 0.0,
                   beta: float = 0.5) -> torch.Tensor:
    """Laplace schedule (Hang et al. 2024, "Improved Noise Schedule for Diffusion Training", as
    ComfyUI's LaplaceScheduler): log-sigma at the quantiles of a Laplace(mu, beta) distribution
    of ``steps`` evenly spaced points, clamped to ``[sigma_min, sigma_max]``, then 0."""
    eps = 1e-5  # keeps log() finite at the ends
    x = torch.linspace(0, 1, steps, dtype=torch.float64)
    lmb = mu - beta * torch.sign(0.5 - x) * torch.log(1 - 2 * torch.abs(0.5 - x) + eps)
    return _append_zero(torch.exp(lmb).clamp(min=sigma_min, max=sigma_max)).float()


def normal_sigmas(ms: ModelSampling, steps: int, sgm: bool = False) -> torch.Tensor:
    start = float(ms.sigma_to_t(ms.sigma_max))
    end = float(ms.sigma_to_t(ms.sigma_min))
    append_zero = True
    if sgm:
        timesteps = torch.linspace(start, end, steps + 1, dtype=torch.float64)[:-1]
    else:
        if math.isclose(float(ms.t_to_sigma(end)), 0, abs_tol=1e-5):
            steps += 1
            append_zero = False
        timesteps = torch.linspace(start, end, steps, dtype=torch.float64)
    sigs = ms.t_to_sigma(timesteps)
    return (_append_zero(sigs) if append_zero else sigs).float()


def simple_sigmas(ms: ModelSampling, steps: int) -> torch.Tensor:
    table = ms.sigmas
    ss = len(table) / steps
    sigs = [float(table[-(1 + int(x * ss))]) for x in range(steps)]
    return _append_zero(sigs).float()


def ddim_uniform_sigmas(ms: ModelSampling, steps: int) -> torch.Tensor:
    table = ms.sigmas
    x = 1
    if math.isclose(float(table[x]), 0, abs_tol=1e-5):
        steps += 1
        sigs: list[float] = []
    else:
        sigs = [0.0]
    ss = max(len(table) // steps, 1)
    while x < len(table):
        sigs.append(float(table[x]))
        x += ss
    return torch.tensor(sigs[::-1], dtype=torch.float32)


def beta_sigmas(ms: ModelSampling, steps: int, alpha: float = 0.6, beta: float = 0.6) -> torch.Tensor:
    from nodegen.diffusion.beta_dist import beta_ppf

    total = len(ms.sigmas) - 1
    sigs: list[float] = []
    last_t = None
    for k in range(steps):
        q = 1.0 - k / steps
        t = int(round(beta_ppf(q, alpha, beta) * total))
        if t != last_t:
            sigs.append(float(ms.sigmas[t]))
        last_t = t
    return _append_zero(sigs).float()


def linear_quadratic_sigmas(ms: ModelSampling, steps: int, threshold: float = 0.025,
                            linear_steps: int | None = None) -> torch.Tensor:
    """Linear in ``1 - sigma/sigma_max`` up to ``threshold`` for ``linear_steps`` (default half the
    steps), then a quadratic that meets it with the same value and reaches 1 at the last step."""
    if steps == 1:
        fractions = [0.0, 1.0]
    else:
        lin = steps // 2 if linear_steps is None else linear_steps
        quad = steps - lin
        diff = lin - threshold * steps
        a = diff / (lin * quad**2)
        b = threshold / lin - 2 * diff / quad**2
        c = a * lin**2
        fractions = ([k * threshold / lin for k in range(lin)]
                     + [a * k**2 + b * k + c for k in range(lin, steps)] + [1.0])
    return torch.tensor([(1.0 - f) * float(ms.sigma_max) for f in fractions], dtype=torch.float32)


def _calculate(name: str, ms: ModelSampling, steps: int) -> torch.Tensor:
    if name == "normal":
        return normal_sigmas(ms, steps)
    if name == "sgm_uniform":
        return normal_sigmas(ms, steps, sgm=True)
    if name == "karras":
        return karras_sigmas(steps, ms.sigma_min, ms.sigma_max)
    if name == "exponential":
        return exponential_sigmas(steps, ms.sigma_min, ms.sigma_max)
    if name == "simple":
        return simple_sigmas(ms, steps)
    if name == "ddim_uniform":
        return ddim_uniform_sigmas(ms, steps)
    if name == "beta":
        return beta_sigmas(ms, steps)
    if name == "kl_optimal":
        return kl_optimal_sigmas(steps, ms.sigma_min, ms.sigma_max)
    if name == "linear_quadratic":
        return linear_quadratic_sigmas(ms, steps)
    raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULER_NAMES)}")


def total_steps_for(steps: int, denoise: float) -> int:
    """Length of the full schedule whose tail of ``steps`` steps a ``denoise`` run takes."""
    if denoise >= 1.0:
        return steps
    return int(steps / denoise + 1e-6)


def get_sigmas(name: str, model_sampling: ModelSampling, steps: int, denoise: float = 1.0) -> torch.Tensor:
    """Sigmas (float32 CPU, ``steps + 1`` values, decreasing, last 0) for scheduler ``name``."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if denoise <= 0.0:
        return torch.zeros(0, dtype=torch.float32)
    sigmas = _calculate(name, model_sampling, total_steps_for(steps, denoise))
    return sigmas[-(steps + 1):].clone()


def split_sigmas(sigmas: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split at ``step`` (ComfyUI SplitSigmas): ``sigmas[:step+1]`` and ``sigmas[step:]``; the
    first part ends at the sigma where the second starts (refiner two-pass)."""
    return sigmas[: step + 1].clone(), sigmas[step:].clone()


def advanced_range(sigmas: torch.Tensor, start_step: int | None, end_step: int | None,
                   force_full_denoise: bool) -> torch.Tensor | None:
    """KSamplerAdvanced's steps ``start_step..end_step`` of a schedule.

    Returns None when ``start_step`` is at or past the end (nothing to do: the latent passes
    through unchanged). With ``force_full_denoise`` a run that stops early ends at sigma 0.
    """
    sigmas = sigmas.clone()
    if end_step is not None and end_step < len(sigmas) - 1:
        sigmas = sigmas[: end_step + 1]
        if force_full_denoise:
            sigmas[-1] = 0
    if start_step is not None and start_step > 0:
        if start_step < len(sigmas) - 1:
            sigmas = sigmas[start_step:]
        else:
            return None
    return sigmas
