"""diffusers -> original single-file key layouts of SD3 / SD 3.5 MMDiT and Flux.1 transformers,
for building test fixtures in the layouts people download (the inverse of diffusers'
``convert_sd3_transformer_checkpoint_to_diffusers`` / ``convert_flux_transformer_checkpoint_to_diffusers``;
tests/test_flow_convert.py converts back with diffusers' own functions and compares).

Original AdaLayerNormContinuous weights hold (shift, scale); diffusers' hold (scale, shift): the
halves are swapped (the swap is its own inverse).
"""

from __future__ import annotations

import torch


def swap_halves(t: torch.Tensor) -> torch.Tensor:
    a, b = t.chunk(2, dim=0)
    return torch.cat([b, a], dim=0)


def _blocks(sd: dict, prefix: str) -> list[int]:
    return sorted({int(k[len(prefix):].split(".")[0]) for k in sd if k.startswith(prefix)})


def sd3_to_original(sd: dict[str, torch.Tensor], prefix: str = "model.diffusion_model.") -> dict:
    """An ``SD3Transformer2DModel`` state dict -> MMDiT keys (``joint_blocks.N.x_block...``)."""
    out: dict[str, torch.Tensor] = {}
    top = {"pos_embed.pos_embed": "pos_embed", "pos_embed.proj": "x_embedder.proj",
           "time_text_embed.timestep_embedder.linear_1": "t_embedder.mlp.0",
           "time_text_embed.timestep_embedder.linear_2": "t_embedder.mlp.2",
           "time_text_embed.text_embedder.linear_1": "y_embedder.mlp.0",
           "time_text_embed.text_embedder.linear_2": "y_embedder.mlp.2",
           "context_embedder": "context_embedder", "proj_out": "final_layer.linear"}
    for src, dst in top.items():
        if src == "pos_embed.pos_embed":
            out[prefix + dst] = sd[src]
            continue
        for kind in ("weight", "bias"):
            out[f"{prefix}{dst}.{kind}"] = sd[f"{src}.{kind}"]
    for kind in ("weight", "bias"):
        out[f"{prefix}final_layer.adaLN_modulation.1.{kind}"] = swap_halves(sd[f"norm_out.linear.{kind}"])
    blocks = _blocks(sd, "transformer_blocks.")
    last = blocks[-1]
    for i in blocks:
        s, x, c = f"transformer_blocks.{i}.", f"{prefix}joint_blocks.{i}.x_block.", f"{prefix}joint_blocks.{i}.context_block."
        for kind in ("weight", "bias"):
            out[x + f"attn.qkv.{kind}"] = torch.cat([sd[s + f"attn.to_{p}.{kind}"] for p in "qkv"])
            out[c + f"attn.qkv.{kind}"] = torch.cat([sd[s + f"attn.add_{p}_proj.{kind}"] for p in "qkv"])
            out[x + f"attn.proj.{kind}"] = sd[s + f"attn.to_out.0.{kind}"]
            if s + f"attn.to_add_out.{kind}" in sd:
                out[c + f"attn.proj.{kind}"] = sd[s + f"attn.to_add_out.{kind}"]
            if s + f"attn2.to_q.{kind}" in sd:
                out[x + f"attn2.qkv.{kind}"] = torch.cat([sd[s + f"attn2.to_{p}.{kind}"] for p in "qkv"])
                out[x + f"attn2.proj.{kind}"] = sd[s + f"attn2.to_out.0.{kind}"]
            out[x + f"adaLN_modulation.1.{kind}"] = sd[s + f"norm1.linear.{kind}"]
            ctx_mod = sd[s + f"norm1_context.linear.{kind}"]
            out[c + f"adaLN_modulation.1.{kind}"] = swap_halves(ctx_mod) if i == last else ctx_mod
            out[x + f"mlp.fc1.{kind}"] = sd[s + f"ff.net.0.proj.{kind}"]
            out[x + f"mlp.fc2.{kind}"] = sd[s + f"ff.net.2.{kind}"]
            if s + f"ff_context.net.0.proj.{kind}" in sd:
                out[c + f"mlp.fc1.{kind}"] = sd[s + f"ff_context.net.0.proj.{kind}"]
                out[c + f"mlp.fc2.{kind}"] = sd[s + f"ff_context.net.2.{kind}"]
        norms = {"attn.norm_q": x + "attn.ln_q", "attn.norm_k": x + "attn.ln_k",
                 "attn.norm_added_q": c + "attn.ln_q", "attn.norm_added_k": c + "attn.ln_k",
                 "attn2.norm_q": x + "attn2.ln_q", "attn2.norm_k": x + "attn2.ln_k"}
        for src, dst in norms.items():
            if s + src + ".weight" in sd:
                out[dst + ".weight"] = sd[s + src + ".weight"]
    return out


