"""diffusers / transformers configs for SD3, Flux, their 16-channel VAE and T5, from tensor shapes
(diffusers-layout keys), with the shipped full-size configs (``nodegen/assets/configs/flow``) as
defaults. Head counts follow each family's rule: MMDiT head size 64, Flux and Chroma head size 128, T5 heads
from ``relative_attention_bias``.
"""

from __future__ import annotations

import math
import re

from nodegen.models.configs import shipped


def _count(shapes: dict, pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in shapes if (m := rx.match(k))})


def sd3_variant(shapes: dict) -> str:
    """"sd35_large", "sd35_medium" or "sd3_medium" (diffusers keys)."""
    if any(".attn2." in k for k in shapes):
        return "sd35_medium"
    if any(k.endswith("attn.norm_q.weight") for k in shapes):
        return "sd35_large"
    return "sd3_medium"


def sd3_config(shapes: dict) -> dict:
    cfg = shipped("flow", sd3_variant(shapes))
    cfg.pop("_class_name", None)
    proj = shapes["pos_embed.proj.weight"]
    hidden, patch = int(proj[0]), int(proj[2])
    blocks = _count(shapes, r"transformer_blocks\.(\d+)\.")
    cfg.update(
        in_channels=int(proj[1]), patch_size=patch, num_layers=len(blocks), attention_head_dim=64,
        num_attention_heads=max(1, hidden // 64), caption_projection_dim=int(shapes["context_embedder.weight"][0]),
        joint_attention_dim=int(shapes["context_embedder.weight"][1]),
        pooled_projection_dim=int(shapes["time_text_embed.text_embedder.linear_1.weight"][1]),
        out_channels=int(shapes["proj_out.weight"][0]) // (patch * patch),
        pos_embed_max_size=int(math.isqrt(int(shapes["pos_embed.pos_embed"][1]))),
        dual_attention_layers=[i for i in blocks if f"transformer_blocks.{i}.attn2.to_q.weight" in shapes],
        qk_norm="rms_norm" if "transformer_blocks.0.attn.norm_q.weight" in shapes else None)
    return cfg


def flux_config(shapes: dict) -> dict:
    guidance = "time_text_embed.guidance_embedder.linear_1.weight" in shapes
    cfg = shipped("flow", "flux_dev" if guidance else "flux_schnell")
    cfg.pop("_class_name", None)
    x = shapes["x_embedder.weight"]
    hidden = int(x[0])
    head = int(cfg["attention_head_dim"])
    cfg.update(
        in_channels=int(x[1]), out_channels=int(shapes["proj_out.weight"][0]),
        num_layers=len(_count(shapes, r"transformer_blocks\.(\d+)\.")),
        num_single_layers=len(_count(shapes, r"single_transformer_blocks\.(\d+)\.")),
        num_attention_heads=max(1, hidden // head), joint_attention_dim=int(shapes["context_embedder.weight"][1]),
        pooled_projection_dim=int(shapes["time_text_embed.text_embedder.linear_1.weight"][1]), guidance_embeds=guidance)
    return cfg


def chroma_config(shapes: dict) -> dict:
    """A ``ChromaTransformer2DModel`` config (diffusers keys): Flux's head size of 128; the
    approximator's width, depth and input from its layers."""
    cfg = shipped("flow", "chroma")
    cfg.pop("_class_name", None)
    x = shapes["x_embedder.weight"]
    head = int(cfg["attention_head_dim"])
    approx_in = shapes["distilled_guidance_layer.in_proj.weight"]
    cfg.update(
        in_channels=int(x[1]), out_channels=int(shapes["proj_out.weight"][0]),
        num_layers=len(_count(shapes, r"transformer_blocks\.(\d+)\.")),
        num_single_layers=len(_count(shapes, r"single_transformer_blocks\.(\d+)\.")),
        num_attention_heads=max(1, int(x[0]) // head), joint_attention_dim=int(shapes["context_embedder.weight"][1]),
        approximator_num_channels=int(approx_in[1]), approximator_hidden_dim=int(approx_in[0]),
        approximator_layers=len(_count(shapes, r"distilled_guidance_layer\.layers\.(\d+)\.")))
    return cfg


def vae16_config(shapes: dict, prefix: str = "") -> dict:
    """An ``AutoencoderKL`` config for a (16-channel) VAE in the LDM layout under ``prefix``."""
    from nodegen.models.configs import vae_config

    cfg = vae_config(shapes, prefix, folder="flow")
    cfg.update(shipped("flow", "vae") | {k: cfg[k] for k in ("in_channels", "out_channels", "latent_channels",
                                                                "block_out_channels", "layers_per_block",
                                                                "down_block_types", "up_block_types")})
    cfg.pop("_class_name", None)
    cfg["use_quant_conv"] = prefix + "quant_conv.weight" in shapes
    cfg["use_post_quant_conv"] = prefix + "post_quant_conv.weight" in shapes
    return cfg


def t5_config(shapes: dict, prefix: str = "") -> dict:
    cfg = shipped("flow", "t5xxl")
    p = prefix + "encoder.block.0.layer."
    rel = shapes[p + "0.SelfAttention.relative_attention_bias.weight"]
    heads = int(rel[1])
    inner = int(shapes[p + "0.SelfAttention.q.weight"][0])
    emb = shapes.get(prefix + "shared.weight", shapes.get(prefix + "encoder.embed_tokens.weight"))
    gated = p + "1.DenseReluDense.wi_0.weight" in shapes
    ff = shapes[p + ("1.DenseReluDense.wi_0.weight" if gated else "1.DenseReluDense.wi.weight")]
    cfg.update(vocab_size=int(emb[0]), d_model=int(emb[1]), num_heads=heads, d_kv=inner // heads, d_ff=int(ff[0]),
               num_layers=len(_count(shapes, re.escape(prefix + "encoder.block.") + r"(\d+)\.")),
               relative_attention_num_buckets=int(rel[0]),
               feed_forward_proj="gated-gelu" if gated else "relu", dropout_rate=0.0)
    return cfg


def clip_config(shapes: dict, prefix: str, role: str) -> dict:
    """A ``CLIPTextConfig`` dict for transformers-layout CLIP weights under ``prefix``
    (``text_model.*``); ``role`` "clip_l" (quick GELU) or "clip_g" (GELU)."""
    from nodegen.models.configs import clip_config as base

    cfg = base(shapes, prefix, open_clip=False)
    if role == "clip_g":
        cfg["hidden_act"] = "gelu"
    proj = shapes.get(prefix + "text_projection.weight")
    if proj is not None:
        cfg["projection_dim"] = int(proj[0])
    return cfg
