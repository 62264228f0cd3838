"""Epsilon Scaling (Ning et al. 2023) as a model patch, as ComfyUI's "Epsilon Scaling" node; see
:mod:`nodegen.diffusion.epsilon_scaling`."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node


@node("EpsilonScaling", category="advanced/model", display_name="Epsilon Scaling",
      description="Divide the guided noise prediction by a factor slightly above 1 at every step, against "
                  "exposure bias (Ning et al. 2023; any model).",
      inputs=[Input.link("model", T.MODEL),
              Input.float("scaling_factor", 1.005, min=0.5, max=1.5, step=0.001,
                          description="The divisor of the noise prediction (1: off)")],
      outputs=[Output("model", T.MODEL)], keywords=("exposure bias", "epsilon scaling"))
def epsilon_scaling(ctx, model, scaling_factor=1.005):
    from nodegen.diffusion.epsilon_scaling import EpsilonScaling

    return model.with_denoise_hook(EpsilonScaling(scaling_factor))
