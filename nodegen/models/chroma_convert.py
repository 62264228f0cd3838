"""Chroma transformer weights: the original key layout (lodestones' files, as ComfyUI loads them:
Flux.1's ``double_blocks`` / ``single_blocks`` without their modulation layers, plus the
``distilled_guidance_layer`` approximator that gives every block its modulation) -> diffusers'
``ChromaTransformer2DModel`` keys, for any width.

diffusers' own ``convert_chroma_transformer_checkpoint_to_diffusers`` (which this follows) hard-codes
the full-size width of 3072 when it splits the single blocks' fused ``linear1``; the blocks here go
through :func:`nodegen.models.flux_convert.flux_to_diffusers`, which takes the width from
``img_in.weight``.
"""

from __future__ import annotations

import torch

from nodegen.models.flux_convert import flux_to_diffusers

APPROXIMATOR = "distilled_guidance_layer."
#: approximator layer names, original -> diffusers (inside ``distilled_guidance_layer.``)
_LAYER = {"in_layer": "linear_1", "out_layer": "linear_2"}


def _approximator(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Pop the approximator's tensors under ``prefix`` and rename them."""
    out: dict[str, torch.Tensor] = {}
    for key in [k for k in sd if k.startswith(prefix + APPROXIMATOR)]:
        name = key[len(prefix + APPROXIMATOR):]
        parts = name.split(".")
        if parts[0] == "layers":  # layers.N.in_layer.weight -> layers.N.linear_1.weight
            parts[2] = _LAYER.get(parts[2], parts[2])
        elif parts[0] == "norms" and parts[-1] == "scale":  # norms.N.scale -> norms.N.weight
            parts[-1] = "weight"
        out[APPROXIMATOR + ".".join(parts)] = sd.pop(key)
    return out


def chroma_to_diffusers(sd: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """Convert (and pop) the Chroma transformer tensors under ``prefix`` of ``sd``."""
    out = _approximator(sd, prefix)
    out.update(flux_to_diffusers(sd, prefix))
    return out
