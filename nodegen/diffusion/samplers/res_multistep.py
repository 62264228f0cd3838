"""RES multistep (Zhang et al. 2023, "Improved order analysis and design of exponential
integrator for diffusion models", arXiv:2308.02157, the second-order multistep method; as
ComfyUI's ``res_multistep``): an exponential-integrator step in log-sigma using the previous
denoised prediction; Euler on the first step and on the step to sigma 0.

Variants: ``res_multistep_ancestral`` (step to ``sigma_down`` plus noise, eta 1), and the CFG++
forms (``*_cfg_pp``) that renoise along the unconditional prediction.
"""

from __future__ import annotations

import torch

from nodegen.diffusion.samplers._common import (
    ensure_noise_sampler,
    get_ancestral_step,
    report,
    s_in_like,
    to_d,
)
from nodegen.diffusion.samplers.cfg_pp import uncond_of


def _phi1(t: torch.Tensor) -> torch.Tensor:
    return torch.expm1(t) / t


def _phi2(t: torch.Tensor) -> torch.Tensor:
    return (_phi1(t) - 1.0) / t


@torch.no_grad()
def res_multistep(model, x, sigmas, extra_args=None, callback=None, noise_sampler=None, *, eta: float,
                  s_noise: float = 1.0, cfg_pp: bool = False):
    extra_args = extra_args or {}
    noise_sampler = ensure_noise_sampler(noise_sampler, x, extra_args) if eta else noise_sampler
    uncond = uncond_of(model) if cfg_pp else None
    s_in = s_in_like(x)
    old_denoised = old_sigma_down = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        u = uncond(denoised) if uncond is not None else denoised
        sigma_down, sigma_up = get_ancestral_step(sigmas[i], sigmas[i + 1], eta=eta)
        report(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigma_down == 0 or old_denoised is None:
            if cfg_pp:
                x = denoised + to_d(x, sigmas[i], u) * sigma_down
            else:
                x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        else:
            t, t_old = -sigmas[i].log(), -old_sigma_down.log()
            t_next, t_prev = -sigma_down.log(), -sigmas[i - 1].log()
            h = t_next - t
            c2 = (t_prev - t_old) / h
            p1, p2 = _phi1(-h), _phi2(-h)
            b1 = torch.nan_to_num(p1 - p2 / c2, nan=0.0)
            b2 = torch.nan_to_num(p2 / c2, nan=0.0)
            if cfg_pp:
                x = x + (denoised - u)
            x = torch.exp(-h) * x + h * (b1 * u + b2 * old_denoised)
        if sigmas[i + 1] > 0 and eta:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
        old_denoised, old_sigma_down = u, sigma_down
    return x


def sample_res_multistep(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None,
                         s_noise=1.0):
    return res_multistep(model, x, sigmas, extra_args, callback, noise_sampler, eta=0.0, s_noise=s_noise)


def sample_res_multistep_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None,
                                noise_sampler=None, s_noise=1.0):
    return res_multistep(model, x, sigmas, extra_args, callback, noise_sampler, eta=0.0, s_noise=s_noise,
                         cfg_pp=True)


def sample_res_multistep_ancestral(model, x, sigmas, extra_args=None, callback=None, disable=None,
                                   noise_sampler=None, eta=1.0, s_noise=1.0):
    return res_multistep(model, x, sigmas, extra_args, callback, noise_sampler, eta=eta, s_noise=s_noise)


def sample_res_multistep_ancestral_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None,
                                          noise_sampler=None, eta=1.0, s_noise=1.0):
    return res_multistep(model, x, sigmas, extra_args, callback, noise_sampler, eta=eta, s_noise=s_noise,
                         cfg_pp=True)
