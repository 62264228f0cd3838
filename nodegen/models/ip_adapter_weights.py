"""IP-Adapter weight types: the weight an application gives each of the UNet's attention blocks.

The types and their rules are those of ComfyUI_IPAdapter_plus (by cubiq): the UNet's transformer
blocks (diffusers' ``Transformer2DModel``; ComfyUI's ``SpatialTransformer``) are numbered in the
order they run (down blocks, middle, up blocks), 16 of them in SD1.5, 11 in SDXL; "ease" types
fade the weight over that index, "weak"/"strong" types lower it to 0.2 in some parts, and the
style / composition types keep it only in the blocks known to carry style (SDXL's second block
of the first up level, the InstantStyle finding) or composition.
"""

from __future__ import annotations

import re

#: The pack's weight types offered here (its "precise" types swap the prompt embeddings per block
#: and are not).
WEIGHT_TYPES = ("linear", "ease in", "ease out", "ease in-out", "reverse in-out", "weak input", "weak output",
                "weak middle", "strong middle", "style transfer", "composition", "strong style transfer",
                "style and composition")
_SD15_STYLE = (0, 1, 2, 3, 9, 10, 11, 12, 13, 14, 15)


def adapter_layout(state: dict) -> tuple[bool, int]:
    """``(sdxl, layers)`` as the pack reads them from an adapter: SDXL when its projections take
    2048-wide text embeddings; 11 numbered blocks when it has SDXL's 70 attention layers, else 16."""
    ip = state["ip_adapter"]
    sdxl = int(ip["1.to_k_ip.weight"].shape[1]) == 2048 if "1.to_k_ip.weight" in ip else False
    return sdxl, 11 if "101.to_k_ip.weight" in ip else 16


def _block_weights(weight_type: str, w: float, sdxl: bool, composition: float = 1.0) -> dict[int, float] | None:
    if weight_type == "style transfer":
        return {6: w} if sdxl else dict.fromkeys(_SD15_STYLE, w)
    if weight_type == "composition":
        return {3: w} if sdxl else {4: w * 0.25, 5: w}
    if weight_type == "strong style transfer":
        keys = (0, 1, 2, 4, 5, 6, 7, 8, 9, 10) if sdxl else (0, 1, 2, 3, *range(6, 16))
        return dict.fromkeys(keys, w)
    if weight_type == "style and composition":
        return {3: composition, 6: w} if sdxl else {**dict.fromkeys(_SD15_STYLE, w), 4: composition * 0.25,
                                                    5: composition}
    return None


def layer_weight(weight_type: str, weight: float, index: int, part: str, state: dict) -> float:
    """The weight for transformer block ``index`` (in run order) in ``part`` ("input", "middle",
    "output") of an application of the adapter with ``state``."""
    sdxl, layers = adapter_layout(state)
    half = layers / 2
    if weight_type == "ease in":
        return weight * (0.05 + 0.95 * (1 - index / layers))
    if weight_type == "ease out":
        return weight * (0.05 + 0.95 * (index / layers))
    if weight_type == "ease in-out":
        return weight * (0.05 + 0.95 * (1 - abs(index - half) / half))
    if weight_type == "reverse in-out":
        return weight * (0.05 + 0.95 * (abs(index - half) / half))
    weak = {"weak input": ("input",), "weak middle": ("middle",), "weak output": ("output",),
            "strong middle": ("input", "output")}
    if weight_type in weak:
        return weight * 0.2 if part in weak[weight_type] else weight
    blocks = _block_weights(weight_type, weight, sdxl)
    if blocks is not None:
        return blocks.get(index, 0.0)
    if weight_type != "linear":
        raise ValueError(f"unknown IP-Adapter weight type {weight_type!r}; one of {', '.join(WEIGHT_TYPES)}")
    return weight


_BLOCK = re.compile(r"^(down_blocks\.(\d+)|mid_block|up_blocks\.(\d+))\.attentions\.(\d+)\.")


def transformer_blocks(processor_names) -> dict[str, tuple[int, str]]:
    """Attention-processor name -> (transformer block index in run order, part)."""
    found: dict[str, tuple[int, int, int]] = {}
    for name in processor_names:
        m = _BLOCK.match(name)
        if m:
            section = 0 if m.group(2) is not None else 2 if m.group(3) is not None else 1
            level = int(m.group(2) or m.group(3) or 0)
            found[name] = (section, level, int(m.group(4)))
    order = {key: i for i, key in enumerate(sorted(set(found.values())))}
    parts = ("input", "middle", "output")
    return {name: (order[key], parts[key[0]]) for name, key in found.items()}
