"""Hypernetworks (the A1111 / NovelAI kind: small MLPs on the attention inputs), loaded and applied
as ComfyUI's HypernetworkLoader does (comfy_extras/nodes_hypernetwork.py).

A file holds, for each width ``dim`` of an attention's context (320, 640, 1280 for SD1's
self-attention, 768 for its cross-attention), two MLPs: one for the keys' input, one for the
values'. In every attention of the UNet whose context has that width,

    key = to_k(c + mlp_k(c) * strength),   value = to_v(c + mlp_v(c) * strength)

(``c`` the context: the hidden states for self-attention, the text for cross-attention). The MLPs
follow the file's ``activation_func``, ``is_layer_norm``, ``activate_output`` and dropout flags
(dropout is a no-op when sampling) as ComfyUI reads them: it counts a LayerNorm as a layer when
deciding which Linear is the last, so with ``is_layer_norm`` the last Linear is followed by the
activation too (A1111 leaves it out); nodegen reads them the same way, for the same images.
Several hypernetworks apply in the order they were added.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

ACTIVATIONS = {"linear": torch.nn.Identity, "relu": torch.nn.ReLU, "leakyrelu": torch.nn.LeakyReLU,
               "elu": torch.nn.ELU, "swish": torch.nn.Hardswish, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid,
               "softsign": torch.nn.Softsign, "mish": torch.nn.Mish}


class Hypernetwork:
    """The MLPs of one file: ``nets[dim] = (mlp_k, mlp_v)``."""

    def __init__(self, nets: dict[int, tuple[torch.nn.Module, torch.nn.Module]], source: str = "") -> None:
        self.nets = nets
        self.source = source


def load_hypernetwork(path: str | Path) -> Hypernetwork:
    """Read a hypernetwork file (a pickled dict, read with ``weights_only``; or safetensors with
    ``DIM.INDEX.`` key prefixes)."""
    sd = _read(Path(path))
    activation = sd.get("activation_func", "linear")
    if activation not in ACTIVATIONS:
        raise ValueError(f"{path}: unknown activation_func {activation!r}; known: {', '.join(ACTIVATIONS)}")
    flags = {k: bool(sd.get(k, False)) for k in ("is_layer_norm", "use_dropout", "activate_output",
                                                 "last_layer_dropout")}
    nets = {}
    for key, pair in sd.items():
        try:
            dim = int(key)
        except (TypeError, ValueError):
            continue
        if not isinstance(pair, (list, tuple)) or len(pair) < 2:
            raise ValueError(f"{path}: entry {key} is not a pair of key / value networks")
        nets[dim] = (_mlp(pair[0], activation, **flags), _mlp(pair[1], activation, **flags))
    if not nets:
        raise ValueError(f"{path}: no hypernetwork layers (numbered entries) in this file")
    return Hypernetwork(nets, str(path))


def _read(path: Path) -> dict:
    if path.suffix in (".safetensors", ".sft"):
        from safetensors.torch import load_file

        flat = load_file(str(path))
        sd: dict = {}
        for k, v in flat.items():
            dim, index, name = k.split(".", 2)
            pair = sd.setdefault(dim, [{}, {}])
            pair[int(index)][name] = v
        return sd
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError) as e:  # not a (safe) pickle
        raise ValueError(f"{path} is not a readable hypernetwork file ({type(e).__name__}: {e})") from e
    if not isinstance(sd, dict):
        raise ValueError(f"{path} is not a hypernetwork (a dict of layers)")
    return sd


def _mlp(weights: dict, activation: str, *, is_layer_norm: bool, use_dropout: bool, activate_output: bool,
         last_layer_dropout: bool) -> torch.nn.Sequential:
    """ComfyUI's reading of one network: Linear layers in file order, each followed by the
    activation (not after the last unless ``activate_output``), a LayerNorm (the next weights in
    order) with ``is_layer_norm``, and dropout where the flags say."""
    names = [k[: -len(".weight")] for k in weights if k.endswith(".weight")]
    layers: list[torch.nn.Module] = []
    i = 0
    while i < len(names):
        last, penultimate = i == len(names) - 1, i == len(names) - 2
        w, b = weights[names[i] + ".weight"], weights[names[i] + ".bias"]
        linear = torch.nn.Linear(w.shape[1], w.shape[0])
        linear.load_state_dict({"weight": w, "bias": b})
        layers.append(linear)
        if activation != "linear" and (not last or activate_output):
            layers.append(ACTIVATIONS[activation]())
        if is_layer_norm:
            i += 1
            ln_w, ln_b = weights[names[i] + ".weight"], weights[names[i] + ".bias"]
            norm = torch.nn.LayerNorm(ln_w.shape[0])
            norm.load_state_dict({"weight": ln_w, "bias": ln_b})
            layers.append(norm)
        if use_dropout and not last and (not penultimate or last_layer_dropout):
            layers.append(torch.nn.Dropout(p=0.3))
        i += 1
    return torch.nn.Sequential(*layers).eval()


class _HyperInput(torch.nn.Module):
    """``linear`` (an attention's to_k or to_v) fed ``x + mlp(x) * strength`` for each (mlp, strength) in turn."""

    def __init__(self, linear: torch.nn.Module, steps: list[tuple[torch.nn.Module, float]]) -> None:
        super().__init__()
        self.linear = linear
        self.mlps = torch.nn.ModuleList([m for m, _ in steps])
        self.strengths = [s for _, s in steps]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for mlp, strength in zip(self.mlps, self.strengths, strict=True):
            x = x + mlp(x.float()).to(x.dtype) * strength  # the networks stay in float32
        return self.linear(x)


@contextmanager
def installed(unet, applied: list[tuple[Hypernetwork, float]] | None) -> Iterator[None]:
    """Within the block, every attention of ``unet`` whose context width has networks in
    ``applied`` (``(hypernetwork, strength)`` in order) takes its key and value inputs through them."""
    if not applied:
        yield
        return
    from diffusers.models.attention_processor import Attention

    device = next(unet.parameters()).device
    swapped = []
    for module in unet.modules():
        if not isinstance(module, Attention):
            continue
        width = getattr(module.to_k, "in_features", None)
        steps_k, steps_v = [], []
        for hn, strength in applied:
            nets = hn.nets.get(width)
            if nets is not None:
                steps_k.append((nets[0].to(device), strength))
                steps_v.append((nets[1].to(device), strength))
        if steps_k:
            swapped.append((module, module.to_k, module.to_v))
            module.to_k, module.to_v = _HyperInput(module.to_k, steps_k), _HyperInput(module.to_v, steps_v)
    try:
        yield
    finally:
        for module, to_k, to_v in swapped:
            module.to_k, module.to_v = to_k, to_v
