"""SelfAttentionGuidance: guidance away from the unconditional prediction blurred where the UNet's
middle block attends most (Hong et al. 2023); see :mod:`nodegen.diffusion.self_attention_guidance`."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node


@node("SelfAttentionGuidance", category="model_patches/unet", display_name="Self-Attention Guidance",
      description="Self-Attention Guidance (SAG): finer detail by guiding away from the unconditional "
                  "prediction blurred where the UNet middle block's self-attention looks (SD1/SD2/SDXL; "
                  "costs one more model call per step, and the negative prediction even at cfg 1).",
      inputs=[Input.link("model", T.MODEL),
              Input.float("scale", 0.5, min=-2.0, max=5.0, step=0.01,
                          description="How strongly to guide away from the blurred prediction; 0: off"),
              Input.float("blur_sigma", 2.0, min=0.0, max=10.0, step=0.1,
                          description="Standard deviation (latent pixels) of the 9x9 Gaussian blur; "
                                      "0: no blur")],
      outputs=[Output("model", T.MODEL)], keywords=("sag", "guidance", "self-attention", "blur"))
def self_attention_guidance(ctx, model, scale=0.5, blur_sigma=2.0):
    from nodegen.diffusion.self_attention_guidance import SelfAttentionGuidance, recorded_layer

    family = getattr(model, "family", "?")
    if recorded_layer(model.unet) is None:
        raise ValueError(f"SelfAttentionGuidance: input 'model' is a {family} model without a self-attention "
                         "in a UNet middle block; Self-Attention Guidance needs one (SD1, SD2, SDXL)")
    guidance = SelfAttentionGuidance(scale, blur_sigma)
    patched = model.with_denoise_hook(guidance)
    kept = patched.options.get("self_attention_guidance", ())
    patched.options["self_attention_guidance"] = [*kept, guidance]  # the model call keeps the attention map
    return patched
