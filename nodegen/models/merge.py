"""Model merging as weight patches: the merged model keeps references to both models' weights
and combines them when it is used (:mod:`nodegen.models.patching`), so a merge costs no second
copy of the weights at rest.

For a weight ``W1`` of the first model and the same weight ``W2`` of the second (with the second
model's own patches applied, computed on use):

* simple (ComfyUI's ModelMergeSimple / CLIPMergeSimple): ``ratio * W1 + (1 - ratio) * W2``;
* per block (ModelMergeBlocks, ModelMergeSD1/SDXL): the same with a ratio per UNet block, chosen by
  the longest matching prefix of the weight's original (LDM) name;
* add (ModelMergeAdd / CLIPMergeAdd): ``W1 + W2``;
* subtract (ModelMergeSubtract / CLIPMergeSubtract): ``multiplier * (W1 - W2)``.

"Add difference" (A + (B - C) * m) is Subtract(B, C, m) then Add(A, that). The first model's
earlier patches (a LoRA) are added on top unscaled; ComfyUI scales them by the ratio too.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from nodegen.models.gguf_linear import dequantized, logical_shape
from nodegen.models.patching import patched_weight

#: Text-encoder entries that are not weights to merge (ComfyUI skips them too).
_CLIP_SKIP = (".position_ids", ".logit_scale")


def _weights_of(obj) -> dict[str, torch.nn.Parameter]:
    """Patch key -> parameter of a DiffusionModel or TextEncoder."""
    if hasattr(obj, "unet"):
        return dict(obj.unet.named_parameters())
    out = {}
    for comp, enc in zip(obj.encoder_names, obj.encoders, strict=True):
        for n, p in enc.named_parameters():
            if not n.endswith(_CLIP_SKIP):
                out[f"{comp}.{n}"] = p
    return out


def _param(obj, key: str) -> torch.nn.Parameter:
    if hasattr(obj, "unet"):
        return obj.unet.get_parameter(key)
    comp, name = key.split(".", 1)
    return obj.encoders[obj.encoder_names.index(comp)].get_parameter(name)


def effective_weight(obj, key: str, device: torch.device) -> torch.Tensor:
    """Weight ``key`` of ``obj`` with its patches applied, float32 on ``device``."""
    base = dequantized(_param(obj, key).data).to(device)  # GGUF blocks: their values
    return patched_weight(base, [(pd[key], float(s)) for pd, s in obj.patches if key in pd and s != 0])


def check_compatible(a, b, what: str) -> list[str]:
    """The keys both share; a ValueError when the architectures differ."""
    wa, wb = _weights_of(a), _weights_of(b)
    if getattr(a, "family", None) != getattr(b, "family", None):
        raise ValueError(f"cannot merge {what}s of different families ({a.family} and {b.family})")
    missing = sorted(set(wa) ^ set(wb))
    if missing:
        raise ValueError(f"cannot merge these {what}s: their weights differ (e.g. {missing[0]!r} is only in one)")
    for k, p in wa.items():
        if logical_shape(p) != logical_shape(wb[k]):
            raise ValueError(f"cannot merge these {what}s: weight {k!r} is {logical_shape(p)} in the first "
                             f"and {logical_shape(wb[k])} in the second")
    return list(wa)


def _clone_with(a, deltas: dict[str, Callable[[torch.Tensor], torch.Tensor]]):
    out = a.clone()
    out.add_patches(deltas, 1.0)
    return out


def merge_simple(a, b, ratio: float | Callable[[str], float], what: str = "model"):
    """``ratio * a + (1 - ratio) * b`` per weight; ``ratio`` may be a function of the key."""
    keys = check_compatible(a, b, what)

    def make(key: str, r: float):
        def delta(w: torch.Tensor) -> torch.Tensor:
            return (1.0 - r) * (effective_weight(b, key, w.device) - w.float())
        return delta

    ratios = {k: (ratio(k) if callable(ratio) else float(ratio)) for k in keys}
    return _clone_with(a, {k: make(k, r) for k, r in ratios.items() if r != 1.0})


def merge_add(a, b, what: str = "model"):
    keys = check_compatible(a, b, what)

    def make(key: str):
        return lambda w: effective_weight(b, key, w.device)

    return _clone_with(a, {k: make(k) for k in keys})


def merge_subtract(a, b, multiplier: float, what: str = "model"):
    keys = check_compatible(a, b, what)
    m = float(multiplier)

    def make(key: str):
        return lambda w: (m - 1.0) * w.float() - m * effective_weight(b, key, w.device)

    return _clone_with(a, {k: make(k) for k in keys})


def ldm_names(model) -> dict[str, str]:
    """diffusers parameter name -> original (LDM) name without ``model.diffusion_model.``."""
    from nodegen.models.ldm_export import unet_to_ldm

    config = dict(model.unet.config)
    out = {}
    for name, p in model.unet.named_parameters():
        try:
            out[name] = next(iter(unet_to_ldm({name: p}, config, prefix="")))
        except (KeyError, ValueError, IndexError, StopIteration):
            out[name] = name
    return out


def block_ratio(prefix_ratios: dict[str, float], default: float) -> Callable[[str], float]:
    """ComfyUI's rule: the ratio of the longest prefix of the LDM name, else ``default``."""
    def ratio(ldm_name: str) -> float:
        best, size = default, 0
        for prefix, r in prefix_ratios.items():
            if ldm_name.startswith(prefix) and len(prefix) > size:
                best, size = r, len(prefix)
        return best
    return ratio


def merge_blocks(a, b, prefix_ratios: dict[str, float]):
    """:func:`merge_simple` with a ratio per block prefix of the LDM names (the first prefix's
    ratio for weights no prefix matches, as ComfyUI)."""
    names = ldm_names(a)
    default = next(iter(prefix_ratios.values()))
    pick = block_ratio(prefix_ratios, default)
    return merge_simple(a, b, lambda key: pick(names.get(key, key)), "model")
