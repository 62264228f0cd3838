"""DPM-Solver++(2M) SDE (midpoint or heun variant). With eta = 1 and the midpoint variant this is
diffusers' ``DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++")`` given the same noise.

Noise: without a ``noise_sampler`` it comes from a Brownian tree over the schedule's sigmas seeded
from ``extra_args["seed"]`` (:mod:`nodegen.diffusion.brownian`), as in k-diffusion and ComfyUI
(diffusers' scheduler instead draws i.i.d. Gaussian noise from its generator; pass a Gaussian
``noise_sampler`` to reproduce that)."""

from __future__ import annotations

import torch

from nodegen.diffusion.brownian import ensure_brownian_noise_sampler
from nodegen.diffusion.samplers._common import report, s_in_like


@torch.no_grad()
def sample_dpmpp_2m_sde(model, x, sigmas, extra_args=None, callback=None, disable=None,
                        noise_sampler=None, eta=1.0, s_noise=1.0, solver_type="midpoint"):
    if solver_type not in ("heun", "midpoint"):
        raise ValueError("solver_type must be 'heun' or 'midpoint'")
    extra_args = extra_args or {}
    noise_sampler = ensure_brownian_noise_sampler(noise_sampler, x, sigmas, extra_args)
    s_in = s_in_like(x)
    old_denoised = None
    h_last = None
    h = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        report(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            t, s = -sigmas[i].log(), -sigmas[i + 1].log()
            h = s - t
            eta_h = eta * h
            x = sigmas[i + 1] / sigmas[i] * (-eta_h).exp() * x + (-h - eta_h).expm1().neg() * denoised
            if old_denoised is not None:
                r = h_last / h
                if solver_type == "heun":
                    x = x + ((-h - eta_h).expm1().neg() / (-h - eta_h) + 1) * (1 / r) * (denoised - old_denoised)
                else:
                    x = x + 0.5 * (-h - eta_h).expm1().neg() * (1 / r) * (denoised - old_denoised)
            if eta:
                x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] * (-2 * eta_h).expm1().neg().sqrt() * s_noise
        old_denoised = denoised
        h_last = h
    return x
