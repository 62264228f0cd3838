"""Attention weight multipliers, as ComfyUI's UNetSelfAttentionMultiply, UNetCrossAttentionMultiply
and CLIPAttentionMultiply (comfy_extras/nodes_attention_multiply.py): the query, key, value and
output projections (weights and biases) of every attention layer of one kind are multiplied by a
factor each, as a patch applied on use (:class:`nodegen.models.patching.Scale`, so LoRAs patched
before are scaled with the weight and those after are not, as in ComfyUI).

The layers are found by parameter name, as ComfyUI finds them: UNet self-attention ``attn1.``,
cross-attention ``attn2.`` with ``to_q`` / ``to_k`` / ``to_v`` / ``to_out.0``; CLIP text encoders
``self_attn.`` with ``q_proj`` / ``k_proj`` / ``v_proj`` / ``out_proj``. Models whose layers are
named otherwise (SD3 and Flux transformers, T5) are left as they are, as in ComfyUI.
"""

from __future__ import annotations

from collections.abc import Iterable

from nodegen.models.patching import Scale

UNET_PROJECTIONS = {"q": "to_q", "k": "to_k", "v": "to_v", "out": "to_out.0"}
CLIP_PROJECTIONS = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "out": "out_proj"}
#: Families whose diffusion model is a UNet with attn1 / attn2 layers (SD3 / Flux are transformers).
UNET_FAMILIES = ("sd1", "sd2", "sdxl", "sdxl_refiner")


def scale_patches(names: Iterable[str], layer: str, projections: dict[str, str],
                  factors: dict[str, float]) -> dict[str, Scale]:
    """``{parameter name: Scale}`` for the parameters ending in ``<layer>.<projection>.weight``
    or ``.bias``; factors of 1 are left out."""
    patches: dict[str, Scale] = {}
    for name in names:
        for which, proj in projections.items():
            factor = float(factors[which])
            if factor != 1.0 and name.endswith((f"{layer}.{proj}.weight", f"{layer}.{proj}.bias")):
                patches[name] = Scale(factor)
    return patches


def multiply_unet_attention(model, layer: str, factors: dict[str, float]):
    """A clone of the MODEL with ``layer`` ("attn1" or "attn2") projections scaled."""
    clone = model.clone()
    if getattr(model, "family", None) not in UNET_FAMILIES:
        return clone
    names = [n for n, _ in model.unet.named_parameters()]
    patches = scale_patches(names, layer, UNET_PROJECTIONS, factors)
    if patches:
        clone.add_patches(patches, 1.0)
    return clone


def multiply_clip_attention(clip, factors: dict[str, float]):
    """A clone of the CLIP with every text encoder's self-attention projections scaled (a CLIP
    with no encoders, a checkpoint's missing ones, passes through)."""
    if not getattr(clip, "encoder_names", ()):
        return clip
    clone = clip.clone()
    patches: dict[str, Scale] = {}
    for prefix, encoder in zip(clip.encoder_names, clip.encoders, strict=True):
        names = [f"{prefix}.{n}" for n, _ in encoder.named_parameters()]
        patches.update(scale_patches(names, "self_attn", CLIP_PROJECTIONS, factors))
    if patches:
        clone.add_patches(patches, 1.0)
    return clone
