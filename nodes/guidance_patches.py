"""Patches of how the positive and negative predictions are combined: APG (Sadat et al. 2024),
CFGZeroStar (Fan et al. 2025) and CFGNorm, as ComfyUI's nodes; see
:mod:`nodegen.diffusion.adaptive_projected_guidance`, :mod:`nodegen.diffusion.cfg_zero_star` and
:mod:`nodegen.diffusion.cfg_norm`."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node


@node("APG", category="sampling/custom_sampling", display_name="Adaptive Projected Guidance",
      description="Adaptive Projected Guidance: CFG whose guidance is limited in norm and split along the "
                  "positive prediction, so high CFG scales don't oversaturate (any model; no extra model calls).",
      inputs=[Input.link("model", T.MODEL),
              Input.float("eta", 1.0, min=-10.0, max=10.0, step=0.01,
                          description="Scale of the guidance's part along the positive prediction; "
                                      "1: as CFG, 0: only the orthogonal part (the paper's advice)"),
              Input.float("norm_threshold", 5.0, min=0.0, max=50.0, step=0.1,
                          description="The largest norm of the guidance per image; 0: no limit"),
              Input.float("momentum", 0.0, min=-5.0, max=1.0, step=0.01,
                          description="Running sum of the guidance over the steps of a run (negative: "
                                      "away from earlier steps' guidance); 0: off")],
      outputs=[Output("model", T.MODEL)], keywords=("apg", "guidance", "cfg", "oversaturation"))
def apg(ctx, model, eta=1.0, norm_threshold=5.0, momentum=0.0):
    from nodegen.diffusion.adaptive_projected_guidance import AdaptiveProjectedGuidance

    return model.with_pre_cfg_hook(AdaptiveProjectedGuidance(eta, norm_threshold, momentum))


@node("CFGZeroStar", category="advanced/guidance",
      description="CFG-Zero*: scales the negative prediction by its best fit to the positive one before CFG "
                  "(made for flow models such as SD3 and Flux; works on any; no extra model calls).",
      inputs=[Input.link("model", T.MODEL)],
      outputs=[Output("model", T.MODEL)], keywords=("cfg zero star", "cfg-zero*", "guidance"))
def cfg_zero_star(ctx, model):
    from nodegen.diffusion.cfg_zero_star import CFGZeroStar

    return model.with_denoise_hook(CFGZeroStar())


@node("CFGNorm", category="advanced/guidance",
      description="Limits the guided prediction's length per pixel to the positive prediction's, then scales "
                  "it by strength (ComfyUI's experimental CFGNorm).",
      inputs=[Input.link("model", T.MODEL),
              Input.float("strength", 1.0, min=0.0, max=100.0, step=0.01,
                          description="Multiplies the result (1: only the length limit)")],
      outputs=[Output("model", T.MODEL)], keywords=("cfg norm", "guidance"))
def cfg_norm(ctx, model, strength=1.0):
    from nodegen.diffusion.cfg_norm import CFGNorm

    return model.with_denoise_hook(CFGNorm(strength))
