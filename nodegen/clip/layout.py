"""Recognise a CLIP state dict from its tensors and bring it to transformers' key layout.

Two layouts are read:

* **transformers** (``CLIPModel``, ``CLIPVisionModelWithProjection``, ``CLIPVisionModel``,
  ``CLIPTextModelWithProjection`` as transformers/HF save them; OpenAI ViT-B/32 and ViT-L/14 on the
  hub, and the CLIP-vision files other node tools use): ``vision_model.*``, ``text_model.*``,
  ``visual_projection.weight``, ``text_projection.weight``, ``logit_scale``;
* **open_clip** (LAION ViT-H/14 and ViT-bigG as open_clip saves them): ``visual.conv1.weight``,
  ``visual.transformer.resblocks.N.attn.in_proj_weight``, ``token_embedding.weight``,
  ``transformer.resblocks.N.*``, ``ln_final.*``, ``text_projection`` (a matrix, not a Linear), ...

:func:`to_transformers` converts the open_clip layout (fused ``in_proj`` split into q/k/v,
projections transposed) and strips the usual wrapping prefixes (``module.``, ``model.``,
``clip.``). :func:`configs_from_tensors` derives the transformers configs from the shapes: widths,
layers, MLP sizes, patch and image size, vocabulary and positions, projection size. Tensors do not
tell the number of attention heads nor the activation; the published rules are used: heads of 64
channels, except LAION ViT-H/14 and ViT-bigG's image towers (width 1280 / 1664: 16 heads); ``gelu``
for those two (LAION's models), ``quick_gelu`` for the OpenAI sizes and smaller models (as OpenAI's
CLIP and this project's demo CLIP). A transformers folder's ``config.json`` overrides both.
"""

from __future__ import annotations

import re

import torch

#: Image-tower widths of LAION's ViT-H/14 and ViT-bigG/14 (open_clip head widths 80 and 104).
LAION_VISION_WIDTHS = {1280: 16, 1664: 16}
_PREFIXES = ("module.", "model.", "clip.", "clip_model.")


