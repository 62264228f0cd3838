"""DifferentialDiffusion: soft inpainting masks (Levin & Fried 2023, "Differential Diffusion:
Giving Each Pixel Its Strength"); see :meth:`nodegen.diffusion.denoiser.Denoiser._step_mask`."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node


@node("DifferentialDiffusion", category="latent/inpaint",
      description="Make the inpainting mask's grey levels matter: each pixel changes for the part of "
                  "the schedule its mask value gives (0.5 = the second half).",
      inputs=[Input.link("model", T.MODEL),
              Input.float("strength", 1.0, min=0.0, max=1.0, step=0.01,
                          description="1: the per-step binary mask; below 1 mixes in the soft mask")],
      outputs=[Output("model", T.MODEL)], keywords=("inpaint", "soft mask", "blend"))
def differential_diffusion(ctx, model, strength=1.0):
    out = model.clone()
    out.options["differential_diffusion"] = float(strength)
    return out
