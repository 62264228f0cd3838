"""LyCORIS network types in kohya-named files (``lora_unet_<module>.<tensor>``), as weight deltas.

For a module with weight ``W`` (``[out, in]`` or ``[out, in, kh, kw]``) and ``scale = alpha / rank``
(1 without ``alpha``):

* LoHa (Hadamard product): ``(w1_a @ w1_b) * (w2_a @ w2_b) * scale``; with the Tucker cores
  ``hada_t1``/``hada_t2`` each factor is ``einsum("ijkl,jr,ip->prkl", t, b, a)``.
* LoKr (Kronecker product): ``kron(w1, w2) * scale``; either factor may be stored whole
  (``lokr_w1``) or as a product ``lokr_w1_a @ lokr_w1_b`` (``lokr_w2`` with the Tucker core
  ``lokr_t2`` for convs); the rank (for the scale) is that of a decomposed factor, and the scale
  is 1 when both are whole.
* LoCon with a Tucker core (``lora_mid``): ``up @ (mid x down)`` (the conv kernel lives in the core).
* DoRA (a ``dora_scale`` next to any of these, Liu et al. 2024): the weight is re-normed,
  ``W' = m * (W + delta) / ||W + delta||`` with the norm per output channel (per input channel
  when ``dora_scale`` runs along the input axis); the delta used is ``W' - W``, so a strength
  ``s`` gives ``W + s (W' - W)``, as ComfyUI.

OFT / diagonal OFT / BOFT (:mod:`nodegen.models.oft`), GLoRA (:mod:`nodegen.models.glora`) and the
norm-layer changes ``w_norm`` / ``b_norm`` (added to a norm's weight and bias with the strength, as
ComfyUI's "diff" patch) are read here too. DoRA on OFT / BOFT / GLoRA layers is refused.

These follow the LyCORIS reference (KohakuBlueleaf/LyCORIS) and ComfyUI's weight adapters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from nodegen.models.diff_patch import DiffLayer
from nodegen.models.glora import parse_glora
from nodegen.models.oft import parse_oft

LOHA = ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2")
LOKR = ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2")
EXTRA = ("alpha", "dora_scale", "lora_mid.weight")


def _f(t: torch.Tensor | None, device) -> torch.Tensor | None:
    return None if t is None else t.to(device, torch.float32)


def _tucker(t: torch.Tensor, b: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    return torch.einsum("i j k l, j r, i p -> p r k l", t, b, a)


@dataclass
class LycorisLayer:
    component: str
    module: str
    kind: str  # "loha" | "lokr" | "locon_tucker"
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    alpha: float | None = None
    dora_scale: torch.Tensor | None = None

    def _scale(self, rank: int | None) -> float:
        return (self.alpha / rank) if (self.alpha is not None and rank) else 1.0

    def raw_delta(self, weight: torch.Tensor) -> torch.Tensor:
        t = {k: _f(v, weight.device) for k, v in self.tensors.items()}
        if self.kind == "loha":
            rank = t["hada_w1_b"].shape[0]
            if "hada_t1" in t:
                m1 = _tucker(t["hada_t1"], t["hada_w1_b"], t["hada_w1_a"])
                m2 = _tucker(t["hada_t2"], t["hada_w2_b"], t["hada_w2_a"])
            else:
                m1 = t["hada_w1_a"] @ t["hada_w1_b"].flatten(1)
                m2 = t["hada_w2_a"] @ t["hada_w2_b"].flatten(1)
            return (m1 * m2).reshape(weight.shape) * self._scale(rank)
        if self.kind == "lokr":
            rank = None
            w1 = t.get("lokr_w1")
            if w1 is None:
                rank = t["lokr_w1_b"].shape[0]
                w1 = t["lokr_w1_a"] @ t["lokr_w1_b"]
            w2 = t.get("lokr_w2")
            if w2 is None:
                rank = t["lokr_w2_b"].shape[0]
                if "lokr_t2" in t:
                    w2 = _tucker(t["lokr_t2"], t["lokr_w2_b"], t["lokr_w2_a"])
                else:
                    w2 = t["lokr_w2_a"] @ t["lokr_w2_b"].flatten(1)
            if w2.ndim == 4:
                w1 = w1[:, :, None, None]
            return torch.kron(w1, w2).reshape(weight.shape) * self._scale(rank)
        # LoCon with a Tucker core
        down, up, mid = t["lora_down.weight"], t["lora_up.weight"], t["lora_mid.weight"]
        rank = down.shape[0]
        core = torch.einsum("r s k l, s i -> r i k l", mid, down.flatten(1))  # [rank, in, kh, kw]
        return (up.flatten(1) @ core.flatten(1)).reshape(weight.shape) * self._scale(rank)

    def delta(self, weight: torch.Tensor) -> torch.Tensor:
        d = self.raw_delta(weight)
        return d if self.dora_scale is None else dora_delta(weight, d, self.dora_scale)


def dora_delta(weight: torch.Tensor, delta: torch.Tensor, dora_scale: torch.Tensor) -> torch.Tensor:
    """``W' - W`` for DoRA's re-normed weight ``W' = m * (W + delta) / ||W + delta||``."""
    w = weight.float()
    calc = w + delta
    m = dora_scale.to(weight.device, torch.float32)
    if m.shape[0] == calc.shape[0] and m.numel() == calc.shape[0]:  # one magnitude per output channel
        norm = calc.reshape(calc.shape[0], -1).norm(dim=1).reshape(-1, *[1] * (calc.ndim - 1))
        m = m.reshape(norm.shape)
    else:  # per input channel
        norm = calc.transpose(0, 1).reshape(calc.shape[1], -1).norm(dim=1)
        norm = norm.reshape(1, -1, *[1] * (calc.ndim - 2))
        m = m.reshape(norm.shape)
    return calc * (m / (norm + torch.finfo(torch.float32).eps)) - w


