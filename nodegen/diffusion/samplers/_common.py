"""Helpers shared by the samplers (k-diffusion conventions).

A sampler walks ``x`` down ``sigmas`` (decreasing, last usually 0) calling
``model(x, sigma_batch, **extra_args) -> denoised``. ``callback`` receives
``{"x", "i", "sigma", "sigma_hat", "denoised"}`` once per step. ``noise_sampler(sigma, sigma_next)``
returns standard normal noise shaped like ``x`` for the step from ``sigma`` to ``sigma_next``
(ancestral / SDE samplers). Without one, the ancestral samplers and lcm draw fresh Gaussian noise
(:func:`default_noise_sampler`, seeded from ``extra_args["seed"]``); the SDE samplers (dpmpp_sde,
dpmpp_2m_sde, dpmpp_3m_sde) read a Brownian tree seeded the same way
(:mod:`nodegen.diffusion.brownian`).
"""

from __future__ import annotations

import torch


def to_d(x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """Karras ODE derivative dx/dsigma."""
    return (x - denoised) / append_dims(sigma, x.ndim)


def append_dims(t: torch.Tensor, ndim: int) -> torch.Tensor:
    t = torch.as_tensor(t)
    return t[(...,) + (None,) * (ndim - t.ndim)]


def get_ancestral_step(sigma_from: torch.Tensor, sigma_to: torch.Tensor, eta: float = 1.0):
    """(sigma_down, sigma_up) for an ancestral step from ``sigma_from`` to ``sigma_to``."""
    if not eta:
        return sigma_to, torch.zeros_like(sigma_to)
    sigma_up = torch.minimum(sigma_to, eta * (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5)
    sigma_down = (sigma_to**2 - sigma_up**2) ** 0.5
    return sigma_down, sigma_up


def default_noise_sampler(x: torch.Tensor, seed: int | None = None):
    """Standard normal noise from a CPU generator (seeded: reproducible on every device)."""
    gen = torch.Generator("cpu")
    if seed is not None:
        gen.manual_seed(int(seed))
    else:
        gen.seed()

    def sample(sigma, sigma_next):
        return torch.randn(x.shape, generator=gen, dtype=torch.float32).to(device=x.device, dtype=x.dtype)

    return sample


def s_in_like(x: torch.Tensor) -> torch.Tensor:
    return x.new_ones([x.shape[0]])


def churn(x: torch.Tensor, sigmas: torch.Tensor, i: int, s_churn: float, s_tmin: float, s_tmax: float,
          s_noise: float, noise_sampler) -> tuple[torch.Tensor, torch.Tensor]:
    """Karras et al.'s stochastic churn before step ``i`` (Algorithm 2): raise ``sigmas[i]`` to
    ``sigma_hat = sigma (1 + gamma)`` by adding noise; ``gamma = 0`` (the default ``s_churn``) leaves
    ``x`` as it is. Returns ``(x, sigma_hat)``. Shared by euler, heun, dpm_2 and heunpp2."""
    sigma = sigmas[i]
    n = len(sigmas) - 1
    gamma = min(s_churn / n, 2**0.5 - 1) if s_tmin <= sigma <= s_tmax else 0.0
    sigma_hat = sigma * (gamma + 1)
    if gamma > 0:
        eps = torch.randn_like(x) if noise_sampler is None else noise_sampler(sigma, sigmas[i + 1])
        x = x + eps * s_noise * (sigma_hat**2 - sigma**2) ** 0.5
    return x, sigma_hat


def report(callback, x, i, sigma, sigma_hat, denoised) -> None:
    if callback is not None:
        callback({"x": x, "i": i, "sigma": sigma, "sigma_hat": sigma_hat, "denoised": denoised})


def ensure_noise_sampler(noise_sampler, x, extra_args):
    if noise_sampler is not None:
        return noise_sampler
    return default_noise_sampler(x, (extra_args or {}).get("seed"))


def half_log_snr_fns(flow: bool = False):
    """``(lambda_of_sigma, sigma_of_lambda)`` for the half log-SNR ``lambda = log(alpha / sigma)``:
    ``alpha = 1`` for epsilon / v models, ``alpha = 1 - sigma`` for flow models (then
    ``alpha = sigma e^lambda`` either way)."""
    if flow:
        return (lambda s: s.logit().neg()), (lambda lam: lam.neg().sigmoid())
    return (lambda s: s.log().neg()), (lambda lam: lam.neg().exp())


def offset_first_sigma(sigmas: torch.Tensor, flow: bool) -> torch.Tensor:
    """Flow schedules start at sigma 1, where lambda is -inf: start at ``1 - 1e-4`` instead (as
    ComfyUI does for an unshifted schedule)."""
    if flow and len(sigmas) > 1 and sigmas[0] >= 1:
        sigmas = sigmas.clone()
        sigmas[0] = 1 - 1e-4
    return sigmas
