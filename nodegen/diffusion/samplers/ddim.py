"""DDIM. In sigma space a deterministic DDIM step (eta = 0) *is* an Euler step:
``x_prev/sqrt(a_prev) = x0 + sigma_prev * eps`` with ``sigma = sqrt((1-a)/a)``; so on the same
sigmas this equals diffusers' ``DDIMScheduler`` (eta = 0). With ``eta > 0`` the stochastic DDIM
step is taken as Euler ancestral with that eta (as ComfyUI does). Use the ``ddim_uniform``
scheduler for DDIM's own timestep spacing."""

from __future__ import annotations

import torch

from nodegen.diffusion.samplers.euler import sample_euler
from nodegen.diffusion.samplers.euler_ancestral import sample_euler_ancestral


@torch.no_grad()
def sample_ddim(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None, eta=0.0):
    if eta:
        return sample_euler_ancestral(model, x, sigmas, extra_args, callback, disable, noise_sampler, eta=eta)
    return sample_euler(model, x, sigmas, extra_args, callback, disable)
