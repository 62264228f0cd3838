"""diffusers -> original LDM ("single file") state-dict converter.

diffusers only converts LDM -> diffusers; this is the reverse, for any size of model (test
fixtures, the demo model) and the current attention key names. It is proven by converting
back with diffusers' own ``single_file_utils`` functions (tests/test_models_ldm_convert.py).

Layouts written:

* UNet: ``model.diffusion_model.*`` (input_blocks / middle_block / output_blocks, label_emb for
  SDXL's text_time embedding).
* VAE: ``first_stage_model.*`` with the mid attention as 1x1 convs (``q/k/v/proj_out``).
* CLIP-L: ``cond_stage_model.transformer.text_model.*`` (SD1) or
  ``conditioner.embedders.0.transformer.text_model.*`` (SDXL).
* OpenCLIP: ``cond_stage_model.model.*`` (SD2), ``conditioner.embedders.1.model.*`` (SDXL) or
  ``conditioner.embedders.0.model.*`` (SDXL refiner), with fused ``attn.in_proj_*``.
"""

from __future__ import annotations

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."

_RESNET = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
           ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection"))
_UNET_TOP = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
             "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
             "class_embedding.linear_1": "label_emb.0.0", "class_embedding.linear_2": "label_emb.0.2"}


def _resnet_name(rest: str) -> str:
    for a, b in _RESNET:
        if rest.startswith(a + "."):
            return b + rest[len(a):]
    raise KeyError(rest)


def unet_to_ldm(sd: dict[str, torch.Tensor], config: dict, prefix: str = UNET_PREFIX) -> dict[str, torch.Tensor]:
    """A diffusers ``UNet2DConditionModel`` state dict -> LDM keys."""
    L = int(config["layers_per_block"])
    up_types = list(config["up_block_types"])
    out: dict[str, torch.Tensor] = {}
    for key, t in sd.items():
        parts = key.split(".")
        head = ".".join(parts[:-1])
        if head in _UNET_TOP:
            new = _UNET_TOP[head] + "." + parts[-1]
        elif parts[0] == "down_blocks":
            b = int(parts[1])
            if parts[2] == "downsamplers":
                new = f"input_blocks.{(b + 1) * (L + 1)}.0.op." + ".".join(parts[5:])
            else:
                layer = int(parts[3])
                idx = 1 + b * (L + 1) + layer
                rest = ".".join(parts[4:])
                new = (f"input_blocks.{idx}.0." + _resnet_name(rest) if parts[2] == "resnets"
                       else f"input_blocks.{idx}.1." + rest)
        elif parts[0] == "mid_block":
            i = int(parts[2])
            rest = ".".join(parts[3:])
            new = (f"middle_block.{2 * i}." + _resnet_name(rest) if parts[1] == "resnets"
                   else f"middle_block.{1 + i}." + rest)
        elif parts[0] == "up_blocks":
            b = int(parts[1])
            if parts[2] == "upsamplers":
                idx = b * (L + 1) + L
                slot = 2 if up_types[b].startswith("CrossAttn") else 1
                new = f"output_blocks.{idx}.{slot}.conv." + parts[-1]
            else:
                layer = int(parts[3])
                idx = b * (L + 1) + layer
                rest = ".".join(parts[4:])
                new = (f"output_blocks.{idx}.0." + _resnet_name(rest) if parts[2] == "resnets"
                       else f"output_blocks.{idx}.1." + rest)
        else:
            raise KeyError(f"UNet key {key!r} has no LDM counterpart")
        out[prefix + new] = t
    return out


_VAE_ATTN = (("group_norm.", "norm."), ("to_q.", "q."), ("to_k.", "k."), ("to_v.", "v."),
             ("to_out.0.", "proj_out."))


def vae_to_ldm(sd: dict[str, torch.Tensor], prefix: str = VAE_PREFIX) -> dict[str, torch.Tensor]:
    """A diffusers ``AutoencoderKL`` state dict -> LDM keys (attention as 1x1 convs)."""
    n_up = 1 + max((int(k.split(".")[2]) for k in sd if k.startswith("decoder.up_blocks.")), default=-1)
    out: dict[str, torch.Tensor] = {}
    for key, t in sd.items():
        parts = key.split(".")
        if parts[0] in ("quant_conv", "post_quant_conv"):
            new = key
        else:
            side, what = parts[0], parts[1]
            if what in ("conv_in", "conv_out"):
                new = key
            elif what == "conv_norm_out":
                new = f"{side}.norm_out.{parts[-1]}"
            elif what in ("down_blocks", "up_blocks"):
                i = int(parts[2])
                ldm_i = i if what == "down_blocks" else n_up - 1 - i
                kind = "down" if what == "down_blocks" else "up"
                if parts[3] == "resnets":
                    rest = ".".join(parts[5:]).replace("conv_shortcut", "nin_shortcut")
                    new = f"{side}.{kind}.{ldm_i}.block.{parts[4]}.{rest}"
                else:  # downsamplers / upsamplers
                    new = f"{side}.{kind}.{ldm_i}.{'downsample' if kind == 'down' else 'upsample'}.conv.{parts[-1]}"
            elif what == "mid_block":
                if parts[2] == "resnets":
                    rest = ".".join(parts[4:]).replace("conv_shortcut", "nin_shortcut")
                    new = f"{side}.mid.block_{int(parts[3]) + 1}.{rest}"
                else:
                    rest = ".".join(parts[4:])
                    for a, b in _VAE_ATTN:
                        if rest.startswith(a):
                            rest = b + rest[len(a):]
                            break
                    new = f"{side}.mid.attn_1.{rest}"
                    if t.ndim == 2:
                        t = t[:, :, None, None]
            else:
                raise KeyError(f"VAE key {key!r} has no LDM counterpart")
        out[prefix + new] = t
    return out


