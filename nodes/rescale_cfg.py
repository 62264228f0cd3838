"""RescaleCFG: guidance rescaled towards the conditional prediction's spread (Lin et al. 2023);
see :mod:`nodegen.diffusion.rescale_cfg`."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node


@node("RescaleCFG", category="advanced/model",
      description="Rescale classifier-free guidance on v (fixes over-exposure at high CFG, mostly for "
                  "v-prediction / zero-SNR models).",
      inputs=[Input.link("model", T.MODEL),
              Input.float("multiplier", 0.7, min=0.0, max=1.0, step=0.01,
                          description="0: plain CFG; 1: fully rescaled")],
      outputs=[Output("model", T.MODEL)], keywords=("guidance_rescale", "cfg rescale"))
def rescale_cfg(ctx, model, multiplier=0.7):
    out = model.clone()
    out.options["rescale_cfg"] = float(multiplier)
    return out
