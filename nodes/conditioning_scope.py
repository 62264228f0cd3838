"""Where, when and how strongly a conditioning applies: ComfyUI's ConditioningSetTimestepRange,
ConditioningSetMask and ConditioningAverage (see :mod:`nodegen.diffusion.conditioning`; the
denoiser reads the item options)."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.lazy import lazy_import
from nodegen.kernel.node import Input, Output, node

C = lazy_import("nodegen.diffusion.conditioning")
_OUT = [Output("conditioning", T.CONDITIONING)]


def _cond(value, name: str, node_type: str) -> list:
    from nodegen.diffusion.conditioning import CondItem

    if not isinstance(value, list) or not all(isinstance(c, CondItem) for c in value):
        raise TypeError(f"{node_type}: input '{name}' must be a CONDITIONING (a list of CondItem)")
    return value


@node("ConditioningSetTimestepRange", category="advanced/conditioning",
      description="Use a conditioning only for part of the sampling schedule (0 = first step, 1 = last).",
      inputs=[Input.link("conditioning", T.CONDITIONING),
              Input.float("start", 0.0, min=0.0, max=1.0, step=0.001),
              Input.float("end", 1.0, min=0.0, max=1.0, step=0.001)],
      outputs=_OUT, keywords=("prompt editing", "schedule", "timestep"))
def conditioning_set_timestep_range(ctx, conditioning, start=0.0, end=1.0):
    return C.set_timestep_range(_cond(conditioning, "conditioning", "ConditioningSetTimestepRange"), start, end)


@node("ConditioningAverage", category="conditioning",
      description="Blend two conditionings' embeddings: conditioning_to_strength of 'to', the rest of 'from'.",
      inputs=[Input.link("conditioning_to", T.CONDITIONING), Input.link("conditioning_from", T.CONDITIONING),
              Input.float("conditioning_to_strength", 1.0, min=0.0, max=1.0, step=0.01)],
      outputs=_OUT, keywords=("blend", "mix", "interpolate"))
def conditioning_average(ctx, conditioning_to, conditioning_from, conditioning_to_strength=1.0):
    frm = _cond(conditioning_from, "conditioning_from", "ConditioningAverage")
    if not frm:
        raise ValueError("ConditioningAverage: input 'conditioning_from' is empty")
    return C.average(_cond(conditioning_to, "conditioning_to", "ConditioningAverage"), frm, conditioning_to_strength)


@node("ConditioningSetMask", category="conditioning",
      description="Apply a conditioning where a mask is set (weighted by the mask); 'mask bounds' also runs "
                  "it only on the mask's bounding box.",
      inputs=[Input.link("conditioning", T.CONDITIONING), Input.link("mask", T.MASK),
              Input.float("strength", 1.0, min=0.0, max=10.0, step=0.01),
              Input.choice("set_cond_area", ["default", "mask bounds"], "default")],
      outputs=_OUT, keywords=("regional prompt", "area", "mask"))
def conditioning_set_mask(ctx, conditioning, mask, strength=1.0, set_cond_area="default"):
    cond = _cond(conditioning, "conditioning", "ConditioningSetMask")
    if getattr(mask, "ndim", 0) not in (2, 3):
        raise ValueError("ConditioningSetMask: input 'mask' must be a MASK [batch, height, width]")
    return C.set_mask(cond, mask, strength, set_cond_area == "mask bounds")
