"""Black Forest Labs' Flux.1 control LoRAs (``flux1-canny-dev-lora``, ``flux1-depth-dev-lora``):
LoRAs that turn Flux.1 dev into a Canny / Depth model, used as ComfyUI's Flux examples use them
(LoraLoaderModelOnly on flux1-dev, then InstructPixToPixConditioning with the control image).

The file, in the original (BFL) module names:

* ``<module>.lora_A.weight`` / ``.lora_B.weight`` for every linear layer (no alpha: scale 1) and
  ``<module>.lora_B.bias`` (the up layer's bias, added to the layer's bias);
* ``img_in.lora_A.weight`` is ``[rank, 128]`` while flux1-dev's ``img_in`` takes 64 features:
  the model's input layer is widened to 128, its base weight zero-padded (diffusers'
  ``_maybe_expand_transformer_param_shape_or_error_``, ComfyUI's ``reshape_weight``), so the
  control image's latents (16 more channels, packed 2x2) reach the model;
* ``<...>.norm.query_norm.scale`` / ``key_norm.scale``: whole RMSNorm weights that replace the
  model's, whatever the strength (diffusers loads them over the model's norms; ComfyUI ``set``s).

ComfyUI's spelling of the same file (``comfy/lora_convert.py``: ``diffusion_model.`` prefix,
``.diff_b`` for the up layer's bias, ``_norm.set_weight``, ``img_in.reshape_weight``) is read too.

The changes are weight patches (:mod:`nodegen.models.patching`) of the patched MODEL only: the
widened input layer exists inside a run of that MODEL and the base model keeps its own, so other
runs (and models without the LoRA) are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nodegen.models.flow_lora import lookup, transformer_table
from nodegen.models.flux_convert import _NORMS

_COMFY_PREFIX = "diffusion_model."
_COMFY_SPELLING = ((".diff_b", ".lora_B.bias"), ("_norm.set_weight", "_norm.scale"))


@dataclass
class LoraPair:
    """A LoRA layer's ``lora_A`` (down) and ``lora_B`` (up) weights; the file has no alphas: scale 1."""
    component: str
    module: str
    down: torch.Tensor
    up: torch.Tensor
    scale: float = 1.0


@dataclass
class LoraBias:
    """The up layer's bias of a LoRA layer (``lora_B.bias``): added to the module's bias."""
    component: str
    module: str
    bias: torch.Tensor


@dataclass
class NormWeight:
    """A whole RMSNorm weight (``query_norm.scale``) that replaces the model's."""
    component: str
    module: str  # e.g. double_blocks.0.img_attn.norm.query_norm
    value: torch.Tensor


def is_control_lora(keys) -> bool:
    """A Flux control LoRA in BFL's or ComfyUI's spelling (ComfyUI's own test)."""
    names = {k.removeprefix(_COMFY_PREFIX) for k in keys}
    return "img_in.lora_A.weight" in names and any(
        k in names for k in ("single_blocks.0.norm.key_norm.scale", "single_blocks.0.norm.key_norm.set_weight"))


