"""Porter-Duff compositing of one image over another, with ComfyUI's formulas
(comfy_extras/nodes_compositing.py, ``porter_duff_composite``): alphas come and go as ComfyUI MASKs
(1 - alpha: 1 where transparent), colours are premultiplied for the operation and divided back out
after it (0 where the result's alpha is 1e-5 or less), then clamped to [0, 1].

After T. Porter and T. Duff, "Compositing Digital Images" (SIGGRAPH 1984); DARKEN, LIGHTEN,
MULTIPLY, OVERLAY and SCREEN are the separable blend modes of the same algebra.
"""

from __future__ import annotations

from nodegen.kernel.lazy import lazy_import

torch = lazy_import("torch")

MODES = ("ADD", "CLEAR", "DARKEN", "DST", "DST_ATOP", "DST_IN", "DST_OUT", "DST_OVER", "LIGHTEN", "MULTIPLY",
         "OVERLAY", "SCREEN", "SRC", "SRC_ATOP", "SRC_IN", "SRC_OUT", "SRC_OVER", "XOR")


def porter_duff(src_image, src_mask, dst_image, dst_mask, mode: str):
    """``(image, mask)`` of ``mode`` for ``src_image`` / ``dst_image`` [..., C] and their MASKs
    ``src_mask`` / ``dst_mask`` [..., 1] (same shapes, broadcastable)."""
    if mode not in MODES:
        raise ValueError(f"unknown Porter-Duff mode {mode!r}: one of {', '.join(MODES)}")
    sa, da = 1 - src_mask, 1 - dst_mask
    s, d = src_image * sa, dst_image * da  # premultiplied
    alpha, image = _OPS[mode](s, sa, d, da)
    image = torch.where(alpha > 1e-5, image / alpha, torch.zeros_like(image)).clamp(0, 1)
    return image, 1 - alpha


def _union(sa, da):
    return sa + da - sa * da


_OPS = {
    "ADD": lambda s, sa, d, da: ((sa + da).clamp(0, 1), (s + d).clamp(0, 1)),
    "CLEAR": lambda s, sa, d, da: (torch.zeros_like(da), torch.zeros_like(d)),
    "DARKEN": lambda s, sa, d, da: (_union(sa, da), (1 - da) * s + (1 - sa) * d + torch.minimum(s, d)),
    "DST": lambda s, sa, d, da: (da, d),
    "DST_ATOP": lambda s, sa, d, da: (sa, sa * d + (1 - da) * s),
    "DST_IN": lambda s, sa, d, da: (sa * da, d * sa),
    "DST_OUT": lambda s, sa, d, da: ((1 - sa) * da, (1 - sa) * d),
    "DST_OVER": lambda s, sa, d, da: (da + (1 - da) * sa, d + (1 - da) * s),
    "LIGHTEN": lambda s, sa, d, da: (_union(sa, da), (1 - da) * s + (1 - sa) * d + torch.maximum(s, d)),
    "MULTIPLY": lambda s, sa, d, da: (sa * da, s * d),
    "OVERLAY": lambda s, sa, d, da: (_union(sa, da),
                                     torch.where(2 * d < da, 2 * s * d, sa * da - 2 * (da - s) * (sa - d))),
    "SCREEN": lambda s, sa, d, da: (_union(sa, da), s + d - s * d),
    "SRC": lambda s, sa, d, da: (sa, s),
    "SRC_ATOP": lambda s, sa, d, da: (da, da * s + (1 - sa) * d),
    "SRC_IN": lambda s, sa, d, da: (sa * da, s * da),
    "SRC_OUT": lambda s, sa, d, da: ((1 - da) * sa, (1 - da) * s),
    "SRC_OVER": lambda s, sa, d, da: (sa + (1 - sa) * da, s + (1 - sa) * d),
    "XOR": lambda s, sa, d, da: ((1 - da) * sa + (1 - sa) * da, (1 - da) * s + (1 - sa) * d),
}