def flux_to_original(sd: dict[str, torch.Tensor], prefix: str = "") -> dict:
    """A ``FluxTransformer2DModel`` state dict -> BFL keys (``double_blocks.N.img_attn.qkv...``)."""
    out: dict[str, torch.Tensor] = {}
    top = {"time_text_embed.timestep_embedder.linear_1": "time_in.in_layer",
           "time_text_embed.timestep_embedder.linear_2": "time_in.out_layer",
           "time_text_embed.text_embedder.linear_1": "vector_in.in_layer",
           "time_text_embed.text_embedder.linear_2": "vector_in.out_layer",
           "time_text_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
           "time_text_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
           "context_embedder": "txt_in", "x_embedder": "img_in", "proj_out": "final_layer.linear"}
    for src, dst in top.items():
        for kind in ("weight", "bias"):
            if f"{src}.{kind}" in sd:
                out[f"{prefix}{dst}.{kind}"] = sd[f"{src}.{kind}"]
    modulated = "norm_out.linear.weight" in sd  # a Chroma transformer has no modulation layers
    for kind in ("weight", "bias") if modulated else ():
        out[f"{prefix}final_layer.adaLN_modulation.1.{kind}"] = swap_halves(sd[f"norm_out.linear.{kind}"])
    for i in _blocks(sd, "transformer_blocks."):
        s, d = f"transformer_blocks.{i}.", f"{prefix}double_blocks.{i}."
        for kind in ("weight", "bias"):
            if modulated:
                out[d + f"img_mod.lin.{kind}"] = sd[s + f"norm1.linear.{kind}"]
                out[d + f"txt_mod.lin.{kind}"] = sd[s + f"norm1_context.linear.{kind}"]
            out[d + f"img_attn.qkv.{kind}"] = torch.cat([sd[s + f"attn.to_{p}.{kind}"] for p in "qkv"])
            out[d + f"txt_attn.qkv.{kind}"] = torch.cat([sd[s + f"attn.add_{p}_proj.{kind}"] for p in "qkv"])
            out[d + f"img_attn.proj.{kind}"] = sd[s + f"attn.to_out.0.{kind}"]
            out[d + f"txt_attn.proj.{kind}"] = sd[s + f"attn.to_add_out.{kind}"]
            out[d + f"img_mlp.0.{kind}"] = sd[s + f"ff.net.0.proj.{kind}"]
            out[d + f"img_mlp.2.{kind}"] = sd[s + f"ff.net.2.{kind}"]
            out[d + f"txt_mlp.0.{kind}"] = sd[s + f"ff_context.net.0.proj.{kind}"]
            out[d + f"txt_mlp.2.{kind}"] = sd[s + f"ff_context.net.2.{kind}"]
        out[d + "img_attn.norm.query_norm.scale"] = sd[s + "attn.norm_q.weight"]
        out[d + "img_attn.norm.key_norm.scale"] = sd[s + "attn.norm_k.weight"]
        out[d + "txt_attn.norm.query_norm.scale"] = sd[s + "attn.norm_added_q.weight"]
        out[d + "txt_attn.norm.key_norm.scale"] = sd[s + "attn.norm_added_k.weight"]
    for i in _blocks(sd, "single_transformer_blocks."):
        s, d = f"single_transformer_blocks.{i}.", f"{prefix}single_blocks.{i}."
        for kind in ("weight", "bias"):
            if modulated:
                out[d + f"modulation.lin.{kind}"] = sd[s + f"norm.linear.{kind}"]
            out[d + f"linear1.{kind}"] = torch.cat([sd[s + f"attn.to_{p}.{kind}"] for p in "qkv"]
                                                   + [sd[s + f"proj_mlp.{kind}"]])
            out[d + f"linear2.{kind}"] = sd[s + f"proj_out.{kind}"]
        out[d + "norm.query_norm.scale"] = sd[s + "attn.norm_q.weight"]
        out[d + "norm.key_norm.scale"] = sd[s + "attn.norm_k.weight"]
    return out
