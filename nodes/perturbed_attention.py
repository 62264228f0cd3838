"""PerturbedAttentionGuidance: guidance away from a prediction whose middle-block self-attention is
the identity (Ahn et al. 2024); see :mod:`nodegen.diffusion.perturbed_attention`."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node


@node("PerturbedAttentionGuidance", category="model_patches/unet",
      description="Perturbed-Attention Guidance (PAG): sharper structure by guiding away from a prediction "
                  "with the UNet middle block's self-attention switched off (SD1/SD2/SDXL; costs one more "
                  "model call per step).",
      inputs=[Input.link("model", T.MODEL),
              Input.float("scale", 3.0, min=0.0, max=100.0, step=0.01,
                          description="How strongly to guide away from the perturbed prediction; 0: off")],
      outputs=[Output("model", T.MODEL)], keywords=("pag", "guidance", "self-attention"))
def perturbed_attention_guidance(ctx, model, scale=3.0):
    from nodegen.diffusion.perturbed_attention import PerturbedAttentionGuidance

    return model.with_denoise_hook(PerturbedAttentionGuidance(scale))