#: keys that mark the other LyCORIS types (:mod:`nodegen.models.oft`, :mod:`nodegen.models.glora`)
#: and LyCORIS' norm-layer changes (``w_norm`` / ``b_norm``)
OTHER = ("oft_blocks", "oft_diag", "a1.weight", "w_norm")


def parse_lycoris(sd: dict[str, torch.Tensor], prefixes: dict[str, str]) -> tuple[list, set[str]]:
    """LoHa / LoKr / Tucker-LoCon / OFT / BOFT / GLoRA / norm layers of a kohya-named state dict,
    and the keys they used. ``prefixes`` maps key prefixes (``lora_unet_``) to components."""
    modules: dict[str, dict[str, torch.Tensor]] = {}
    others: set[str] = set()
    for key, t in sd.items():
        for suffix in LOHA + LOKR + ("lora_mid.weight",):
            if key.endswith("." + suffix):
                modules.setdefault(key[: -len(suffix) - 1], {})[suffix] = t
        for suffix in OTHER:
            if key.endswith("." + suffix):
                others.add(key[: -len(suffix) - 1])
    layers, used = [], set()
    for name in sorted(others):
        prefix = next((p for p in prefixes if name.startswith(p)), None)
        if prefix is not None:
            layer, keys = _other_layer(name, prefixes[prefix], name[len(prefix):], sd)
            layers.extend(layer)
            used.update(keys)
    for name, tensors in modules.items():
        prefix = next((p for p in prefixes if name.startswith(p)), None)
        if prefix is None:
            continue
        if "hada_w1_a" in tensors:
            kind = "loha"
        elif any(k.startswith("lokr_") for k in tensors):
            kind = "lokr"
        else:
            kind = "locon_tucker"
            for k in ("lora_down.weight", "lora_up.weight"):
                if name + "." + k in sd:
                    tensors[k] = sd[name + "." + k]
        alpha = sd.get(name + ".alpha")
        layers.append(LycorisLayer(prefixes[prefix], name[len(prefix):], kind, tensors,
                                   float(alpha) if alpha is not None else None, sd.get(name + ".dora_scale")))
        used.update(f"{name}.{k}" for k in (*tensors, "alpha", "dora_scale"))
    return layers, used


def _other_layer(name: str, component: str, module: str, sd: dict[str, torch.Tensor]) -> tuple[list, set[str]]:
    """The OFT / BOFT / GLoRA layer or the norm changes stored under ``name``, and their keys."""
    found = parse_oft(name, component, module, sd) or parse_glora(name, component, module, sd)
    if found is not None:
        if name + ".dora_scale" in sd:
            kind = getattr(found[0], "kind", "glora").upper().replace("GLORA", "GLoRA").replace("_", " ")
            raise ValueError(f"layer {name}: DoRA (dora_scale) combined with {kind} is not read by nodegen")
        return [found[0]], found[1]
    w_norm = sd.get(name + ".w_norm")
    if w_norm is None:
        return [], set()
    # ComfyUI: the norm's weight and bias change by w_norm / b_norm (a "diff" patch)
    layers = [DiffLayer(component, module, "weight", w_norm)]
    if name + ".b_norm" in sd:
        layers.append(DiffLayer(component, module, "bias", sd[name + ".b_norm"]))
    return layers, {name + ".w_norm", name + ".b_norm", name + ".alpha"}
