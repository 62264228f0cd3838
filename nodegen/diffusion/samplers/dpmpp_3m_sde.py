"""DPM-Solver++(3M) SDE: third-order multistep with SDE noise (eta = 1); with eta = 0 a
deterministic third-order multistep ODE solver. Noise: without a ``noise_sampler`` a Brownian tree
over the schedule's sigmas seeded from ``extra_args["seed"]`` (:mod:`nodegen.diffusion.brownian`),
as in k-diffusion and ComfyUI."""

from __future__ import annotations

import torch

from nodegen.diffusion.brownian import ensure_brownian_noise_sampler
from nodegen.diffusion.samplers._common import report, s_in_like


@torch.no_grad()
def sample_dpmpp_3m_sde(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None,
                        eta=1.0, s_noise=1.0):
    extra_args = extra_args or {}
    noise_sampler = ensure_brownian_noise_sampler(noise_sampler, x, sigmas, extra_args)
    s_in = s_in_like(x)
    denoised_1 = denoised_2 = None
    h = h_1 = h_2 = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        report(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            t, s = -sigmas[i].log(), -sigmas[i + 1].log()
            h = s - t
            h_eta = h * (eta + 1)
            x = torch.exp(-h_eta) * x + (-h_eta).expm1().neg() * denoised
            if h_2 is not None:
                r0, r1 = h_1 / h, h_2 / h
                d1_0 = (denoised - denoised_1) / r0
                d1_1 = (denoised_1 - denoised_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                phi_3 = phi_2 / h_eta - 0.5
                x = x + phi_2 * d1 - phi_3 * d2
            elif h_1 is not None:
                r = h_1 / h
                d = (denoised - denoised_1) / r
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                x = x + phi_2 * d
            if eta:
                x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] * (-2 * h * eta).expm1().neg().sqrt() * s_noise
        denoised_1, denoised_2 = denoised, denoised_1
        h_1, h_2 = h, h_1
    return x
