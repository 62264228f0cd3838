"""One sampling run: noise, schedule, denoiser, sampler, progress and cancellation.

:func:`sample` is what the KSampler nodes call. Progress is reported after every step through
``ctx.progress(step, total, preview)`` (which raises ``nodegen.kernel.context.Cancelled`` when the run
was cancelled, stopping the sampler between steps) and through an optional ``callback(step,
total, info)``. ``preview`` is a cheap latent->RGB projection of the current denoised estimate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from nodegen.diffusion.brownian import brownian_noise_sampler_for
from nodegen.diffusion.denoiser import Denoiser
from nodegen.diffusion.model_sampling import ModelSampling
from nodegen.diffusion.noise import GeneratorNoiseSampler, prepare_noise
from nodegen.diffusion.preview import latent_preview
from nodegen.diffusion.samplers import Sampler, get_sampler
from nodegen.diffusion.schedules import advanced_range, get_sigmas


def model_sampling_for(model) -> ModelSampling:
    opts = getattr(model, "options", {}) or {}
    return ModelSampling(model.alphas_cumprod, getattr(model, "prediction_type", "epsilon"),
                         discrete_timesteps=opts.get("discrete_timesteps", True))


def _module_dtype(module) -> torch.dtype:
    try:
        return next(module.parameters()).dtype
    except (StopIteration, AttributeError):
        return torch.float32


def _module_device(module) -> torch.device:
    try:
        return next(module.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")


def sample(model, positive: list, negative: list | None, latent: dict, seed: int, steps: int | None = None,
           cfg: float = 8.0, sampler: str | Sampler = "euler", scheduler: str = "normal",
           denoise: float = 1.0, *, sigmas: torch.Tensor | None = None, start_step: int | None = None,
           end_step: int | None = None, add_noise: bool = True, return_with_leftover_noise: bool = False,
           callback: Callable[[int, int, dict], Any] | None = None, ctx=None, device=None,
           dtype: torch.dtype | None = None, preview: bool = True, return_denoised: bool = False):
    """Sample ``latent`` (a LATENT dict) and return a new LATENT dict (``noise_mask`` kept).

    Either ``steps`` + ``scheduler`` + ``denoise`` or explicit ``sigmas``. ``start_step`` /
    ``end_step`` / ``return_with_leftover_noise`` are KSamplerAdvanced's. With
    ``return_denoised`` the result is ``(latent, denoised_latent)`` where the second holds the
    model's last denoised estimate (SamplerCustom's ``denoised_output``).
    """
    if not isinstance(latent, dict) or "samples" not in latent:
        raise TypeError("latent must be a LATENT dict with 'samples'")
    samples = latent["samples"]
    if samples.ndim != 4:
        raise ValueError(f"latent samples must be [B,C,h,w], got shape {tuple(samples.shape)}")
    ms = model_sampling_for(model)
    if sigmas is None:
        if steps is None:
            raise ValueError("give steps (with a scheduler) or sigmas")
        sigmas = get_sigmas(scheduler, ms, int(steps), float(denoise))
        sigmas = advanced_range(sigmas, start_step, end_step, not return_with_leftover_noise)
    sigmas = None if sigmas is None else torch.as_tensor(sigmas, dtype=torch.float32).cpu()
    out = dict(latent)
    if sigmas is None or len(sigmas) < 2:
        return (out, dict(out)) if return_denoised else out
    smp = sampler if isinstance(sampler, Sampler) else get_sampler(sampler)

    noise, gen = prepare_noise(samples, seed, latent.get("batch_index"))  # always drawn: the step noise continues after it
    if not add_noise:
        noise = torch.zeros_like(noise)
    noise_mask = latent.get("noise_mask")
    total = len(sigmas) - 1
    family = getattr(model, "family", "sd1")
    last_denoised: list[torch.Tensor] = []

    with model.use(device, dtype) as unet:
        dev = _module_device(unet)
        dt = _module_dtype(unet)
        lat = samples.to(dev, torch.float32)
        noise_d = noise.to(dev)
        x = ms.noise_scaling(float(sigmas[0]), noise_d, lat) if add_noise else lat.clone()
        den = Denoiser(model, unet, positive, negative, cfg, latent_image=lat, noise=noise_d,
                       noise_mask=noise_mask, device=dev, dtype=dt, model_sampling=ms)
        if smp.brownian:
            # SDE samplers: a Brownian tree per item seeded seed + (its index in the batch), as
            # k-diffusion / ComfyUI (nodegen.diffusion.brownian); None (a schedule with a single
            # positive sigma, which draws no step noise) leaves it to the sampler's default
            bi = latent.get("batch_index")
            seeds = [int(seed) + int(k) for k in bi] if bi is not None else int(seed)
            noise_sampler = brownian_noise_sampler_for(x, sigmas, seeds)
        else:
            noise_sampler = GeneratorNoiseSampler(gen, samples.shape, dev, torch.float32)

        def on_step(info: dict) -> None:
            step = int(info["i"]) + 1
            last_denoised[:] = [info["denoised"]]
            if callback is not None:
                callback(step, total, info)
            if ctx is not None:
                pv = latent_preview(info["denoised"], family) if preview else None
                ctx.progress(step, total, pv)

        if ctx is not None:
            ctx.check_cancelled()
        result = smp(den, x, sigmas.to(dev), extra_args={"seed": seed}, callback=on_step,
                     noise_sampler=noise_sampler)
    out["samples"] = result.float()
    if return_denoised:
        dn = dict(out)
        dn["samples"] = (last_denoised[0] if last_denoised else result).float()
        return out, dn
    return out
