"""Orthogonal finetuning (LyCORIS OFT, its older diagonal OFT, and butterfly OFT) in kohya-named
files, as weight patches computed the way ComfyUI's weight adapters compute them.

These types rotate a weight rather than add a low-rank product to it. The output channels of
``W`` are split into blocks and each block is multiplied by an orthogonal matrix made from the
file's skew-symmetric blocks by the Cayley transform::

    Q = B - B^T          (B: the file's ``oft_blocks``)
    Q <- Q * alpha / |Q|  when alpha > 0 and |Q| > alpha  (``alpha`` is a norm constraint here,
                                                           not LoRA's scale)
    R = (I + Q) (I - Q)^-1

* OFT (``oft_blocks`` of shape ``[blocks, size, size]``): ComfyUI's ``OFTAdapter``; each block of
  ``W`` becomes ``R^T W_block`` (``einsum("k n m, k n ... -> k m ...")``). At strength ``s``
  ComfyUI adds ``s * ((s R - s I)^T W)``, i.e. the change grows with ``s^2``; nodegen does the same.
  ComfyUI reads but does not apply OFT's ``rescale``; nodegen does the same.
* Diagonal OFT as older LyCORIS saved it (``oft_diag``, ``[blocks, size, size]``): LyCORIS'
  ``DiagOFTModule.make_weight``, ``W' = (oft_diag * s + I)^T W`` per block, so the change is
  ``s * oft_diag^T W`` (ComfyUI does not read this key).
* BOFT (``oft_blocks`` of shape ``[m, blocks, size, size]``): ComfyUI's ``BOFTAdapter``; ``m``
  butterfly stages, stage ``i`` pairs rows ``2^i * size/2`` apart and applies that stage's ``R``
  blended with the identity at strength ``s`` (``s R + (1 - s) I``); ``rescale`` (one factor per
  output channel) multiplies the result, and ComfyUI adds ``s`` times the change.

A file without ``alpha`` has no constraint (ComfyUI's OFT reads it so; its BOFT fails on such a file).

Where ComfyUI and the LyCORIS reference (KohakuBlueleaf/LyCORIS, ``DiagOFTModule`` /
``ButterflyOFTModule``) differ, nodegen does as ComfyUI: LyCORIS bounds ``|Q|`` by ``alpha * out_dim``
rather than ``alpha``, applies OFT's ``rescale``, and scales the change linearly with its multiplier.
At strength 1 with no constraint reached and no rescale, both give the same weight (checked against
lycoris-lora's modules for a linear and a conv layer).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def cayley(blocks: torch.Tensor, constraint: float) -> torch.Tensor:
    """Orthogonal ``R = (I + Q)(I - Q)^-1`` for each block, with ``Q = B - B^T`` scaled down to
    norm ``constraint`` when larger (the norm of all blocks together)."""
    eye = torch.eye(blocks.shape[-1], dtype=blocks.dtype, device=blocks.device)
    q = blocks - blocks.transpose(-1, -2)
    if constraint > 0:
        norm = torch.norm(q) + 1e-8
        if norm > constraint:
            q = q * constraint / norm
    return (eye + q) @ torch.linalg.inv(eye - q)


@dataclass
class OftLayer:
    component: str
    module: str
    kind: str  # "oft" | "oft_diag" | "boft"
    blocks: torch.Tensor
    alpha: float | None = None
    rescale: torch.Tensor | None = None

    def delta(self, weight: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
        """The change to ``weight`` at ``strength`` (the strength already applied)."""
        w = weight.float()
        blocks = self.blocks.to(w.device, torch.float32)
        covered = blocks.shape[-3] * blocks.shape[-1]
        if covered != w.shape[0] or (self.kind == "boft" and w.shape[0] % (2 ** (blocks.shape[0] - 1) * blocks.shape[-1])):
            raise ValueError(f"{self.kind.upper()} layer {self.module}: {blocks.shape[-3]} blocks of "
                             f"{blocks.shape[-1]} do not fit its weight of shape {list(w.shape)}")
        if self.kind == "oft_diag":
            return strength * _per_block(blocks, w)
        constraint = self.alpha or 0.0
        r = cayley(blocks, constraint)
        eye = torch.eye(r.shape[-1], dtype=r.dtype, device=r.device)
        if self.kind == "oft":
            return strength * _per_block(r * strength - strength * eye, w)
        return strength * (self._butterfly(r, eye, w, strength) - w)

    delta.strength_aware = True  # type: ignore[attr-defined]  # nodegen.models.patching

    def _butterfly(self, r: torch.Tensor, eye: torch.Tensor, w: torch.Tensor, strength: float) -> torch.Tensor:
        stages, _, size = r.shape[:3]
        half = size // 2
        x = w
        for i in range(stages):
            rot = r[i] if strength == 1 else r[i] * strength + (1 - strength) * eye
            k = 2**i * half
            x = x.unflatten(0, (-1, 2, k)).transpose(1, 2).flatten(0, 2).unflatten(0, (-1, size))
            x = torch.einsum("b i j, b j ... -> b i ...", rot, x)
            x = x.flatten(0, 1).unflatten(0, (-1, k, 2)).transpose(1, 2).flatten(0, 2)
        if self.rescale is not None:
            x = x * self.rescale.to(x.device, torch.float32)
        return x


def _per_block(m: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``m[k]^T`` applied to the ``k``-th block of ``w``'s output channels."""
    n, size = m.shape[0], m.shape[1]
    out = torch.einsum("k n m, k n ... -> k m ...", m, w.reshape(n, size, *w.shape[1:]))
    return out.reshape(w.shape)


def parse_oft(name: str, component: str, module: str, sd: dict[str, torch.Tensor]) -> tuple[OftLayer, set[str]] | None:
    """The OFT / BOFT / diagonal-OFT layer stored under ``name``, and the keys it used."""
    alpha = sd.get(name + ".alpha")
    alpha_f = float(alpha) if alpha is not None else None
    rescale = sd.get(name + ".rescale")
    used = {name + ".alpha", name + ".rescale"}
    blocks = sd.get(name + ".oft_blocks")
    if blocks is not None and blocks.ndim in (3, 4):
        kind = "oft" if blocks.ndim == 3 else "boft"
        return OftLayer(component, module, kind, blocks, alpha_f, rescale), used | {name + ".oft_blocks"}
    diag = sd.get(name + ".oft_diag")
    if diag is not None and diag.ndim == 3:
        return OftLayer(component, module, "oft_diag", diag, alpha_f), used | {name + ".oft_diag"}
    return None
