"""SkipLayerGuidanceSD3 and SkipLayerGuidanceDiT: guidance away from a prediction made with some
transformer blocks skipped (SD3 / SD 3.5, Flux.1); see :mod:`nodegen.diffusion.skip_layer_guidance`."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node

_WINDOW = [Input.float("scale", 3.0, min=0.0, max=10.0, step=0.1, description="0: off"),
           Input.float("start_percent", 0.01, min=0.0, max=1.0, step=0.001,
                       description="From this point of the schedule..."),
           Input.float("end_percent", 0.15, min=0.0, max=1.0, step=0.001, description="...to this one")]


def _guided(model, double: str, single: str, scale, start_percent, end_percent, rescaling_scale=0.0):
    from nodegen.diffusion.skip_layer_guidance import SkipLayerGuidance, layer_list

    return model.with_denoise_hook(SkipLayerGuidance(layer_list(double), layer_list(single), scale, start_percent,
                                                      end_percent, rescaling_scale))


@node("SkipLayerGuidanceSD3", category="advanced/guidance",
      description="Skip Layer Guidance for SD3 / SD 3.5: better anatomy and structure by guiding away from "
                  "a prediction made without some of the transformer's blocks (one more model call per step "
                  "in the window).",
      inputs=[Input.link("model", T.MODEL),
              Input.string("layers", "7, 8, 9", description="Numbers of the joint blocks to skip"), *_WINDOW],
      outputs=[Output("model", T.MODEL)], keywords=("slg", "sd3.5", "guidance"))
def skip_layer_guidance_sd3(ctx, model, layers, scale, start_percent, end_percent):
    return _guided(model, layers, "", scale, start_percent, end_percent)


@node("SkipLayerGuidanceDiT", category="advanced/guidance",
      description="Skip Layer Guidance for flow transformers (SD3, Flux.1): guide away from a prediction made "
                  "without some double (joint) and single blocks.",
      inputs=[Input.link("model", T.MODEL),
              Input.string("double_layers", "7, 8, 9", description="Numbers of the double / joint blocks to skip"),
              Input.string("single_layers", "7, 8, 9", description="Numbers of the single blocks to skip (Flux)"),
              *_WINDOW,
              Input.float("rescaling_scale", 0.0, min=0.0, max=10.0, step=0.01,
                          description="Rescale towards the conditional prediction's spread (0: off)")],
      outputs=[Output("model", T.MODEL)], keywords=("slg", "flux", "guidance"))
def skip_layer_guidance_dit(ctx, model, double_layers, single_layers, scale, start_percent, end_percent,
                            rescaling_scale=0.0):
    return _guided(model, double_layers, single_layers, scale, start_percent, end_percent, rescaling_scale)
