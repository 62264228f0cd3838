"""LoRA layers for SD3 / Flux transformers (and Chroma's, which has Flux's blocks and names), whatever
key layout the file uses.

Flux LoRAs name their target modules in one of these spellings; all are mapped onto the diffusers
``FluxTransformer2DModel`` parameters the model holds:

* diffusers / PEFT: ``transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight``;
* the original (BFL / ComfyUI) layout: ``diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight``;
* kohya (sd-scripts): ``lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight`` (+ ``.alpha``);
* XLabs: ``double_blocks.0.processor.qkv_lora1.down.weight`` (image stream; ``lora2``: text stream),
  ``single_blocks.0.processor.qkv_lora.down.weight``.

A LoRA on a fused original weight (``img_attn.qkv``, ``single_blocks.N.linear1``) gives one delta for
the fused matrix; its rows are split between the diffusers weights exactly as the checkpoint
converter splits the weight itself (:mod:`nodegen.models.flux_convert`). SD3 LoRAs: the diffusers
spelling, and the original MMDiT one (``joint_blocks.N.x_block.attn.qkv``, dotted or kohya-underscored,
as diffusers' ``convert_sd3_transformer_checkpoint_to_diffusers`` maps the weights).
"""

from __future__ import annotations

import re

import torch

from nodegen.models.flux_convert import _DOUBLE, _TOP

#: XLabs processor names -> original module names (per block kind)
_XLABS_DOUBLE = {"qkv_lora1": "img_attn.qkv", "qkv_lora2": "txt_attn.qkv", "proj_lora1": "img_attn.proj",
                 "proj_lora2": "txt_attn.proj"}
_XLABS_SINGLE = {"qkv_lora": "linear1_qkv", "proj_lora": "linear2"}
_STRIP = ("transformer.", "diffusion_model.", "model.diffusion_model.", "unet.")

#: one target: (diffusers parameter, first row, end row or None, swap halves)
Target = tuple[str, int, int | None, bool]


def normalise_xlabs(module: str) -> str:
    """``double_blocks.0.processor.qkv_lora1`` -> ``double_blocks.0.img_attn.qkv``."""
    m = re.match(r"^(?:diffusion_model\.)?(double|single)_blocks\.(\d+)\.processor\.(\w+)$", module)
    if not m:
        return module
    kind, i, proc = m.groups()
    table = _XLABS_DOUBLE if kind == "double" else _XLABS_SINGLE
    return f"{kind}_blocks.{i}.{table.get(proc, proc)}"


def flux_targets(transformer: torch.nn.Module) -> dict[str, list[Target]]:
    """original module name -> the diffusers weights (and row ranges) it becomes."""
    cfg = transformer.config
    h = int(cfg.num_attention_heads) * int(cfg.attention_head_dim)
    out: dict[str, list[Target]] = {}
    for src, dst in _TOP.items():
        out[src] = [(f"{dst}.weight", 0, None, False)]
    out["final_layer.adaLN_modulation.1"] = [("norm_out.linear.weight", 0, None, True)]
    for i in range(int(cfg.num_layers)):
        s, d = f"double_blocks.{i}.", f"transformer_blocks.{i}."
        for src, dst in _DOUBLE.items():
            out[s + src] = [(f"{d}{dst}.weight", 0, None, False)]
        out[s + "img_attn.qkv"] = [(f"{d}attn.to_{p}.weight", j * h, (j + 1) * h, False) for j, p in enumerate("qkv")]
        out[s + "txt_attn.qkv"] = [(f"{d}attn.add_{p}_proj.weight", j * h, (j + 1) * h, False)
                                   for j, p in enumerate("qkv")]
    for i in range(int(cfg.num_single_layers)):
        s, d = f"single_blocks.{i}.", f"single_transformer_blocks.{i}."
        qkv = [(f"{d}attn.to_{p}.weight", j * h, (j + 1) * h, False) for j, p in enumerate("qkv")]
        out[s + "linear1"] = [*qkv, (f"{d}proj_mlp.weight", 3 * h, None, False)]
        out[s + "linear1_qkv"] = qkv
        out[s + "linear2"] = [(f"{d}proj_out.weight", 0, None, False)]
        out[s + "modulation.lin"] = [(f"{d}norm.linear.weight", 0, None, False)]
    return out


