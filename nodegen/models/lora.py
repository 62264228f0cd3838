"""LoRA files (kohya and diffusers/PEFT formats) turned into weight patches.

Formats read:

* kohya / sd-scripts: ``lora_unet_<module>.lora_down.weight``, ``.lora_up.weight``, ``.alpha``;
  ``lora_te_`` / ``lora_te1_`` (first text encoder), ``lora_te2_`` (SDXL's second). UNet module
  names may be diffusers' (SD1 kohya) or the original LDM ones (SDXL kohya:
  ``input_blocks_4_1_...``); both are matched.
* Black Forest Labs' Flux.1 Canny / Depth LoRAs (which also widen the input layer and carry
  biases and norm weights): see :mod:`nodegen.models.flux_control_lora`;
* LyCORIS types in kohya names (LoHa, LoKr, LoCon with a Tucker core) and DoRA's ``dora_scale``:
  see :mod:`nodegen.models.lycoris`; OFT / BOFT (:mod:`nodegen.models.oft`), GLoRA
  (:mod:`nodegen.models.glora`) and norm-layer changes (``w_norm`` / ``b_norm``);
* diffusers / PEFT: ``unet.<module>.lora_A.weight`` / ``lora_B.weight``, ``text_encoder.``,
  ``text_encoder_2.``; the older ``.lora.down/up`` and ``processor.to_q_lora.down`` spellings;
  ``<module>.alpha`` network alphas; PEFT ``lora_alpha`` from the file's
  ``lora_adapter_metadata``; PEFT's DoRA magnitude ``<module>.lora_magnitude_vector`` (one per
  output channel) and its ``base_model.model.`` prefix.

A LoRA's delta for weight ``W`` is ``up @ down * alpha / rank`` (conv LoRAs reshaped), added
with ``strength`` on use (see :mod:`nodegen.models.patching`); the base weights are shared
and never changed.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from nodegen.models.detect import detect, require
from nodegen.models.diff_patch import DiffLayer
from nodegen.models.files import load_state_dict


@dataclass
class LoraLayer:
    component: str  # "unet", "text_encoder", "text_encoder_2"
    module: str  # module name as spelled in the file (dots or underscores)
    down: torch.Tensor
    up: torch.Tensor
    alpha: float | None = None
    #: DoRA's magnitude (see :func:`nodegen.models.lycoris.dora_delta`)
    dora_scale: torch.Tensor | None = None

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    @property
    def scale(self) -> float:
        return (self.alpha / self.rank) if self.alpha is not None else 1.0

    def delta(self, weight: torch.Tensor) -> torch.Tensor:
        up = self.up.to(weight.device, torch.float32).flatten(1)
        down = self.down.to(weight.device, torch.float32).flatten(1)
        d = (up @ down).reshape(weight.shape) * self.scale
        if self.dora_scale is not None:
            from nodegen.models.lycoris import dora_delta

            d = dora_delta(weight, d, self.dora_scale)
        return d


@dataclass
class LoraFile:
    path: str
    layers: list = field(default_factory=list)  # LoraLayer, DiffLayer or lycoris.LycorisLayer
    layout: str = ""
    #: keys that are not LoRA weights nodegen reads (reported when the file is read)
    unknown: list = field(default_factory=list)


_KOHYA_PREFIX = {"lora_unet_": "unet", "lora_te_": "text_encoder", "lora_te1_": "text_encoder",
                 "lora_te2_": "text_encoder_2"}
_DIFFUSERS_PREFIX = ("unet.", "text_encoder.", "text_encoder_2.")
#: ComfyUI's LoraSave / trainer names: its model state-dict keys (LDM UNet names; each text
#: encoder under ``text_encoders.clip_<l|h|g>.transformer.`` in transformers names).
_COMFY_PREFIX = {"diffusion_model.": "unet", "text_encoders.clip_l.transformer.": "text_encoder",
                 "text_encoders.clip_h.transformer.": "text_encoder",
                 "text_encoders.clip_g.transformer.": "text_encoder_2"}


def _component(base: str) -> tuple[str, str]:
    """``(component, module)`` of a diffusers / PEFT / ComfyUI module name."""
    for prefix, comp in _COMFY_PREFIX.items():
        if base.startswith(prefix):
            return comp, base[len(prefix):]
    comp = next((p[:-1] for p in _DIFFUSERS_PREFIX if base.startswith(p)), "unet")
    return comp, base[len(comp) + 1:] if base.startswith(comp + ".") else base
#: diffusers' pre-PEFT spellings (its ``UNET_TO_DIFFUSERS`` / ``DIFFUSERS_OLD_TO_PEFT`` tables):
#: attention processors ``attn1.processor.to_q_lora.down.weight`` (text encoders: ``self_attn.
#: to_q_lora`` for ``q_proj``) and ``lora_linear_layer``.
_OLD_NAMES = (("to_q_lora.", "to_q.lora."), ("to_k_lora.", "to_k.lora."), ("to_v_lora.", "to_v.lora."),
              ("to_out_lora.", "to_out.0.lora."), (".lora_linear_layer.", ".lora."))
_OLD_TEXT_NAMES = (("to_q_lora.", "q_proj.lora."), ("to_k_lora.", "k_proj.lora."), ("to_v_lora.", "v_proj.lora."),
                   ("to_out_lora.", "out_proj.lora."), (".lora_linear_layer.", ".lora."))


def _metadata_alphas(path: Path) -> dict:
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        raw = meta.get("lora_adapter_metadata")
        return json.loads(raw) if raw else {}
    except Exception:  # noqa: BLE001 - optional metadata
        return {}


def parse_lora(sd: dict[str, torch.Tensor], path: str = "<memory>", metadata: dict | None = None) -> LoraFile:
    """Group a LoRA state dict into :class:`LoraLayer` entries."""
    from nodegen.models.flux_control_lora import is_control_lora, parse_control_lora

    if is_control_lora(sd):  # BFL's Flux Canny / Depth LoRAs: they also widen the input layer
        layers, unknown = parse_control_lora(sd)
        if unknown:
            import logging

            logging.getLogger(__name__).warning("%s: %d tensors are not LoRA weights nodegen reads and were "
                                                "ignored (e.g. %s)", path, len(unknown), ", ".join(sorted(unknown)[:3]))
        return LoraFile(path, layers, "bfl_control", sorted(unknown))
    out = LoraFile(path)
    unknown = []
    if any(k.startswith(tuple(_KOHYA_PREFIX)) for k in sd):
        out.layout = "kohya"
        from nodegen.models.lycoris import parse_lycoris

        try:
            lycoris, used = parse_lycoris(sd, _KOHYA_PREFIX)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from e
        out.layers.extend(lycoris)
        for key in sd:
            if key in used:
                continue
            if not key.endswith(".lora_down.weight"):
                if not key.endswith((".lora_up.weight", ".alpha", ".dora_scale")):
                    unknown.append(key)
                continue
            name = key[: -len(".lora_down.weight")]
            prefix = next((p for p in _KOHYA_PREFIX if name.startswith(p)), None)
            if prefix is None or name + ".lora_up.weight" not in sd:
                unknown.append(key)
                continue
            alpha = sd.get(name + ".alpha")
            out.layers.append(LoraLayer(_KOHYA_PREFIX[prefix], name[len(prefix):], sd[key],
                                        sd[name + ".lora_up.weight"],
                                        float(alpha) if alpha is not None else None,
                                        sd.get(name + ".dora_scale")))
    else:
        out.layout = "diffusers"
        meta = metadata or {}
        normal = {_normal(k): k for k in sd}
        for key in sd:
            k = _normal(key)
            m = re.match(r"^(.*)\.(lora_A|lora\.down|lora_down)\.weight$", k)
            diff = re.match(r"^(.*)\.(diff|diff_b)$", k)
            if diff and diff.group(1).startswith(tuple(_COMFY_PREFIX)):
                comp, module = _component(diff.group(1))
                out.layers.append(DiffLayer(comp, module, "bias" if diff.group(2) == "diff_b" else "weight",
                                            sd[key]))
                continue
            if not m:
                if not re.search(r"(lora_B|lora\.up|lora_up)\.weight$|\.alpha$|\.lora_magnitude_vector(\.weight)?$", k):
                    unknown.append(key)
                continue
            base = m.group(1)
            up_key = next((normal[u] for u in (f"{base}.lora_B.weight", f"{base}.lora.up.weight",
                                                f"{base}.lora_up.weight") if u in normal), None)
            if up_key is None:
                unknown.append(key)
                continue
            comp, module = _component(base)
            alpha = None
            for ak in (f"{base}.alpha", f"{key.rsplit('.', 3)[0]}.alpha"):
                if ak in sd:
                    alpha = float(sd[ak])
            if alpha is None and comp in meta and isinstance(meta[comp], dict):
                alpha = meta[comp].get("lora_alpha")
            if alpha is None and f"{comp}.lora_alpha" in meta:
                alpha = float(meta[f"{comp}.lora_alpha"])
            out.layers.append(LoraLayer(comp, module.removeprefix(_PEFT_PREFIX), sd[key], sd[up_key], alpha,
                                        _peft_magnitude(normal, sd, base)))
    if not out.layers and any(k.endswith(".on_input") for k in sd):
        raise ValueError(f"{path}: this is a LyCORIS (IA)^3 file (``on_input`` keys), a type nodegen does not "
                         "read; nodegen reads LoRA, LoCon, LoHa, LoKr, OFT, BOFT, GLoRA, DoRA and full diffs")
    if not out.layers:
        raise ValueError(f"{path}: no LoRA layers found (keys such as {', '.join(sorted(sd)[:3])})")
    out.unknown = sorted(unknown)
    if unknown:
        import logging

        logging.getLogger(__name__).warning("%s: %d tensors are not LoRA weights nodegen reads and were ignored "
                                            "(e.g. %s)", path, len(unknown), ", ".join(out.unknown[:3]))
    return out


#: PEFT's ``PeftModel.save_pretrained`` prefix (a UNet adapter saved without diffusers' ``unet.``).
_PEFT_PREFIX = "base_model.model."


def _peft_magnitude(normal: dict[str, str], sd: dict[str, torch.Tensor], base: str) -> torch.Tensor | None:
    """PEFT's DoRA magnitude for the module ``base``, one value per output channel (PEFT stores
    ``[out]`` for linear layers and ``[1, out, 1, 1]`` for convolutions), or None."""
    key = normal.get(f"{base}.lora_magnitude_vector") or normal.get(f"{base}.lora_magnitude_vector.weight")
    return sd[key].reshape(-1) if key is not None else None


#: XLabs' Flux processors (``processor.qkv_lora1.down.weight``), not diffusers' ``processor.to_q_lora``
_XLABS = re.compile(r"(\.processor\.(?!to_(?:q|k|v|out)_lora\.)\w+_lora\d?)\.(down|up)\.weight$")


def _normal(key: str) -> str:
    """One spelling for the old diffusers attention-processor names and XLabs' ``..._lora1.down``."""
    m = _XLABS.search(key)
    if m:  # XLabs (Flux): keep the processor name, it names the module (nodegen.models.flow_lora)
        return key[: m.start()] + m.group(1) + f".lora.{m.group(2)}.weight"
    key = key.replace("processor.", "")
    for a, b in _OLD_TEXT_NAMES if key.startswith("text_encoder") else _OLD_NAMES:
        key = key.replace(a, b)
    return key


