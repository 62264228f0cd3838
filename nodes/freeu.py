"""FreeU and FreeU_V2: re-weight a UNet's decoder backbone and skip features (Si et al. 2023);
see :mod:`nodegen.diffusion.freeu`."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node


def _inputs(b1: float, b2: float, s1: float, s2: float) -> list:
    return [Input.link("model", T.MODEL),
            Input.float("b1", b1, min=0.0, max=10.0, step=0.01, description="Backbone scale, deepest stage"),
            Input.float("b2", b2, min=0.0, max=10.0, step=0.01, description="Backbone scale, second stage"),
            Input.float("s1", s1, min=0.0, max=10.0, step=0.01, description="Skip low-frequency scale, deepest stage"),
            Input.float("s2", s2, min=0.0, max=10.0, step=0.01, description="Skip low-frequency scale, second stage")]


def _with_freeu(model, node_type: str, b1, b2, s1, s2, v2: bool):
    if getattr(model, "prediction_type", None) == "flow":
        raise ValueError(f"{node_type}: input 'model' is a {model.family} flow model; FreeU works on UNet "
                         "models (SD1, SD2, SDXL)")
    from nodegen.diffusion.freeu import FreeU

    out = model.clone()
    out.options["freeu"] = FreeU(float(b1), float(b2), float(s1), float(s2), v2)
    return out


@node("FreeU", category="model_patches/unet",
      description="FreeU: amplify the decoder's backbone features and damp the low frequencies of its skips.",
      inputs=_inputs(1.1, 1.2, 0.9, 0.2), outputs=[Output("model", T.MODEL)], keywords=("free lunch",))
def freeu(ctx, model, b1, b2, s1, s2):
    return _with_freeu(model, "FreeU", b1, b2, s1, s2, v2=False)


@node("FreeU_V2", category="model_patches/unet",
      description="FreeU v2: like FreeU, with the backbone scaled in proportion to each pixel's mean activation.",
      inputs=_inputs(1.3, 1.4, 0.9, 0.2), outputs=[Output("model", T.MODEL)], keywords=("free lunch",))
def freeu_v2(ctx, model, b1, b2, s1, s2):
    return _with_freeu(model, "FreeU_V2", b1, b2, s1, s2, v2=True)
