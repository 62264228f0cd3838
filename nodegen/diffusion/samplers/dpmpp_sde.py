"""DPM-Solver++ (stochastic, 2 model calls per step; k-diffusion's / ComfyUI's "DPM++ SDE").

Noise: without a ``noise_sampler`` it comes from a Brownian tree over the schedule's sigmas
seeded from ``extra_args["seed"]`` (:mod:`nodegen.diffusion.brownian`), as in k-diffusion and
ComfyUI; with the same tree (batch of 1) this is diffusers' ``DPMSolverSDEScheduler(
noise_sampler_seed=seed)``. A given ``noise_sampler(sigma, sigma_next)`` is used instead."""

from __future__ import annotations

import torch

from nodegen.diffusion.brownian import ensure_brownian_noise_sampler
from nodegen.diffusion.samplers._common import (
    get_ancestral_step,
    report,
    s_in_like,
    to_d,
)


@torch.no_grad()
def sample_dpmpp_sde(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None,
                     eta=1.0, s_noise=1.0, r=1 / 2):
    extra_args = extra_args or {}
    noise_sampler = ensure_brownian_noise_sampler(noise_sampler, x, sigmas, extra_args)
    s_in = s_in_like(x)

    def sigma_fn(t):
        return t.neg().exp()

    def t_fn(sigma):
        return sigma.log().neg()

    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        report(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = x + to_d(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
            continue
        t, t_next = t_fn(sigmas[i]), t_fn(sigmas[i + 1])
        h = t_next - t
        s = t + h * r
        fac = 1 / (2 * r)
        # step 1: to the intermediate point s
        sd, su = get_ancestral_step(sigma_fn(t), sigma_fn(s), eta)
        s_ = t_fn(sd)
        x_2 = (sigma_fn(s_) / sigma_fn(t)) * x - (t - s_).expm1() * denoised
        x_2 = x_2 + noise_sampler(sigma_fn(t), sigma_fn(s)) * s_noise * su
        denoised_2 = model(x_2, sigma_fn(s) * s_in, **extra_args)
        # step 2: to t_next with the combined estimate
        sd, su = get_ancestral_step(sigma_fn(t), sigma_fn(t_next), eta)
        t_next_ = t_fn(sd)
        denoised_d = (1 - fac) * denoised + fac * denoised_2
        x = (sigma_fn(t_next_) / sigma_fn(t)) * x - (t - t_next_).expm1() * denoised_d
        x = x + noise_sampler(sigma_fn(t), sigma_fn(t_next)) * s_noise * su
    return x