def read_lora(path: str | os.PathLike) -> LoraFile:
    """Read and check a LoRA file (names the file if it is something else)."""
    p = Path(path)
    sd = load_state_dict(p)
    det = detect({k: tuple(v.shape) for k, v in sd.items()})
    require(det, "lora", str(p))
    meta = _metadata_alphas(p) if p.suffix.lower() in (".safetensors", ".sft") else {}
    return parse_lora(sd, str(p), meta)


def _module_aliases(param: str, component: str, unet_config: dict | None) -> list[str]:
    """Names a LoRA may use for the module owning ``param`` (dotted, diffusers or LDM)."""
    module = param[: -len(".weight")]
    names = [module]
    if component != "unet":
        names.append(module.removeprefix("text_model.") if module.startswith("text_model.") else "text_model." + module)
    elif unet_config is not None:
        from nodegen.models.ldm_export import unet_to_ldm

        try:
            ldm = next(iter(unet_to_ldm({param: torch.empty(0)}, unet_config, prefix="")))
            names.append(ldm[: -len(".weight")])
        except (KeyError, ValueError, IndexError):
            pass
    return names


def _index(module: torch.nn.Module, component: str, unet_config: dict | None) -> dict[str, str]:
    """lookup key (dotted name and kohya underscore name) -> parameter name."""
    table: dict[str, str] = {}
    for name, p in module.named_parameters():
        if not name.endswith(".weight") or p.ndim < 2:
            continue
        for alias in _module_aliases(name, component, unet_config):
            table[alias] = name
            table[alias.replace(".", "_")] = name
    return table


