"""Tiny random-weight CLIPs for the tests, and a converter to open_clip's key layout.

:func:`tiny_clip` builds a transformers ``CLIPModel`` that follows the rules the loader derives
configs by (heads of 64 channels, quick_gelu), with the real CLIP vocabulary (49408) and 77
positions (the loader uses the real tokenizer), and a logit scale of 100 (as trained CLIPs).
:func:`to_open_clip` writes its state dict as open_clip saves LAION's models (fused ``in_proj``,
``visual.proj`` / ``text_projection`` as matrices); ``nodegen.clip.layout`` must read it back to
the same tensors.
"""

from __future__ import annotations

import math
import re

import torch

from nodegen.compat import torchvision as torchvision_fix


def tiny_clip(seed: int = 0, width: int = 64, vision_width: int = 64, image_size: int = 32, patch: int = 8,
              layers: int = 2, dim: int = 32):
    torchvision_fix.apply()
    from transformers import CLIPConfig, CLIPModel

    text = dict(vocab_size=49408, hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers,
                num_attention_heads=max(1, width // 64), max_position_embeddings=77, hidden_act="quick_gelu",
                projection_dim=dim, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    vision = dict(image_size=image_size, patch_size=patch, hidden_size=vision_width,
                  intermediate_size=4 * vision_width, num_hidden_layers=layers,
                  num_attention_heads=max(1, vision_width // 64), hidden_act="quick_gelu", projection_dim=dim)
    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=dim)).eval()
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100.0))
    return model


def _fuse_blocks(sd: dict, src: str, dst: str, out: dict) -> None:
    pat = re.compile(re.escape(src) + r"\.(\d+)\.(.+)")
    names = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
             "self_attn.out_proj": "attn.out_proj"}
    for key, value in sd.items():
        m = pat.fullmatch(key)
        if not m:
            continue
        i, rest = m.groups()
        mod, _, leaf = rest.rpartition(".")
        if mod in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
            if mod.endswith("q_proj"):
                parts = [sd[f"{src}.{i}.self_attn.{p}_proj.{leaf}"] for p in "qkv"]
                out[f"{dst}.{i}.attn.in_proj_{leaf}"] = torch.cat(parts, 0)
            continue
        out[f"{dst}.{i}.{names[mod]}.{leaf}"] = value


def to_open_clip(model) -> dict[str, torch.Tensor]:
    """A transformers ``CLIPModel`` state dict in open_clip's key layout."""
    sd = {k: v.detach().clone() for k, v in model.state_dict().items() if not k.endswith("position_ids")}
    v, t = "vision_model.", "text_model."
    out = {
        "visual.conv1.weight": sd[v + "embeddings.patch_embedding.weight"],
        "visual.class_embedding": sd[v + "embeddings.class_embedding"],
        "visual.positional_embedding": sd[v + "embeddings.position_embedding.weight"],
        "visual.ln_pre.weight": sd[v + "pre_layrnorm.weight"], "visual.ln_pre.bias": sd[v + "pre_layrnorm.bias"],
        "visual.ln_post.weight": sd[v + "post_layernorm.weight"],
        "visual.ln_post.bias": sd[v + "post_layernorm.bias"],
        "visual.proj": sd["visual_projection.weight"].t().contiguous(),
        "token_embedding.weight": sd[t + "embeddings.token_embedding.weight"],
        "positional_embedding": sd[t + "embeddings.position_embedding.weight"],
        "ln_final.weight": sd[t + "final_layer_norm.weight"], "ln_final.bias": sd[t + "final_layer_norm.bias"],
        "text_projection": sd["text_projection.weight"].t().contiguous(),
        "logit_scale": sd["logit_scale"],
    }
    _fuse_blocks(sd, v + "encoder.layers", "visual.transformer.resblocks", out)
    _fuse_blocks(sd, t + "encoder.layers", "transformer.resblocks", out)
    return {k: x.contiguous() for k, x in out.items()}


def vision_only(model) -> dict[str, torch.Tensor]:
    """The keys a ``CLIPVisionModelWithProjection`` saves (a CLIP-vision file)."""
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()
            if k.startswith(("vision_model.", "visual_projection.")) and not k.endswith("position_ids")}