def bfl_spelling(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``sd`` in BFL's key names (ComfyUI's spelling converted back; ``reshape_weight`` dropped:
    the widening follows from ``img_in.lora_A``'s shape)."""
    out = {}
    for key, value in sd.items():
        key = key.removeprefix(_COMFY_PREFIX)
        if key.endswith(".reshape_weight"):
            continue
        for theirs, ours in _COMFY_SPELLING:
            if key.endswith(theirs):
                key = key[: -len(theirs)] + ours
        out[key] = value
    return out


def parse_control_lora(sd: dict[str, torch.Tensor]) -> tuple[list, list[str]]:
    """``(layers, unknown keys)``: the file's LoRA pairs, up-layer biases and norm weights."""
    sd = bfl_spelling(sd)
    layers: list = []
    unknown: list[str] = []
    for key, value in sd.items():
        if key.endswith(".lora_A.weight"):
            module = key[: -len(".lora_A.weight")]
            up = sd.get(module + ".lora_B.weight")
            if up is None:
                unknown.append(key)
                continue
            layers.append(LoraPair("unet", module, value, up))
        elif key.endswith(".lora_B.bias"):
            layers.append(LoraBias("unet", key[: -len(".lora_B.bias")], value))
        elif key.endswith("_norm.scale"):
            layers.append(NormWeight("unet", key[: -len(".scale")], value))
        elif not key.endswith(".lora_B.weight"):
            unknown.append(key)
    return layers, unknown


@dataclass
class _Rows:
    """Rows ``start:end`` of a LoRA layer's delta (halves swapped for the final modulation, as the
    checkpoint converter swaps them), at the LoRA's own width when it is wider than the weight."""
    layer: LoraPair
    start: int
    end: int | None
    swap: bool
    #: set when the LoRA takes more input features than the weight: the weight is zero-padded to it
    widened_shape: tuple[int, ...] | None = None

    def __call__(self, weight: torch.Tensor) -> torch.Tensor:
        up = self.layer.up.to(weight.device, torch.float32).flatten(1)
        down = self.layer.down.to(weight.device, torch.float32).flatten(1)
        return _rows(up @ down * self.layer.scale, self.start, self.end, self.swap).reshape(
            self.widened_shape or weight.shape)


@dataclass
class _BiasRows:
    bias: torch.Tensor
    start: int
    end: int | None
    swap: bool

    def __call__(self, weight: torch.Tensor) -> torch.Tensor:
        return _rows(self.bias.to(weight.device, torch.float32), self.start, self.end, self.swap)


@dataclass
class _Replace:
    """A whole new value for the weight, whatever the strength."""
    value: torch.Tensor
    replaces: bool = True

    def __call__(self, weight: torch.Tensor) -> torch.Tensor:
        return self.value.to(weight.device, torch.float32).reshape(weight.shape)


def _rows(t: torch.Tensor, start: int, end: int | None, swap: bool) -> torch.Tensor:
    if swap:
        a, b = t.chunk(2, dim=0)
        t = torch.cat([b, a], dim=0)
    return t[start:end]


def _norm_param(module: str) -> str | None:
    """``double_blocks.0.img_attn.norm.query_norm`` -> ``transformer_blocks.0.attn.norm_q.weight``."""
    parts = module.split(".")
    if len(parts) < 3 or not parts[1].isdigit():
        return None
    kind, i, rest = parts[0], parts[1], ".".join(parts[2:]) + ".scale"
    if kind == "double_blocks" and rest in _NORMS:
        return f"transformer_blocks.{i}.{_NORMS[rest]}"
    single = {"norm.query_norm.scale": "attn.norm_q.weight", "norm.key_norm.scale": "attn.norm_k.weight"}
    if kind == "single_blocks" and rest in single:
        return f"single_transformer_blocks.{i}.{single[rest]}"
    return None


def control_patches(lora, transformer: torch.nn.Module) -> tuple[dict, list[str]]:
    """``(patch_dict, unmatched)`` for a Flux transformer (diffusers parameter names)."""
    table = transformer_table(transformer, "flux")
    params = dict(transformer.named_parameters())
    patches: dict = {}
    unmatched: list[str] = []
    for layer in lora.layers:
        if isinstance(layer, NormWeight):
            name = _norm_param(layer.module)
            if name is None or name not in params:
                unmatched.append(layer.module)
                continue
            if params[name].numel() != layer.value.numel():
                raise ValueError(f"{lora.path}: {layer.module}.scale has {layer.value.numel()} values, "
                                 f"the model's {name} {params[name].numel()}: is it for another Flux model?")
            patches[name] = _Replace(layer.value)
            continue
        targets = lookup(table, layer.module)
        if targets is None:
            unmatched.append(layer.module)
            continue
        for name, start, end, swap in targets:
            if name not in params:  # e.g. guidance_in on a model without guidance (schnell)
                unmatched.append(layer.module)
            elif isinstance(layer, LoraPair):
                patches[name] = _rows_delta(lora.path, layer, params[name], start, end, swap)
            else:
                bias = name[: -len(".weight")] + ".bias"
                if bias not in params:
                    unmatched.append(layer.module + ".bias")
                    continue
                patches[bias] = _BiasRows(layer.bias, start, end, swap)
    return patches, unmatched


def _rows_delta(path: str, layer: LoraPair, weight: torch.Tensor, start: int, end: int | None, swap: bool) -> _Rows:
    """The LoRA delta for ``weight``; wider than it (the input layer) when the LoRA takes more
    input features, never narrower."""
    from nodegen.models.gguf_linear import logical_shape  # GGUF blocks: the shape of their values

    shape = logical_shape(weight)
    features = int(layer.down.flatten(1).shape[1])
    rows = len(range(int(layer.up.shape[0]))[start:end])
    if len(shape) < 2 or rows != shape[0]:
        raise ValueError(f"{path}: its layer {layer.module} changes {rows} rows of a weight of shape "
                         f"{list(shape)}: is it for another Flux model?")
    if len(shape) > 2 or features == shape[1]:
        return _Rows(layer, start, end, swap)
    if features < shape[1]:
        raise ValueError(f"{path}: its layer {layer.module} takes {features} input features, the model's "
                         f"{shape[1]}: is it for another Flux model?")
    return _Rows(layer, start, end, swap, (int(shape[0]), features))