def _param_index(module: torch.nn.Module, component: str, unet_config: dict | None, leaf: str) -> dict[str, str]:
    """module alias -> parameter name, for every parameter named ``<module>.<leaf>`` (any shape)."""
    table: dict[str, str] = {}
    for name, _p in module.named_parameters():
        owner, _, last = name.rpartition(".")
        if last == leaf:
            for alias in _module_aliases(owner + ".weight", component, unet_config):
                table[alias] = name
                table[alias.replace(".", "_")] = name  # kohya names (LyCORIS' w_norm / b_norm)
    return table


def lora_patch_dicts(lora: LoraFile, unet: torch.nn.Module | None = None,
                     encoders: dict[str, torch.nn.Module] | None = None) -> tuple[dict, dict, list[str]]:
    """``(unet_patches, clip_patches, unmatched)``: patch dicts for a UNet (keys = its parameter
    names) and for text encoders (keys ``<component>.<parameter name>``)."""
    unet_patches: dict = {}
    clip_patches: dict = {}
    unmatched: list[str] = []
    tables: dict[str, dict[str, str]] = {}
    param_tables: dict[tuple[str, str], dict[str, str]] = {}
    flow_family = getattr(unet, "_nodegen_flow_family", None) if unet is not None else None
    flow_table = None
    if lora.layout == "bfl_control" and unet is not None:
        from nodegen.models.flux_control_lora import control_patches

        if flow_family != "flux":
            raise ValueError(f"{lora.path}: this is a Flux.1 control LoRA (Canny / Depth): it needs a Flux.1 "
                             "model (flux1-dev), and this model is another kind")
        unet_patches, unmatched = control_patches(lora, unet)
        return unet_patches, clip_patches, unmatched
    if flow_family is not None:
        from nodegen.models.flow_lora import transformer_table

        flow_table = transformer_table(unet, flow_family)
    elif unet is not None:
        tables["unet"] = _index(unet, "unet", dict(unet.config))
    for comp, enc in (encoders or {}).items():
        tables[comp] = _index(enc, comp, None)
    for layer in lora.layers:
        if flow_table is not None and layer.component == "unet":
            from nodegen.models.flow_lora import lookup, sliced_delta

            targets = lookup(flow_table, layer.module)
            if targets is None:
                unmatched.append(f"{layer.component}.{layer.module}")
            for name, start, end, swap in targets or ():
                delta = sliced_delta(layer, start, end, swap) if (start or end is not None or swap) else layer.delta
                if name in unet_patches:
                    prev = unet_patches[name]
                    unet_patches[name] = (lambda w, a=prev, b=delta: (a(w) if callable(a) else a) + b(w))
                else:
                    unet_patches[name] = delta
            continue
        table = tables.get(layer.component)
        if table is None:
            continue  # e.g. a text-encoder layer when only the model is patched
        if isinstance(layer, DiffLayer):
            if (layer.component, layer.leaf) not in param_tables:
                mod = unet if layer.component == "unet" else encoders[layer.component]
                param_tables[(layer.component, layer.leaf)] = _param_index(
                    mod, layer.component, dict(unet.config) if layer.component == "unet" else None, layer.leaf)
            table = param_tables[(layer.component, layer.leaf)]
        name = table.get(layer.module)
        if name is None:
            unmatched.append(f"{layer.component}.{layer.module}")
            continue
        if layer.component == "unet":
            unet_patches[name] = layer.delta
        else:
            clip_patches[f"{layer.component}.{name}"] = layer.delta
    return unet_patches, clip_patches, unmatched


