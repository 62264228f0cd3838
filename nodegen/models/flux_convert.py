"""Flux.1 transformer weights: the original (Black Forest Labs) key layout -> diffusers'
``FluxTransformer2DModel`` keys, for any width (diffusers' own
``convert_flux_transformer_checkpoint_to_diffusers``, which this follows, hard-codes the full-size
width of 3072). The width comes from ``img_in.weight``; the single blocks' fused ``linear1`` is
split into q, k, v (one width each) and the MLP (the rest).
"""

from __future__ import annotations

import torch

_TOP = {"time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
        "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
        "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
        "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
        "guidance_in.in_layer": "time_text_embed.guidance_embedder.linear_1",
        "guidance_in.out_layer": "time_text_embed.guidance_embedder.linear_2",
        "txt_in": "context_embedder", "img_in": "x_embedder", "final_layer.linear": "proj_out"}
_DOUBLE = {"img_mod.lin": "norm1.linear", "txt_mod.lin": "norm1_context.linear",
           "img_attn.proj": "attn.to_out.0", "txt_attn.proj": "attn.to_add_out",
           "img_mlp.0": "ff.net.0.proj", "img_mlp.2": "ff.net.2",
           "txt_mlp.0": "ff_context.net.0.proj", "txt_mlp.2": "ff_context.net.2"}
_NORMS = {"img_attn.norm.query_norm.scale": "attn.norm_q.weight", "img_attn.norm.key_norm.scale": "attn.norm_k.weight",
          "txt_attn.norm.query_norm.scale": "attn.norm_added_q.weight",
          "txt_attn.norm.key_norm.scale": "attn.norm_added_k.weight"}


def _swap(t: torch.Tensor) -> torch.Tensor:
    shift, scale = t.chunk(2, dim=0)
    return torch.cat([scale, shift], dim=0)


def _blocks(sd, prefix: str) -> list[int]:
    return sorted({int(k[len(prefix):].split(".")[0]) for k in sd if k.startswith(prefix)})


def flux_to_diffusers(sd: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """Convert (and pop) the Flux transformer tensors under ``prefix`` of ``sd``."""
    get = lambda k: sd.pop(prefix + k)  # noqa: E731
    has = lambda k: prefix + k in sd  # noqa: E731
    width = int(sd[prefix + "img_in.weight"].shape[0])
    out: dict[str, torch.Tensor] = {}
    for src, dst in _TOP.items():
        for kind in ("weight", "bias"):
            if has(f"{src}.{kind}"):
                out[f"{dst}.{kind}"] = get(f"{src}.{kind}")
    for kind in ("weight", "bias"):
        if has(f"final_layer.adaLN_modulation.1.{kind}"):  # (a ControlNet in this layout has none)
            out[f"norm_out.linear.{kind}"] = _swap(get(f"final_layer.adaLN_modulation.1.{kind}"))
    for i in _blocks(sd, prefix + "double_blocks."):
        s, d = f"double_blocks.{i}.", f"transformer_blocks.{i}."
        for kind in ("weight", "bias"):
            for src, dst in _DOUBLE.items():
                if src.endswith("_mod.lin") and not has(f"{s}{src}.{kind}"):
                    continue  # Chroma: no per-block modulation (nodegen.models.chroma_convert)
                out[f"{d}{dst}.{kind}"] = get(f"{s}{src}.{kind}")
            for stream, names in (("img_attn", ("to_q", "to_k", "to_v")),
                                  ("txt_attn", ("add_q_proj", "add_k_proj", "add_v_proj"))):
                for name, part in zip(names, torch.chunk(get(f"{s}{stream}.qkv.{kind}"), 3, dim=0), strict=True):
                    out[f"{d}attn.{name}.{kind}"] = part
        for src, dst in _NORMS.items():
            out[d + dst] = get(s + src)
    for i in _blocks(sd, prefix + "single_blocks."):
        s, d = f"single_blocks.{i}.", f"single_transformer_blocks.{i}."
        for kind in ("weight", "bias"):
            if has(f"{s}modulation.lin.{kind}"):  # (Chroma has none)
                out[f"{d}norm.linear.{kind}"] = get(f"{s}modulation.lin.{kind}")
            fused = get(f"{s}linear1.{kind}")
            q, k, v, mlp = torch.split(fused, (width, width, width, fused.shape[0] - 3 * width), dim=0)
            out[f"{d}attn.to_q.{kind}"], out[f"{d}attn.to_k.{kind}"], out[f"{d}attn.to_v.{kind}"] = q, k, v
            out[f"{d}proj_mlp.{kind}"] = mlp
            out[f"{d}proj_out.{kind}"] = get(f"{s}linear2.{kind}")
        out[d + "attn.norm_q.weight"] = get(s + "norm.query_norm.scale")
        out[d + "attn.norm_k.weight"] = get(s + "norm.key_norm.scale")
    return out
