"""Sampling nodes: KSampler, KSamplerAdvanced, SamplerCustom and the SAMPLER / SIGMAS helpers.

Thin wrappers over :func:`nodegen.diffusion.sample.sample`; the seed rule (CPU noise, batch
items, step noise) is documented in :mod:`nodegen.diffusion.noise`.
"""

from __future__ import annotations

from nodegen.diffusion.names import SAMPLER_NAMES, SCHEDULER_NAMES
from nodegen.kernel import types as T
from nodegen.kernel.lazy import lazy_import
from nodegen.kernel.node import Input, Output, node

torch = lazy_import("torch")


def _steps(default=20):
    return Input.int("steps", default, min=1, max=10000, description="Number of sampling steps")


def _sigma_range():
    """The highest and lowest noise level of a schedule (defaults: SD1's)."""
    return [Input.float("sigma_max", 14.614642, min=0.0, max=5000.0, step=0.01),
            Input.float("sigma_min", 0.0291675, min=0.0, max=5000.0, step=0.01)]


def _cfg():
    return Input.float("cfg", 8.0, min=0.0, max=100.0, step=0.1,
                       description="Classifier-free guidance scale (1 = no negative prompt)")


def _sampler_name():
    return Input.choice("sampler_name", SAMPLER_NAMES, "euler")


def _scheduler():
    return Input.choice("scheduler", SCHEDULER_NAMES, "normal")


def _cond_inputs():
    return [Input.link("positive", T.CONDITIONING), Input.link("negative", T.CONDITIONING)]


def _device(ctx):
    return getattr(ctx, "device", None)


def run_sample(ctx, model, positive, negative, latent_image: dict, seed: int, schedule, cfg: float, sampler, *,
               add_noise: bool = True):
    """What every sampler node runs: the latent moved into the model family's scale (a latent
    encoded with an assumed VAE scale), sampled, and both outputs marked with the model's family
    (:mod:`nodegen.diffusion.latent_scale`)."""
    from nodegen.diffusion.latent_scale import to_model_scale, with_family
    from nodegen.diffusion.sample import Sampled, sample

    done = sample(model, positive, negative, to_model_scale(model, latent_image), seed, schedule, cfg, sampler,
                  add_noise=add_noise, ctx=ctx, device=_device(ctx))
    return Sampled(with_family(model, done.latent), with_family(model, done.denoised))


@node("KSampler", category="sampling",
      description="Denoise a latent with a model, prompts, sampler and schedule.",
      inputs=[Input.link("model", T.MODEL), Input.seed("seed"), _steps(), _cfg(), _sampler_name(),
              _scheduler(), *_cond_inputs(), Input.link("latent_image", T.LATENT),
              Input.float("denoise", 1.0, min=0.0, max=1.0, step=0.01,
                          description="1 = from pure noise; less keeps more of the input latent")],
      outputs=[Output("latent", T.LATENT)], keywords=("sample", "generate", "diffusion"))
def ksampler(ctx, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise):
    from nodegen.diffusion.sample import Steps

    return run_sample(ctx, model, positive, negative, latent_image, seed, Steps(steps, scheduler, denoise), cfg,
                      sampler_name).latent


@node("KSamplerAdvanced", category="sampling",
      description="KSampler with control over noise and the range of steps (multi-pass, refiner).",
      inputs=[Input.link("model", T.MODEL), Input.bool("add_noise", True), Input.seed("noise_seed"), _steps(),
              _cfg(), _sampler_name(), _scheduler(), *_cond_inputs(), Input.link("latent_image", T.LATENT),
              Input.int("start_at_step", 0, min=0, max=10000), Input.int("end_at_step", 10000, min=0, max=10000),
              Input.bool("return_with_leftover_noise", False)],
      outputs=[Output("latent", T.LATENT)])
def ksampler_advanced(ctx, model, add_noise, noise_seed, steps, cfg, sampler_name, scheduler, positive,
                      negative, latent_image, start_at_step, end_at_step, return_with_leftover_noise):
    from nodegen.diffusion.sample import Steps

    schedule = Steps(steps, scheduler, start=start_at_step, end=end_at_step,
                     leftover_noise=return_with_leftover_noise)
    return run_sample(ctx, model, positive, negative, latent_image, noise_seed, schedule, cfg, sampler_name,
                      add_noise=add_noise).latent


@node("SamplerCustom", category="sampling/custom",
      description="Sample with an explicit SAMPLER and SIGMAS.",
      inputs=[Input.link("model", T.MODEL), Input.bool("add_noise", True), Input.seed("noise_seed"), _cfg(),
              *_cond_inputs(), Input.link("sampler", T.SAMPLER), Input.link("sigmas", T.SIGMAS),
              Input.link("latent_image", T.LATENT)],
      outputs=[Output("output", T.LATENT), Output("denoised_output", T.LATENT)])
