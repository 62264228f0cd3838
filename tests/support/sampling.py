"""Tests call sampling with KSampler-style keywords; this maps them onto
:func:`nodegen.diffusion.sample.sample` (a :class:`Steps` schedule or explicit sigmas)."""

from __future__ import annotations

from nodegen.diffusion.sample import Steps
from nodegen.diffusion.sample import sample as _sample


def sample(model, positive, negative, latent, seed, steps=None, cfg=8.0, sampler="euler", scheduler="normal",
           denoise=1.0, *, sigmas=None, start_step=None, end_step=None, return_with_leftover_noise=False,
           **kw):
    """The new LATENT (KSampler-style keywords)."""
    schedule = sigmas if sigmas is not None else Steps(steps, scheduler, denoise, start_step, end_step,
                                                       return_with_leftover_noise)
    return _sample(model, positive, negative, latent, seed, schedule, cfg, sampler, **kw).latent
