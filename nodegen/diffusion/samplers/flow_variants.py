"""Sampler variants for rectified-flow models (``x = (1 - sigma) * x0 + sigma * noise``), used
automatically when the model is a flow model (SD3 / Flux); euler, heun and the other ODE samplers
need none (with ``denoised = x - sigma * v`` their steps are already the flow ODE steps).

* euler_ancestral: ComfyUI's ``sample_euler_ancestral_RF`` (k-diffusion's ancestral step with the
  signal scale ``alpha = 1 - sigma``): step down to ``sigma_down = sigma_next * (1 + (sigma_next /
  sigma - 1) * eta)``, rescale to ``alpha_next / alpha_down`` and add noise of
  ``sqrt(sigma_next^2 - sigma_down^2 * alpha_next^2 / alpha_down^2)``.
* dpmpp_2m: DPM-Solver++(2M) in the half-log-SNR ``lambda = log((1 - sigma) / sigma)`` (as diffusers'
  ``DPMSolverMultistepScheduler`` with flow sigmas): ``x' = sigma'/sigma * x - alpha' * expm1(-h) * D``.
  Its first-order steps equal the k-diffusion formula; the second-order correction differs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from nodegen.diffusion.samplers import Sampler
from nodegen.diffusion.samplers._common import ensure_noise_sampler, report, s_in_like


@torch.no_grad()
def sample_euler_ancestral_rf(model, x, sigmas, extra_args=None, callback=None, disable=None,
                              noise_sampler=None, eta=1.0, s_noise=1.0):
    extra_args = extra_args or {}
    noise_sampler = ensure_noise_sampler(noise_sampler, x, extra_args)
    s_in = s_in_like(x)
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = model(x, sigma * s_in, **extra_args)
        report(callback, x, i, sigma, sigma, denoised)
        if sigma_next == 0:
            x = denoised
            continue
        sigma_down = sigma_next * (1 + (sigma_next / sigma - 1) * eta)
        alpha_next, alpha_down = 1 - sigma_next, 1 - sigma_down
        renoise = (sigma_next**2 - sigma_down**2 * alpha_next**2 / alpha_down**2).clamp_min(0) ** 0.5
        ratio = sigma_down / sigma
        x = ratio * x + (1 - ratio) * denoised
        if eta > 0:
            x = (alpha_next / alpha_down) * x + noise_sampler(sigma, sigma_next) * s_noise * renoise
    return x


@torch.no_grad()
def sample_dpmpp_2m_flow(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
    extra_args = extra_args or {}
    s_in = s_in_like(x)

    def lam(s):
        return ((1 - s) / s).log()

    old_denoised = None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = model(x, sigma * s_in, **extra_args)
        report(callback, x, i, sigma, sigma, denoised)
        if sigma_next == 0 or sigma >= 1:
            # the last step lands on the estimate; a step from pure noise (lambda = -inf) is Euler
            x = denoised if sigma_next == 0 else x + (x - denoised) / sigma * (sigma_next - sigma)
        else:
            h = lam(sigma_next) - lam(sigma)
            d = denoised
            if old_denoised is not None and sigmas[i - 1] < 1:
                r = (lam(sigma) - lam(sigmas[i - 1])) / h
                d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = (sigma_next / sigma) * x - (1 - sigma_next) * torch.expm1(-h) * d
        old_denoised = denoised
    return x


def _variant(fn: Callable) -> Callable[[Sampler], Sampler]:
    return lambda smp: Sampler(smp.name, fn, dict(smp.options))


#: sampler name -> the flow-model version of that Sampler
FLOW_VARIANTS: dict[str, Callable[[Sampler], Sampler]] = {
    "euler_ancestral": _variant(sample_euler_ancestral_rf),
    "dpmpp_2m": _variant(sample_dpmpp_2m_flow),
    # these take the flow geometry (alpha = 1 - sigma) as an option
    **{name: (lambda smp: Sampler(smp.name, smp.function, {**smp.options, "flow": True}))
       for name in ("er_sde", "seeds_2", "seeds_3", "sa_solver", "sa_solver_pece")},
}