def sampler_custom(ctx, model, add_noise, noise_seed, cfg, positive, negative, sampler, sigmas, latent_image):
    sig = torch.as_tensor(sigmas, dtype=torch.float32).reshape(-1)
    if len(sig) > 1 and not bool((sig[1:] <= sig[:-1]).all()):
        raise ValueError("input 'sigmas' must be decreasing")
    done = run_sample(ctx, model, positive, negative, latent_image, noise_seed, sig, cfg, sampler,
                      add_noise=add_noise)
    return {"output": done.latent, "denoised_output": done.denoised}


@node("KSamplerSelect", category="sampling/custom", description="Choose a sampling algorithm.",
      inputs=[_sampler_name()], outputs=[Output("sampler", T.SAMPLER)])
def ksampler_select(ctx, sampler_name):
    from nodegen.diffusion.samplers import get_sampler

    return get_sampler(sampler_name)


@node("BasicScheduler", category="sampling/custom", description="The sigmas of a named schedule.",
      inputs=[Input.link("model", T.MODEL), _scheduler(), _steps(),
              Input.float("denoise", 1.0, min=0.0, max=1.0, step=0.01)],
      outputs=[Output("sigmas", T.SIGMAS)])
def basic_scheduler(ctx, model, scheduler, steps, denoise):
    from nodegen.diffusion.model_sampling import ModelSampling
    from nodegen.diffusion.sample import model_sampling_for
    from nodegen.diffusion.schedules import get_sigmas

    ms: ModelSampling = model_sampling_for(model)
    return get_sigmas(scheduler, ms, steps, denoise)


def _sigma_range_check(sigma_max, sigma_min):
    if sigma_min <= 0:
        raise ValueError("input 'sigma_min' must be greater than 0")
    if sigma_max <= sigma_min:
        raise ValueError("input 'sigma_max' must be greater than 'sigma_min'")


@node("KarrasScheduler", category="sampling/custom", description="Karras et al. (2022) noise levels.",
      inputs=[_steps(), *_sigma_range(),
              Input.float("rho", 7.0, min=0.0, max=100.0, step=0.01)],
      outputs=[Output("sigmas", T.SIGMAS)])
def karras_scheduler(ctx, steps, sigma_max, sigma_min, rho):
    from nodegen.diffusion.schedules import karras_sigmas

    _sigma_range_check(sigma_max, sigma_min)
    return karras_sigmas(steps, sigma_min, sigma_max, rho)


@node("ExponentialScheduler", category="sampling/custom", description="Noise levels evenly spaced in log-sigma.",
      inputs=[_steps(), *_sigma_range()],
      outputs=[Output("sigmas", T.SIGMAS)])
def exponential_scheduler(ctx, steps, sigma_max, sigma_min):
    from nodegen.diffusion.schedules import exponential_sigmas

    _sigma_range_check(sigma_max, sigma_min)
    return exponential_sigmas(steps, sigma_min, sigma_max)


@node("PolyexponentialScheduler", category="sampling/custom",
      description="Noise levels falling in log-sigma as a power of the step (rho 1: exponential); "
                  "k-diffusion's polyexponential schedule.",
      inputs=[_steps(), *_sigma_range(),
              Input.float("rho", 1.0, min=0.0, max=100.0, step=0.01)],
      outputs=[Output("sigmas", T.SIGMAS)])
def polyexponential_scheduler(ctx, steps, sigma_max, sigma_min, rho):
    from nodegen.diffusion.schedules import polyexponential_sigmas

    _sigma_range_check(sigma_max, sigma_min)
    return polyexponential_sigmas(steps, sigma_min, sigma_max, rho)


@node("VPScheduler", category="sampling/custom",
      description="The variance-preserving SDE's noise levels (Song et al. 2021; k-diffusion's get_sigmas_vp).",
      inputs=[_steps(), Input.float("beta_d", 19.9, min=0.0, max=5000.0, step=0.01),
              Input.float("beta_min", 0.1, min=0.0, max=5000.0, step=0.01),
              Input.float("eps_s", 0.001, min=0.0, max=1.0, step=0.0001)],
      outputs=[Output("sigmas", T.SIGMAS)])
def vp_scheduler(ctx, steps, beta_d, beta_min, eps_s):
    from nodegen.diffusion.schedules import vp_sigmas

    if beta_d <= 0 and beta_min <= 0:
        raise ValueError("inputs 'beta_d' and 'beta_min' cannot both be 0: every noise level would be 0")
    return vp_sigmas(steps, beta_d, beta_min, eps_s)


@node("SplitSigmas", category="sampling/custom",
      description="Split a schedule at a step: the first part ends where the second starts.",
      inputs=[Input.link("sigmas", T.SIGMAS), Input.int("step", 0, min=0, max=10000)],
      outputs=[Output("high_sigmas", T.SIGMAS), Output("low_sigmas", T.SIGMAS)])
def split_sigmas_node(ctx, sigmas, step):
    from nodegen.diffusion.schedules import split_sigmas

    high, low = split_sigmas(torch.as_tensor(sigmas, dtype=torch.float32), step)
    return {"high_sigmas": high, "low_sigmas": low}