#: Cross-attention width (the text encoder's) of each model family, to name a LoRA's family.
_CONTEXT_FAMILY = {768: "SD1", 1024: "SD2", 2048: "SDXL"}


def lora_family(lora: LoraFile) -> str:
    """The model family a LoRA was trained for, from its cross-attention key width."""
    for layer in lora.layers:
        if layer.component == "unet" and hasattr(layer, "down") and re.search(r"attn2[._]to_k", layer.module):
            width = int(layer.down.shape[1])
            return _CONTEXT_FAMILY.get(width, f"a model with cross-attention width {width}")
    return "an unknown architecture"


def _refuse_other_architecture(lora: LoraFile, model, unet, encoders: dict) -> None:
    """A LoRA whose layer names fit but whose shapes do not is for another architecture: refuse it
    now, naming the file and both architectures (not a raw shape error inside the sampler)."""
    from nodegen.models.gguf_linear import logical_shape  # GGUF blocks: the shape of their values

    shapes: dict[str, dict[str, tuple]] = {}
    if unet is not None:
        shapes["unet"] = {n: logical_shape(p) for n, p in unet.named_parameters()}
    for comp, enc in encoders.items():
        shapes[comp] = {n: logical_shape(p) for n, p in enc.named_parameters()}
    tables: dict[str, dict[str, str]] = {}
    for layer in lora.layers:
        if layer.component not in shapes:
            continue
        if layer.component not in tables:
            mod = unet if layer.component == "unet" else encoders[layer.component]
            tables[layer.component] = _index(mod, layer.component,
                                             dict(unet.config) if layer.component == "unet" else None)
        name = tables[layer.component].get(layer.module)
        if name is None or not hasattr(layer, "up"):  # LyCORIS layers check their shape when applied
            continue
        want = shapes[layer.component][name]
        rows, cols = int(layer.up.shape[0]), int(layer.down.flatten(1).shape[1])
        if rows != want[0] or rows * cols != math.prod(want):
            what = getattr(model, "family", None) if layer.component == "unet" else "its text encoder"
            raise ValueError(
                f"{lora.path}: this LoRA is for {lora_family(lora)}, but the model"
                f"{' (' + str(getattr(model, 'source', '')) + ')' if getattr(model, 'source', '') else ''} is "
                f"{str(what).upper() if what else 'another architecture'}: its layer {layer.module} makes a "
                f"{rows}x{cols} change for a weight of shape {list(want)}. Use a LoRA made for this model.")


