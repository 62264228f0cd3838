"""VGG-19 feature extractor for style transfer (the VGG type), from a user weights file in
torchvision's VGG-19 state-dict layout (``features.N.weight`` / ``features.N.bias``; the
``classifier.*`` part is ignored). Widths are read from the tensors, so a file holding only the
first blocks, or a narrow test network with the same layer structure, also loads.

Layer names follow the paper: ``conv1_1``, ``relu1_1``, ``pool1``, ... ``relu5_4``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F

#: VGG-19 ("E"): convolutions per block.
BLOCKS = (2, 2, 4, 4, 4)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def layer_table() -> list[tuple[int, str, str]]:
    """(torchvision index, kind, name) for VGG-19's ``features``."""
    out = []
    i = 0
    for b, n in enumerate(BLOCKS, start=1):
        for k in range(1, n + 1):
            out.append((i, "conv", f"conv{b}_{k}"))
            out.append((i + 1, "relu", f"relu{b}_{k}"))
            i += 2
        out.append((i, "pool", f"pool{b}"))
        i += 1
    return out


LAYER_NAMES = [name for _i, _k, name in layer_table()]


class VGGFeatures(torch.nn.Module):
    """VGG-19 features up to the last convolution present in the weights."""

    def __init__(self, weights: dict[str, torch.Tensor], source: str = "") -> None:
        super().__init__()
        self.source = source
        self.convs = torch.nn.ModuleDict()
        self.layers: list[tuple[str, str]] = []  # (kind, name) in order
        prev_out = 3
        for idx, kind, name in layer_table():
            if kind == "conv":
                w = weights.get(f"features.{idx}.weight")
                if w is None:
                    break
                b = weights.get(f"features.{idx}.bias")
                if w.dim() != 4 or w.shape[1] != prev_out or w.shape[2:] != (3, 3) or b is None \
                        or b.shape != (w.shape[0],):
                    raise ValueError(
                        f"{source or 'VGG weights'}: features.{idx} ({name}) has shape "
                        f"{tuple(w.shape)}; expected [out, {prev_out}, 3, 3] with a bias "
                        f"(not a VGG-19 in torchvision's layout?)")
                conv = torch.nn.Conv2d(w.shape[1], w.shape[0], 3, padding=1)
                with torch.no_grad():
                    conv.weight.copy_(w.float())
                    conv.bias.copy_(b.float())
                self.convs[name] = conv
                prev_out = w.shape[0]
            self.layers.append((kind, name))
        # drop trailing relu/pool entries after the last conv that exists
        if not self.convs:
            raise ValueError(f"{source or 'VGG weights'}: no 'features.0.weight' tensor; this is "
                             f"not a VGG-19 state dict in torchvision's layout")
        last_conv = max(i for i, (k, _n) in enumerate(self.layers) if k == "conv")
        # keep the relu (and pool) right after the last conv
        keep = last_conv + 1
        while keep < len(self.layers) and self.layers[keep][0] != "conv":
            keep += 1
        self.layers = self.layers[:keep]
        self.requires_grad_(False)
        self.eval()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    @property
    def available(self) -> list[str]:
        return [n for _k, n in self.layers]

    def check_layers(self, names: list[str], what: str) -> None:
        for n in names:
            if n not in LAYER_NAMES:
                raise ValueError(f"NeuralStyleTransfer: {what} {n!r} is not a VGG-19 layer; use "
                                 f"names like conv4_2, relu1_1, pool3")
            if n not in self.available:
                raise ValueError(f"NeuralStyleTransfer: {what} {n!r} is deeper than the layers in "
                                 f"{os.path.basename(self.source) or 'the weights'} (last: "
                                 f"{self.available[-1]})")

    def forward(self, x: torch.Tensor, wanted: set[str]) -> dict[str, torch.Tensor]:
        """``x`` [B,3,H,W] in [0,1] -> {layer name: activation} for the wanted layers."""
        h = (x - self.mean) / self.std
        out: dict[str, torch.Tensor] = {}
        remaining = set(wanted)
        for kind, name in self.layers:
            if not remaining:
                break
            if kind == "conv":
                h = self.convs[name](h)
            elif kind == "relu":
                h = F.relu(h)
            else:
                h = F.max_pool2d(h, 2, 2)
            if name in remaining:
                out[name] = h
                remaining.discard(name)
        return out


def load_vgg19(path: str | os.PathLike) -> VGGFeatures:
    """Load VGG-19 weights safely (safetensors, or a pickle through ``weights_only=True``)."""
    from nodegen.upscale.model import read_state_dict

    p = Path(path)
    try:
        sd = read_state_dict(p)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"VGG weights not found: {p}") from e
    for wrap in ("state_dict", "model"):
        if wrap in sd and isinstance(sd[wrap], dict):
            sd = sd[wrap]
    # also accept a bare features state dict ("0.weight", ...) or a "module." prefix
    if not any(k.startswith("features.") for k in sd):
        sd = {("features." + k if k.split(".")[0].isdigit() else k): v for k, v in sd.items()}
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    return VGGFeatures(sd, str(p))


def random_vgg19_state_dict(seed: int = 0, width_div: int = 1, blocks: int = 5) -> dict:
    """Random weights in torchvision's layout (``width_div`` narrows every layer, for tests)."""
    g = torch.Generator().manual_seed(seed)
    widths = [64, 128, 256, 512, 512]
    sd = {}
    prev = 3
    for idx, kind, name in layer_table():
        b = int(name[4])  # conv3_2, relu3_2, pool3 -> block 3
        if b > blocks:
            break
        if kind == "conv":
            out = max(1, widths[b - 1] // width_div)
            fan_in = prev * 9
            sd[f"features.{idx}.weight"] = torch.randn(out, prev, 3, 3, generator=g) * (2 / fan_in) ** 0.5
            sd[f"features.{idx}.bias"] = torch.randn(out, generator=g) * 0.01
            prev = out
    return sd
