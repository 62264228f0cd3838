"""Multiply the attention projections of a UNet (self- or cross-attention) or of a text encoder,
as ComfyUI's experimental UNetSelfAttentionMultiply, UNetCrossAttentionMultiply and
CLIPAttentionMultiply; see :mod:`nodegen.models.attention_multiply`."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node

_CATEGORY = "advanced/attention_experiments"


def _checked(value, name: str, node_type: str, what: str):
    if not hasattr(value, "patches") or not hasattr(value, "clone"):
        raise ValueError(f"{node_type}: input '{name}' must be a {what}, got {type(value).__name__}")
    return value


def _factors():
    return [Input.float(name, 1.0, min=0.0, max=10.0, step=0.01, description=f"Multiplier of the {what}")
            for name, what in (("q", "query projection"), ("k", "key projection"), ("v", "value projection"),
                               ("out", "output projection"))]


@node("UNetSelfAttentionMultiply", category=_CATEGORY,
      description="Multiply the UNet's self-attention projections (SD1.x / SD2 / SDXL; transformers unchanged).",
      inputs=[Input.link("model", T.MODEL), *_factors()], outputs=[Output("model", T.MODEL)],
      keywords=("attention", "attn1"))
def unet_self_attention_multiply(ctx, model, q=1.0, k=1.0, v=1.0, out=1.0):
    from nodegen.models.attention_multiply import multiply_unet_attention

    return multiply_unet_attention(_checked(model, "model", "UNetSelfAttentionMultiply", "MODEL"), "attn1", {"q": q, "k": k, "v": v, "out": out})


@node("UNetCrossAttentionMultiply", category=_CATEGORY,
      description="Multiply the UNet's cross-attention (prompt) projections (SD1.x / SD2 / SDXL; transformers "
                  "unchanged).",
      inputs=[Input.link("model", T.MODEL), *_factors()], outputs=[Output("model", T.MODEL)],
      keywords=("attention", "attn2"))
def unet_cross_attention_multiply(ctx, model, q=1.0, k=1.0, v=1.0, out=1.0):
    from nodegen.models.attention_multiply import multiply_unet_attention

    return multiply_unet_attention(_checked(model, "model", "UNetCrossAttentionMultiply", "MODEL"), "attn2", {"q": q, "k": k, "v": v, "out": out})


@node("CLIPAttentionMultiply", category=_CATEGORY,
      description="Multiply the self-attention projections of the CLIP text encoders (T5 unchanged).",
      inputs=[Input.link("clip", T.CLIP), *_factors()], outputs=[Output("clip", T.CLIP)],
      keywords=("attention",))
def clip_attention_multiply(ctx, clip, q=1.0, k=1.0, v=1.0, out=1.0):
    from nodegen.models.attention_multiply import multiply_clip_attention

    if getattr(clip, "encoder_names", None) == ():  # a checkpoint without text encoders: nothing to scale
        return clip
    return multiply_clip_attention(_checked(clip, "clip", "CLIPAttentionMultiply", "CLIP"), {"q": q, "k": k, "v": v, "out": out})
