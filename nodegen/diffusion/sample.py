"""One sampling run: noise, schedule, denoiser, sampler, progress and cancellation.

:func:`sample` is what the KSampler nodes call: a LATENT, a schedule (:class:`Steps` or explicit
sigmas), guidance and a sampler in; a :class:`Sampled` out. Progress is reported after every step through
``ctx.progress(step, total, preview)`` (which raises ``nodegen.kernel.context.Cancelled`` when the run
was cancelled, stopping the sampler between steps) and through an optional ``callback(step,
total, info)``. ``preview`` is the current denoised estimate as an image, made only while someone
listens (``ctx.wants_preview``), by the run's preview method (:mod:`nodegen.diffusion.previewer`: a TAESD
decode, a cheap latent->RGB projection, or none).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from nodegen.diffusion.brownian import brownian_noise_sampler_for
from nodegen.diffusion.continuous_sampling import ContinuousModelSampling
from nodegen.diffusion.denoiser import Denoiser
from nodegen.diffusion.flow_sampling import FlowModelSampling, flow_sampling_for
from nodegen.diffusion.latent_formats import LATENT_CHANNELS, format_of, latent_in, latent_out
from nodegen.diffusion.model_sampling import ModelSampling, discrete_sampling
from nodegen.diffusion.noise import GeneratorNoiseSampler, prepare_noise
from nodegen.diffusion.previewer import Previewer
from nodegen.diffusion.samplers import Sampler, get_sampler
from nodegen.diffusion.samplers.flow_variants import FLOW_VARIANTS
from nodegen.diffusion.schedules import advanced_range, get_sigmas
from nodegen.diffusion.step_context import patch_generator, setting
from nodegen.models import gligen


def model_sampling_for(model) -> ModelSampling | FlowModelSampling | ContinuousModelSampling:
    opts = getattr(model, "options", {}) or {}
    if getattr(model, "prediction_type", None) == "flow":
        return flow_sampling_for(model)
    if opts.get("continuous_sampling") is not None:  # set by ModelSamplingContinuousEDM / ...V
        return ContinuousModelSampling(**opts["continuous_sampling"])
    return discrete_sampling(model.alphas_cumprod, getattr(model, "prediction_type", "epsilon"),
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


@dataclass(frozen=True)
class Steps:
    """A schedule given as steps of a named scheduler (KSampler's and KSamplerAdvanced's inputs).

    ``start`` / ``end`` keep part of the steps; ``leftover_noise`` keeps the last sigma of a
    partial run (KSamplerAdvanced's ``return_with_leftover_noise``) instead of ending on zero."""

    steps: int
    scheduler: str = "normal"
    denoise: float = 1.0
    start: int | None = None
    end: int | None = None
    leftover_noise: bool = False

    def sigmas(self, ms: ModelSampling) -> torch.Tensor:
        sigmas = get_sigmas(self.scheduler, ms, int(self.steps), float(self.denoise))
        return advanced_range(sigmas, self.start, self.end, not self.leftover_noise)


@dataclass
class Sampled:
    """What a sampling run gives: the new LATENT and the model's last denoised estimate (as a
    LATENT; SamplerCustom's ``denoised_output``)."""

    latent: dict
    denoised: dict


def sample(model, positive: list, negative: list | None, latent: dict, seed: int,
           schedule: Steps | torch.Tensor, cfg: float = 8.0, sampler: str | Sampler = "euler", *,
           add_noise: bool = True, ctx=None, callback: Callable[[int, int, dict], Any] | None = None,
           device=None, dtype: torch.dtype | None = None, preview: bool = True) -> Sampled:
    """Sample ``latent`` (a LATENT dict; ``noise_mask`` and ``batch_index`` are kept) on ``schedule``
    (:class:`Steps`, or explicit sigmas) with classifier-free guidance ``cfg``.

    Progress goes to ``ctx.progress`` (which also cancels) and to ``callback(step, total, info)``.
    """
    samples = _checked_samples(latent)
    check_latent_channels(model, samples)
    family = getattr(model, "family", "sd1")
    fmt = format_of(model)
    ms = model_sampling_for(model)
    sigmas = _sigmas(schedule, ms)
    if len(sigmas) < 2:
        return Sampled(dict(latent), dict(latent))
    smp = sampler if isinstance(sampler, Sampler) else get_sampler(sampler)
    if isinstance(ms, FlowModelSampling) and smp.name in FLOW_VARIANTS:
        smp = FLOW_VARIANTS[smp.name](smp)
    noise, gen = prepare_noise(samples, seed, latent.get("batch_index"))  # always drawn: the step noise continues after it
    if not add_noise:
        noise = torch.zeros_like(noise)
    patch_gen = torch.Generator().set_state(gen.get_state())  # ComfyUI's global generator after the noise
    with setting(patch_generator, patch_gen), model.use(device, dtype) as unet, \
            gligen.installed(unet, [*positive, *(negative or [])]):
        dev = _module_device(unet)
        dt = getattr(unet, "_nodegen_compute_dtype", None) or _module_dtype(unet)  # fp8 storage computes wider
        lat = latent_in(fmt, samples.to(dev, torch.float32))
        noise_d = noise.to(dev)
        x = ms.noise_scaling(float(sigmas[0]), noise_d, lat) if add_noise else lat.clone()
        den = Denoiser(model, unet, positive, negative, cfg, latent_image=lat, noise=noise_d,
                       noise_mask=latent.get("noise_mask"), device=dev, dtype=dt, model_sampling=ms, ctx=ctx)
        den.sigmas = sigmas  # the whole schedule (differential diffusion reads it)
        den.seed = int(seed) if isinstance(seed, int) else 0
        noise_sampler = _noise_sampler(smp, x, sigmas, seed, latent, gen, samples.shape, dev)
        last_denoised: list[torch.Tensor] = []
        previewer = Previewer(ctx, family, fmt) if preview and ctx is not None else None
        on_step = _step_reporter(len(sigmas) - 1, last_denoised, callback, ctx, previewer)
        if ctx is not None:
            ctx.check_cancelled()
        result = smp(den, x, sigmas.to(dev), extra_args={"seed": seed}, callback=on_step,
                     noise_sampler=noise_sampler)
    out = dict(latent, samples=latent_out(fmt, result.float()))
    return Sampled(out, dict(out, samples=latent_out(fmt, (last_denoised[0] if last_denoised else result).float())))


def check_latent_channels(model, samples: torch.Tensor) -> None:
    """A clear error when a latent does not fit the model (e.g. 4-channel latents for SD3/Flux)."""
    want = LATENT_CHANNELS.get(getattr(model, "family", ""))
    if want is not None and samples.shape[1] != want:
        raise ValueError(f"the latent has {samples.shape[1]} channels, but a {model.family} model takes {want} "
                         f"(use EmptySD3LatentImage and the model's own {want}-channel VAE)")


def _checked_samples(latent: dict) -> torch.Tensor:
    if not isinstance(latent, dict) or "samples" not in latent:
        raise TypeError("latent must be a LATENT dict with 'samples'")
    samples = latent["samples"]
    if samples.ndim != 4:
        raise ValueError(f"latent samples must be [B,C,h,w], got shape {tuple(samples.shape)}")
    return samples


def _sigmas(schedule: Steps | torch.Tensor, ms: ModelSampling) -> torch.Tensor:
    """The sigmas to walk (empty when the schedule leaves nothing to do, e.g. a start past the end)."""
    sigmas = schedule.sigmas(ms) if isinstance(schedule, Steps) else schedule
    if sigmas is None:
        return torch.zeros(0)
    return torch.as_tensor(sigmas, dtype=torch.float32).cpu().reshape(-1)


def _noise_sampler(smp: Sampler, x: torch.Tensor, sigmas: torch.Tensor, seed: int, latent: dict, gen,
                   shape, dev):
    """The step noise: a Brownian tree per item for SDE samplers (seeded ``seed + batch index``, as
    k-diffusion / ComfyUI: :mod:`nodegen.diffusion.brownian`), else the seed's generator, which
    continues after the initial noise."""
    if smp.brownian:
        bi = latent.get("batch_index")
        seeds = [int(seed) + int(k) for k in bi] if bi is not None else int(seed)
        return brownian_noise_sampler_for(x, sigmas, seeds)
    return GeneratorNoiseSampler(gen, shape, dev, torch.float32)


def _step_reporter(total: int, last_denoised: list, callback, ctx, previewer: Previewer | None):
    """The sampler's per-step callback: keeps the last denoised estimate, reports progress with a
    preview of it (and so lets the user cancel between steps)."""
    def on_step(info: dict) -> None:
        step = int(info["i"]) + 1
        last_denoised[:] = [info["denoised"]]
        if callback is not None:
            callback(step, total, info)
        if ctx is not None:
            wanted = previewer is not None and getattr(ctx, "wants_preview", True)  # no listener: none made
            ctx.progress(step, total, previewer(step, total, info["denoised"]) if wanted else None)
    return on_step
