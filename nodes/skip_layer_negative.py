"""SkipLayerGuidanceDiTSimple: Skip Layer Guidance that only changes the negative pass, as ComfyUI's
node; see :mod:`nodegen.diffusion.skip_layer_negative`."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node


@node("SkipLayerGuidanceDiTSimple", category="advanced/guidance",
      description="Skip Layer Guidance on the negative only (SD3, Flux.1): within the window the negative "
                  "prediction is made without some double (joint) and single blocks (one more model call per step).",
      inputs=[Input.link("model", T.MODEL),
              Input.string("double_layers", "7, 8, 9", description="Numbers of the double / joint blocks to skip"),
              Input.string("single_layers", "7, 8, 9", description="Numbers of the single blocks to skip (Flux)"),
              Input.float("start_percent", 0.0, min=0.0, max=1.0, step=0.001,
                          description="Fraction of the schedule where it starts"),
              Input.float("end_percent", 1.0, min=0.0, max=1.0, step=0.001,
                          description="Fraction of the schedule where it ends")],
      outputs=[Output("model", T.MODEL)], keywords=("slg", "flux", "sd3", "guidance"))
def skip_layer_guidance_dit_simple(ctx, model, double_layers="7, 8, 9", single_layers="7, 8, 9",
                                   start_percent=0.0, end_percent=1.0):
    from nodegen.diffusion.skip_layer_guidance import layer_list
    from nodegen.diffusion.skip_layer_negative import SkipLayerNegative

    double, single = layer_list(double_layers), layer_list(single_layers)
    if not (double or single):
        return model
    return model.with_pre_cfg_hook(SkipLayerNegative(double, single, start_percent, end_percent))