def strip_prefixes(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop a wrapping prefix every key shares (``module.``, ``model.``, ...)."""
    changed = True
    while changed and sd:
        changed = False
        for p in _PREFIXES:
            if all(k.startswith(p) for k in sd):
                sd = {k[len(p):]: v for k, v in sd.items()}
                changed = True
    return sd


def layout_of(sd: dict[str, torch.Tensor]) -> str:
    """``"transformers"`` or ``"open_clip"``; ValueError for anything else."""
    if any(k.startswith(("vision_model.", "text_model.")) for k in sd):
        return "transformers"
    if "visual.conv1.weight" in sd or "token_embedding.weight" in sd:
        return "open_clip"
    sample = ", ".join(sorted(sd)[:5])
    raise ValueError(f"not a CLIP state dict (neither the transformers nor the open_clip key layout; "
                     f"first keys: {sample})")


def _split_blocks(sd: dict, src: str, dst: str, out: dict) -> None:
    """open_clip residual blocks ``src.N.*`` -> transformers encoder layers ``dst.N.*``."""
    pat = re.compile(re.escape(src) + r"\.(\d+)\.(.+)")
    names = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1",
             "mlp.c_proj": "mlp.fc2", "attn.out_proj": "self_attn.out_proj"}
    for key, value in sd.items():
        m = pat.fullmatch(key)
        if not m:
            continue
        i, rest = m.groups()
        base = f"{dst}.{i}."
        if rest.startswith("attn.in_proj_"):
            kind = rest.rsplit("_", 1)[1]  # weight / bias
            for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0), strict=True):
                out[f"{base}self_attn.{name}.{kind}"] = part
            continue
        mod, _, leaf = rest.rpartition(".")
        if mod not in names:
            raise ValueError(f"unexpected open_clip tensor {key!r} (layer scale or attention pooling "
                             "towers are not supported)")
        out[base + names[mod] + "." + leaf] = value


def _open_clip_to_transformers(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    if "visual.conv1.weight" in sd:
        v = "vision_model."
        out[v + "embeddings.patch_embedding.weight"] = sd["visual.conv1.weight"]
        out[v + "embeddings.class_embedding"] = sd["visual.class_embedding"]
        out[v + "embeddings.position_embedding.weight"] = sd["visual.positional_embedding"]
        for ours, theirs in (("pre_layrnorm", "ln_pre"), ("post_layernorm", "ln_post")):
            out[f"{v}{ours}.weight"] = sd[f"visual.{theirs}.weight"]
            out[f"{v}{ours}.bias"] = sd[f"visual.{theirs}.bias"]
        _split_blocks(sd, "visual.transformer.resblocks", v + "encoder.layers", out)
        if "visual.proj" in sd:
            out["visual_projection.weight"] = sd["visual.proj"].t().contiguous()
    if "token_embedding.weight" in sd:
        t = "text_model."
        out[t + "embeddings.token_embedding.weight"] = sd["token_embedding.weight"]
        out[t + "embeddings.position_embedding.weight"] = sd["positional_embedding"]
        out[t + "final_layer_norm.weight"] = sd["ln_final.weight"]
        out[t + "final_layer_norm.bias"] = sd["ln_final.bias"]
        _split_blocks(sd, "transformer.resblocks", t + "encoder.layers", out)
        if "text_projection" in sd:
            out["text_projection.weight"] = sd["text_projection"].t().contiguous()
    if "logit_scale" in sd:
        out["logit_scale"] = sd["logit_scale"].reshape(())
    return out


def to_transformers(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict in transformers' ``CLIPModel`` key layout (buffers such as ``position_ids`` dropped)."""
    sd = strip_prefixes(dict(sd))
    if layout_of(sd) == "open_clip":
        sd = _open_clip_to_transformers(sd)
    return {k: v for k, v in sd.items() if not k.endswith(("position_ids", "attn_mask"))}


def _count_layers(sd: dict, prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"\.(\d+)\.")
    idx = {int(m.group(1)) for k in sd if (m := pat.match(k))}
    return max(idx) + 1 if idx else 0


def vision_config(sd: dict[str, torch.Tensor]) -> dict | None:
    """transformers ``CLIPVisionConfig`` arguments for a transformers-layout state dict (None: no image tower)."""
    key = "vision_model.embeddings.patch_embedding.weight"
    if key not in sd:
        return None
    width, _, patch, _ = sd[key].shape
    n_pos = sd["vision_model.embeddings.position_embedding.weight"].shape[0]
    grid = round((n_pos - 1) ** 0.5)
    if grid * grid != n_pos - 1:
        raise ValueError(f"the image tower has {n_pos} positions: not a square grid plus a class token")
    proj = sd.get("visual_projection.weight")
    laion = width in LAION_VISION_WIDTHS
    return dict(
        hidden_size=width,
        intermediate_size=sd["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0],
        num_hidden_layers=_count_layers(sd, "vision_model.encoder.layers"),
        num_attention_heads=LAION_VISION_WIDTHS[width] if laion else max(1, width // 64),
        patch_size=patch,
        image_size=grid * patch,
        projection_dim=proj.shape[0] if proj is not None else width,
        hidden_act="gelu" if laion else "quick_gelu",
        layer_norm_eps=1e-5,
    )


def text_config(sd: dict[str, torch.Tensor], vision: dict | None = None) -> dict | None:
    """transformers ``CLIPTextConfig`` arguments (None: no text tower). The activation follows the image tower's."""
    key = "text_model.embeddings.token_embedding.weight"
    if key not in sd:
        return None
    vocab, width = sd[key].shape
    proj = sd.get("text_projection.weight")
    return dict(
        vocab_size=vocab,
        hidden_size=width,
        intermediate_size=sd["text_model.encoder.layers.0.mlp.fc1.weight"].shape[0],
        num_hidden_layers=_count_layers(sd, "text_model.encoder.layers"),
        num_attention_heads=max(1, width // 64),
        max_position_embeddings=sd["text_model.embeddings.position_embedding.weight"].shape[0],
        projection_dim=proj.shape[0] if proj is not None else width,
        hidden_act=(vision or {}).get("hidden_act", "quick_gelu"),
        layer_norm_eps=1e-5,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )
