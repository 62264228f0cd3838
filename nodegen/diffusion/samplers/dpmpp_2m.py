"""DPM-Solver++(2M) (Lu et al. 2022), multistep second order in log-sigma; first order on the
first step and on the last step to sigma 0. Equals diffusers' ``DPMSolverMultistepScheduler``
(``algorithm_type="dpmsolver++"``, ``solver_order=2``, ``solver_type="midpoint"``)."""

from __future__ import annotations

import torch

from nodegen.diffusion.samplers._common import report, s_in_like


@torch.no_grad()
def sample_dpmpp_2m(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
    extra_args = extra_args or {}
    s_in = s_in_like(x)

    def t_fn(sigma):
        return sigma.log().neg()

    def sigma_fn(t):
        return t.neg().exp()

    old_denoised = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        report(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            t, t_next = t_fn(sigmas[i]), t_fn(sigmas[i + 1])
            h = t_next - t
            if old_denoised is None:
                x = (sigma_fn(t_next) / sigma_fn(t)) * x - (-h).expm1() * denoised
            else:
                h_last = t - t_fn(sigmas[i - 1])
                r = h_last / h
                denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
                x = (sigma_fn(t_next) / sigma_fn(t)) * x - (-h).expm1() * denoised_d
        old_denoised = denoised
    return x
