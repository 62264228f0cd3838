"""SIGMAS helpers for custom sampling: published schedules (Align Your Steps, Laplace) and
schedule surgery (flip, split by denoise)."""

from __future__ import annotations

from nodegen.diffusion.names import AYS_MODEL_TYPES
from nodegen.kernel import types as T
from nodegen.kernel.lazy import lazy_import
from nodegen.kernel.node import Input, Output, node

torch = lazy_import("torch")

_CATEGORY = "sampling/custom/sigmas"


def _as_sigmas(sigmas) -> torch.Tensor:
    return torch.as_tensor(sigmas, dtype=torch.float32).reshape(-1)


@node("AlignYourStepsScheduler", category=_CATEGORY,
      description="NVIDIA's Align Your Steps noise levels for SD1, SDXL or SVD (log-linear between them).",
      inputs=[Input.choice("model_type", AYS_MODEL_TYPES, "SD1"),
              Input.int("steps", 10, min=1, max=10000, description="Number of sampling steps"),
              Input.float("denoise", 1.0, min=0.0, max=1.0, step=0.01)],
      outputs=[Output("sigmas", T.SIGMAS)], keywords=("ays", "schedule"))
def align_your_steps_scheduler(ctx, model_type, steps, denoise):
    from nodegen.diffusion.align_your_steps import ays_sigmas

    return ays_sigmas(model_type, steps, denoise)


@node("LaplaceScheduler", category=_CATEGORY,
      description="Noise levels at the quantiles of a Laplace distribution in log-sigma.",
      inputs=[Input.int("steps", 20, min=1, max=10000, description="Number of sampling steps"),
              Input.float("sigma_max", 14.614642, min=0.0, max=5000.0, step=0.01),
              Input.float("sigma_min", 0.0291675, min=0.0, max=5000.0, step=0.01),
              Input.float("mu", 0.0, min=-10.0, max=10.0, step=0.1, description="Centre (log-sigma)"),
              Input.float("beta", 0.5, min=0.0, max=10.0, step=0.1, description="Spread (log-sigma)")],
      outputs=[Output("sigmas", T.SIGMAS)], keywords=("schedule",))
def laplace_scheduler(ctx, steps, sigma_max, sigma_min, mu, beta):
    from nodegen.diffusion.schedules import laplace_sigmas

    if sigma_max <= sigma_min:
        raise ValueError("input 'sigma_max' must be greater than 'sigma_min'")
    return laplace_sigmas(steps, sigma_min, sigma_max, mu, beta)


@node("SDTurboScheduler", category=_CATEGORY,
      description="The schedule of SD Turbo / SDXL Turbo: the training timesteps 999, 899, 799, ... "
                  "(ComfyUI's rule), the first 'steps' of them after skipping what 'denoise' leaves out.",
      inputs=[Input.link("model", T.MODEL),
              Input.int("steps", 1, min=1, max=10, description="Number of sampling steps"),
              Input.float("denoise", 1.0, min=0.0, max=1.0, step=0.01)],
      outputs=[Output("sigmas", T.SIGMAS)], keywords=("turbo", "schedule"))
def sd_turbo_scheduler(ctx, model, steps, denoise):
    from nodegen.diffusion.sample import model_sampling_for

    ms = model_sampling_for(model)
    if not hasattr(ms, "t_to_sigma"):
        raise ValueError("input 'model': SDTurboScheduler needs a model with discrete training timesteps "
                         "(SD / SDXL Turbo), not a flow model")
    start = 10 - int(10 * denoise)
    timesteps = (torch.arange(10, 0, -1) * 100 - 1)[start:start + steps]
    sigmas = ms.t_to_sigma(timesteps).float()
    return torch.cat([sigmas, sigmas.new_zeros(1)])


@node("FlipSigmas", category=_CATEGORY,
      description="Reverse a schedule (for unsampling: noise an image back along the schedule).",
      inputs=[Input.link("sigmas", T.SIGMAS)], outputs=[Output("sigmas", T.SIGMAS)])
def flip_sigmas(ctx, sigmas):
    s = _as_sigmas(sigmas)
    if len(s) == 0:
        return s
    s = s.flip(0)
    if s[0] == 0:  # a sampler cannot start at sigma 0 (ComfyUI's rule)
        s[0] = 0.0001
    return s


@node("SplitSigmasDenoise", category=_CATEGORY,
      description="Split a schedule so that the second part covers the last 'denoise' fraction of steps.",
      inputs=[Input.link("sigmas", T.SIGMAS), Input.float("denoise", 1.0, min=0.0, max=1.0, step=0.01)],
      outputs=[Output("high_sigmas", T.SIGMAS), Output("low_sigmas", T.SIGMAS)])
def split_sigmas_denoise(ctx, sigmas, denoise):
    from nodegen.diffusion.schedules import split_sigmas

    s = _as_sigmas(sigmas)
    steps = max(len(s) - 1, 0)
    keep = round(steps * denoise)
    high, low = split_sigmas(s, steps - keep)
    if keep == 0:  # nothing left to denoise: all steps are the high part's... none (ComfyUI's rule)
        high = s[:0].clone()
    return {"high_sigmas": high, "low_sigmas": low}