_SD3_TOP = {"x_embedder.proj": "pos_embed.proj", "t_embedder.mlp.0": "time_text_embed.timestep_embedder.linear_1",
            "t_embedder.mlp.2": "time_text_embed.timestep_embedder.linear_2",
            "y_embedder.mlp.0": "time_text_embed.text_embedder.linear_1",
            "y_embedder.mlp.2": "time_text_embed.text_embedder.linear_2",
            "context_embedder": "context_embedder", "final_layer.linear": "proj_out"}
_SD3_BLOCK = {"x_block.attn.proj": "attn.to_out.0", "context_block.attn.proj": "attn.to_add_out",
              "x_block.attn2.proj": "attn2.to_out.0", "x_block.adaLN_modulation.1": "norm1.linear",
              "x_block.mlp.fc1": "ff.net.0.proj", "x_block.mlp.fc2": "ff.net.2",
              "context_block.mlp.fc1": "ff_context.net.0.proj", "context_block.mlp.fc2": "ff_context.net.2"}


def sd3_targets(transformer: torch.nn.Module) -> dict[str, list[Target]]:
    """original MMDiT module name (``joint_blocks.N.x_block.attn.qkv``...) -> diffusers weights."""
    cfg = transformer.config
    h = int(cfg.num_attention_heads) * int(cfg.attention_head_dim)
    n = int(cfg.num_layers)
    out: dict[str, list[Target]] = {src: [(f"{dst}.weight", 0, None, False)] for src, dst in _SD3_TOP.items()}
    out["final_layer.adaLN_modulation.1"] = [("norm_out.linear.weight", 0, None, True)]
    for i in range(n):
        s, d = f"joint_blocks.{i}.", f"transformer_blocks.{i}."
        for src, dst in _SD3_BLOCK.items():
            out[s + src] = [(f"{d}{dst}.weight", 0, None, False)]
        out[s + "context_block.adaLN_modulation.1"] = [(f"{d}norm1_context.linear.weight", 0, None, i == n - 1)]
        for src, names in (("x_block.attn.qkv", ("to_q", "to_k", "to_v")),
                           ("context_block.attn.qkv", ("add_q_proj", "add_k_proj", "add_v_proj")),
                           ("x_block.attn2.qkv", ("to_q", "to_k", "to_v"))):
            attn = "attn2" if "attn2" in src else "attn"
            out[s + src] = [(f"{d}{attn}.{nm}.weight", j * h, (j + 1) * h, False) for j, nm in enumerate(names)]
    return out


def transformer_table(transformer: torch.nn.Module, family: str) -> dict[str, list[Target]]:
    """Every spelling a LoRA may use for a module (dotted and kohya-underscored) -> targets."""
    table: dict[str, list[Target]] = {}
    for name, p in transformer.named_parameters():
        if name.endswith(".weight") and p.ndim >= 2:
            table[name[: -len(".weight")]] = [(name, 0, None, False)]
    if family == "chroma":  # Flux's blocks and names, without the modulation layers Chroma lacks
        params = dict(transformer.named_parameters())
        table.update({k: ts for k, ts in flux_targets(transformer).items() if all(t[0] in params for t in ts)})
    else:
        table.update(flux_targets(transformer) if family == "flux" else sd3_targets(transformer))
    return {**table, **{k.replace(".", "_"): v for k, v in table.items()}}


def lookup(table: dict[str, list[Target]], module: str) -> list[Target] | None:
    for prefix in ("", *_STRIP):
        name = module[len(prefix):] if prefix and module.startswith(prefix) else (module if not prefix else None)
        if name is None:
            continue
        name = normalise_xlabs(name)
        if name in table:
            return table[name]
    return None


def sliced_delta(layer, start: int, end: int | None, swap: bool):
    """A patch callable: rows ``start:end`` of the layer's full delta (halves swapped if asked)."""
    def delta(weight: torch.Tensor) -> torch.Tensor:
        up = layer.up.to(weight.device, torch.float32).flatten(1)
        down = layer.down.to(weight.device, torch.float32).flatten(1)
        full = (up @ down) * layer.scale
        if swap:
            a, b = full.chunk(2, dim=0)
            full = torch.cat([b, a], dim=0)
        return full[start:end].reshape(weight.shape)
    return delta