def clip_l_to_ldm(sd: dict[str, torch.Tensor], prefix: str = "cond_stage_model.transformer.") -> dict:
    """A transformers ``CLIPTextModel`` state dict -> ``<prefix>text_model.*``."""
    out = {}
    for key, t in sd.items():
        if key == "text_projection.weight":
            continue
        k = key if key.startswith("text_model.") else "text_model." + key
        out[prefix + k] = t
    return out


def open_clip_to_ldm(sd: dict[str, torch.Tensor], prefix: str = "cond_stage_model.model.") -> dict:
    """A transformers CLIP text model state dict (with or without projection) -> OpenCLIP keys
    with fused ``in_proj`` attention weights."""
    sd = {k.removeprefix("text_model."): v for k, v in sd.items()}
    out: dict[str, torch.Tensor] = {}
    top = {"embeddings.token_embedding.weight": "token_embedding.weight",
           "embeddings.position_embedding.weight": "positional_embedding",
           "final_layer_norm.weight": "ln_final.weight", "final_layer_norm.bias": "ln_final.bias"}
    n = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("encoder.layers."))
    for key, t in sd.items():
        if key in top:
            out[prefix + top[key]] = t
        elif key == "text_projection.weight":
            out[prefix + "text_projection"] = t.T.contiguous()
        elif key.startswith("embeddings.position_ids"):
            continue
    for i in range(n):
        src = f"encoder.layers.{i}."
        dst = f"{prefix}transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[dst + f"attn.in_proj_{kind}"] = torch.cat(
                [sd[src + f"self_attn.{p}_proj.{kind}"] for p in ("q", "k", "v")], dim=0)
            out[dst + f"attn.out_proj.{kind}"] = sd[src + f"self_attn.out_proj.{kind}"]
            out[dst + f"ln_1.{kind}"] = sd[src + f"layer_norm1.{kind}"]
            out[dst + f"ln_2.{kind}"] = sd[src + f"layer_norm2.{kind}"]
            out[dst + f"mlp.c_fc.{kind}"] = sd[src + f"mlp.fc1.{kind}"]
            out[dst + f"mlp.c_proj.{kind}"] = sd[src + f"mlp.fc2.{kind}"]
    return out


def _sd(module_or_sd) -> dict[str, torch.Tensor]:
    if isinstance(module_or_sd, dict):
        return dict(module_or_sd)
    return {k: v.detach() for k, v in module_or_sd.state_dict().items()}


def convert_pipeline_to_ldm(unet, vae, text_encoder, family: str = "sd1", text_encoder_2=None,
                            *, extra_text_layer: dict | None = None) -> dict[str, torch.Tensor]:
    """One LDM single-file state dict from diffusers components.

    ``family``: "sd1" (CLIP-L), "sd2" (OpenCLIP under ``cond_stage_model.model``), "sdxl"
    (``text_encoder`` CLIP-L + ``text_encoder_2`` OpenCLIP-G with projection) or
    "sdxl_refiner" (``text_encoder_2`` only; pass ``text_encoder=None``).
    ``extra_text_layer`` (SD2): state dict entries of one more OpenCLIP resblock appended after
    the last (real SD2 files hold 24 layers of which diffusers uses 23).
    """
    out = unet_to_ldm(_sd(unet), dict(unet.config))
    out.update(vae_to_ldm(_sd(vae)))
    if family == "sd1":
        out.update(clip_l_to_ldm(_sd(text_encoder)))
    elif family == "sd2":
        te = open_clip_to_ldm(_sd(text_encoder))
        if extra_text_layer:
            n = 1 + max(int(k.split(".")[4]) for k in te if ".resblocks." in k)
            te.update({f"cond_stage_model.model.transformer.resblocks.{n}.{k}": v
                       for k, v in extra_text_layer.items()})
        out.update(te)
    elif family == "sdxl":
        out.update(clip_l_to_ldm(_sd(text_encoder), "conditioner.embedders.0.transformer."))
        out.update(open_clip_to_ldm(_sd(text_encoder_2), "conditioner.embedders.1.model."))
    elif family == "sdxl_refiner":
        out.update(open_clip_to_ldm(_sd(text_encoder_2), "conditioner.embedders.0.model."))
    else:
        raise ValueError(f"unknown family {family!r}")
    return {k: v.contiguous() for k, v in out.items()}