def apply_lora(model, clip, lora: LoraFile, strength_model: float = 1.0, strength_clip: float = 1.0):
    """Clones of ``model`` (DiffusionModel or None) and ``clip`` (TextEncoder or None) with the
    LoRA added at the given strengths. Raises if none of its layers fit."""
    encoders = dict(zip(clip.encoder_names, clip.encoders, strict=True)) if clip is not None else {}
    unet = model.unet if model is not None else None
    _refuse_other_architecture(lora, model, unet, encoders)
    unet_p, clip_p, unmatched = lora_patch_dicts(lora, unet, encoders)
    targeted = [ly for ly in lora.layers if (ly.component == "unet" and model is not None)
                or (ly.component != "unet" and clip is not None and ly.component in encoders)]
    if targeted and not unet_p and not clip_p:
        raise ValueError(f"{lora.path}: none of its {len(targeted)} LoRA layers fit this model "
                         f"(e.g. {unmatched[0] if unmatched else '?'}); is it for another model family?")
    if unmatched:
        import logging

        logging.getLogger(__name__).warning("%s: %d LoRA layers did not fit and were skipped (e.g. %s)",
                                            lora.path, len(unmatched), unmatched[0])
    new_model = new_clip = None
    if model is not None:
        new_model = model.clone()
        if unet_p:
            new_model.add_patches(unet_p, strength_model)
    if clip is not None:
        new_clip = clip.clone()
        if clip_p:
            new_clip.add_patches(clip_p, strength_clip)
    return new_model, new_clip
