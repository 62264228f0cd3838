"""Two ComfyUI guidance patches that reshape the predictions before CFG: TCFG (tangential damping
of the negative) and FreSca (the guidance scaled in frequency space); see
:mod:`nodegen.diffusion.tangential_cfg` and :mod:`nodegen.diffusion.frequency_scaled_guidance`."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node


@node("TCFG", category="advanced/guidance", display_name="Tangential Damping CFG",
      description="Refine the negative prediction to align with the positive one before CFG (Kwon et al. 2025; "
                  "any model, no extra model calls).",
      inputs=[Input.link("model", T.MODEL)], outputs=[Output("patched_model", T.MODEL)],
      keywords=("tcfg", "guidance", "cfg"))
def tcfg(ctx, model):
    from nodegen.diffusion.tangential_cfg import TangentialDampingCFG

    return model.with_pre_cfg_hook(TangentialDampingCFG())


@node("FreSca", category="advanced/guidance",
      description="Scale the guidance's low and high spatial frequencies separately (Huang et al. 2025; "
                  "any model, no extra model calls).",
      inputs=[Input.link("model", T.MODEL),
              Input.float("scale_low", 1.0, min=0.0, max=10.0, step=0.01, description="Low-frequency scale"),
              Input.float("scale_high", 1.25, min=0.0, max=10.0, step=0.01, description="High-frequency scale"),
              Input.int("freq_cutoff", 20, min=1, max=100,
                        description="Frequencies within this many indices of the centre count as low")],
      outputs=[Output("model", T.MODEL)], keywords=("fresca", "frequency", "guidance"))
def fresca(ctx, model, scale_low=1.0, scale_high=1.25, freq_cutoff=20):
    from nodegen.diffusion.frequency_scaled_guidance import FrequencyScaledGuidance

    return model.with_pre_cfg_hook(FrequencyScaledGuidance(scale_low, scale_high, freq_cutoff))
