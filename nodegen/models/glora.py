"""GLoRA (LyCORIS' generalised LoRA: ``a1``, ``a2``, ``b1``, ``b2``) in kohya-named files, as
ComfyUI's ``GLoRAAdapter`` computes the weight change.

GLoRA changes a weight ``W`` by a low-rank term that scales ``W`` itself plus a LoRA-like term,
scaled by ``alpha / rank`` (1 without ``alpha``) and added with the strength::

    current LyCORIS:  delta = W a1 a2 + b1 b2        (a1: [in, r], a2: [r, in], b1: [out, r], b2: [r, in])
    older LyCORIS:    delta = b2 b1 + (W a2) a1      (told apart by the shapes, as ComfyUI does)

Conv weights use ``W``'s input axis for ``a1 a2`` (``einsum("o i ..., i j -> o j ...")``) and the
flattened ``b2`` kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

GLORA = ("a1.weight", "a2.weight", "b1.weight", "b2.weight")


@dataclass
class GloraLayer:
    component: str
    module: str
    a1: torch.Tensor
    a2: torch.Tensor
    b1: torch.Tensor
    b2: torch.Tensor
    alpha: float | None = None

    def _old_format(self, weight: torch.Tensor) -> tuple[bool, int]:
        """(older LyCORIS layout?, rank), decided from the shapes as ComfyUI does."""
        a1, a2, b1, b2 = self.a1, self.a2, self.b1, self.b2
        old, rank = False, 0
        if b2.shape[1] == b1.shape[0] == a1.shape[0] == a2.shape[1]:
            old, rank = True, a1.shape[0]
        if b2.shape[0] == b1.shape[1] == a1.shape[1] == a2.shape[0]:
            if not (old and a2.shape[0] == weight.shape[0] and weight.shape[0] == weight.shape[1]):
                old, rank = False, a2.shape[0]
        if not rank:
            raise ValueError(f"GLoRA layer {self.module}: shapes {[tuple(t.shape) for t in (a1, a2, b1, b2)]} "
                             "do not fit together")
        return old, int(rank)

    def delta(self, weight: torch.Tensor) -> torch.Tensor:
        w = weight.float()
        old, rank = self._old_format(w)
        a1, a2, b1, b2 = (t.to(w.device, torch.float32).flatten(1) for t in (self.a1, self.a2, self.b1, self.b2))
        scale = self.alpha / rank if self.alpha is not None else 1.0
        if old:
            d = (b2 @ b1 + (w.flatten(1) @ a2) @ a1).reshape(w.shape)
        else:
            if w.ndim > 2:
                d = torch.einsum("o i ..., i j -> o j ...", torch.einsum("o i ..., i j -> o j ...", w, a1), a2)
            else:
                d = w @ a1 @ a2
            d = d.reshape(w.shape) + (b1 @ b2).reshape(w.shape)
        return d * scale


def parse_glora(name: str, component: str, module: str, sd: dict[str, torch.Tensor]) -> tuple[GloraLayer, set[str]] | None:
    """The GLoRA layer stored under ``name``, and the keys it used."""
    keys = [f"{name}.{k}" for k in GLORA]
    if keys[0] not in sd:
        return None
    missing = [k for k in keys if k not in sd]
    if missing:
        raise ValueError(f"GLoRA layer {name} lacks {', '.join(missing)}")
    alpha = sd.get(name + ".alpha")
    a1, a2, b1, b2 = (sd[k] for k in keys)
    layer = GloraLayer(component, module, a1, a2, b1, b2, float(alpha) if alpha is not None else None)
    return layer, {*keys, name + ".alpha"}
