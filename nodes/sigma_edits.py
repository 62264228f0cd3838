"""SIGMAS edits for custom sampling, as ComfyUI's nodes: set the first sigma, add steps between
sigmas, type a schedule in, and read the sigma at a fraction of a model's schedule
(comfy_extras/nodes_custom_sampler.py's SetFirstSigma, ExtendIntermediateSigmas, ManualSigmas,
SamplingPercentToSigma)."""

from __future__ import annotations

import math
import re

from nodegen.kernel import types as T
from nodegen.kernel.lazy import lazy_import
from nodegen.kernel.node import Input, Output, node

torch = lazy_import("torch")

_CATEGORY = "sampling/custom/sigmas"
#: ComfyUI's percent_to_sigma before the schedule starts (a float output cannot be infinite in JSON).
BEFORE_START = 999999999.9
SPACINGS = ("linear", "cosine", "sine")
_NUMBER = re.compile(r"[-+]?(?:\d*\.*\d+)")  # ComfyUI's ManualSigmas pattern


def _sigmas(value, node_type: str) -> torch.Tensor:
    try:
        return torch.as_tensor(value, dtype=torch.float32).reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{node_type}: input 'sigmas' must be SIGMAS (a 1-D tensor of noise levels), "
                         f"got {type(value).__name__}") from None


@node("SetFirstSigma", category=_CATEGORY, description="Replace the first (highest) sigma of a schedule.",
      inputs=[Input.link("sigmas", T.SIGMAS),
              Input.float("sigma", 136.0, min=0.0, max=20000.0, step=0.001, description="The new first sigma")],
      outputs=[Output("sigmas", T.SIGMAS)])
def set_first_sigma(ctx, sigmas, sigma=136.0):
    s = _sigmas(sigmas, "SetFirstSigma").clone()
    if len(s) == 0:
        raise ValueError("SetFirstSigma: input 'sigmas' is empty; there is no first sigma to set")
    s[0] = float(sigma)
    return s


def _spacing(name: str):
    if name == "linear":
        return lambda x: x
    if name == "cosine":
        return lambda x: torch.sin(x * math.pi / 2)
    return lambda x: 1 - torch.cos(x * math.pi / 2)


@node("ExtendIntermediateSigmas", category=_CATEGORY,
      description="Add 'steps - 1' sigmas between each pair of a schedule whose first sigma lies between "
                  "end_at_sigma and start_at_sigma (more steps where they matter).",
      inputs=[Input.link("sigmas", T.SIGMAS),
              Input.int("steps", 2, min=1, max=100, description="Each interval becomes this many steps"),
              Input.float("start_at_sigma", -1.0, min=-1.0, max=20000.0, step=0.01,
                          description="Extend intervals starting at or below this sigma (-1: no limit)"),
              Input.float("end_at_sigma", 12.0, min=0.0, max=20000.0, step=0.01,
                          description="Extend intervals starting at or above this sigma"),
              Input.choice("spacing", SPACINGS, "linear",
                           description="Where the new sigmas lie in each interval: evenly, or bunched "
                                       "towards its end (cosine) or its start (sine)")],
      outputs=[Output("sigmas", T.SIGMAS)], keywords=("interpolate sigmas",))
def extend_intermediate_sigmas(ctx, sigmas, steps=2, start_at_sigma=-1.0, end_at_sigma=12.0, spacing="linear"):
    s = _sigmas(sigmas, "ExtendIntermediateSigmas")
    start = math.inf if start_at_sigma < 0 else float(start_at_sigma)
    fractions = _spacing(spacing)(torch.linspace(0, 1, int(steps) + 1)[1:-1])
    out: list[float] = []
    for current, following in zip(s[:-1], s[1:], strict=True):
        out.append(float(current))
        if end_at_sigma <= float(current) <= start:
            out.extend((fractions * (following - current) + current).tolist())
    if len(s):
        out.append(float(s[-1]))
    return torch.tensor(out, dtype=torch.float32)


@node("ManualSigmas", category=_CATEGORY,
      description="A schedule typed in: the numbers in the text, in order (e.g. '14.6, 6, 2.5, 0.9, 0').",
      inputs=[Input.string("sigmas", "1, 0.5", description="Numbers separated by commas or spaces")],
      outputs=[Output("sigmas", T.SIGMAS)], keywords=("custom noise schedule", "define sigmas"))
def manual_sigmas(ctx, sigmas="1, 0.5"):
    values = []
    for text in _NUMBER.findall(str(sigmas)):
        try:
            values.append(float(text))
        except ValueError:
            raise ValueError(f"ManualSigmas: input 'sigmas': {text!r} is not a number") from None
    return torch.tensor(values, dtype=torch.float32)


@node("SamplingPercentToSigma", category=_CATEGORY,
      description="The model's sigma at a fraction of its schedule (0: the start, 1: the end), as the "
                  "start / end percent inputs of other nodes are read.",
      inputs=[Input.link("model", T.MODEL),
              Input.float("sampling_percent", 0.0, min=0.0, max=1.0, step=0.0001),
              Input.bool("return_actual_sigma", False,
                         description="At 0 and 1, the schedule's highest and lowest sigma instead of the "
                                     "values used to check intervals (999999999.9 and 0)")],
      outputs=[Output("sigma_value", T.FLOAT)])
def sampling_percent_to_sigma(ctx, model, sampling_percent=0.0, return_actual_sigma=False):
    from nodegen.diffusion.model_sampling import percent_to_sigma
    from nodegen.diffusion.sample import model_sampling_for

    ms = model_sampling_for(model)
    p = float(sampling_percent)
    if return_actual_sigma and p == 0.0:
        return float(ms.sigma_max)
    if return_actual_sigma and p == 1.0:
        return float(ms.sigma_min)
    return BEFORE_START if p <= 0 else percent_to_sigma(ms, p)
