"""diffusers configs for single files: the shipped full-size family configs
(``nodegen/assets/configs/<family>/*.json``) as defaults, with every size-dependent value
derived from the tensor shapes, so scaled-down models load as well as full-size ones.

Heads cannot be read from shapes; each family's rule is used: SD1 UNets have 8 heads per
attention layer; SD2/SDXL UNets and all CLIP text encoders have a head size of 64.
"""

from __future__ import annotations

import json
import re
from importlib import resources

UNET = "model.diffusion_model."


def shipped(folder: str, component: str) -> dict:
    """A shipped config, e.g. ``shipped("sdxl", "unet")``."""
    text = resources.files("nodegen.assets").joinpath(f"configs/{folder}/{component}.json").read_text("utf-8")
    cfg = json.loads(text)
    cfg.pop("architectures", None)
    cfg.pop("model_type", None)
    return cfg


def config_folder(family: str, inpaint: bool = False, prediction: str = "epsilon") -> str:
    if family == "sd1":
        return "sd1_inpaint" if inpaint else "sd1"
    if family == "sd2":
        return "sd2_inpaint" if inpaint else ("sd2_v" if prediction == "v_prediction" else "sd2_eps")
    if family == "sdxl":
        return "sdxl_inpaint" if inpaint else "sdxl"
    return "sdxl_refiner"


def _indices(shapes: dict, pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in shapes if (m := rx.match(k))})


def unet_config(shapes: dict, family: str, inpaint: bool = False, prediction: str = "epsilon",
                prefix: str = UNET, pooled_dim: int | None = None) -> dict:
    """The ``UNet2DConditionModel`` config of an LDM UNet (keys under ``prefix``)."""
    cfg = shipped(config_folder(family, inpaint, prediction), "unet")
    cfg.pop("_class_name", None)
    p = prefix
    conv_in = shapes[p + "input_blocks.0.0.weight"]
    inputs = _indices(shapes, re.escape(p) + r"input_blocks\.(\d+)\.")
    ops = [i for i in inputs if p + f"input_blocks.{i}.0.op.weight" in shapes]
    L = (ops[0] - 1) if ops else (len(inputs) - 1)
    levels = len(ops) + 1
    blocks, down, depths = [], [], []
    for b in range(levels):
        first = 1 + b * (L + 1)
        blocks.append(int(shapes[p + f"input_blocks.{first}.0.out_layers.3.weight"][0]))
        tb = _indices(shapes, re.escape(p + f"input_blocks.{first}.1.transformer_blocks.") + r"(\d+)\.")
        down.append("CrossAttnDownBlock2D" if tb else "DownBlock2D")
        depths.append(len(tb) if tb else 1)
    up = []
    for b in range(levels):
        tb = _indices(shapes, re.escape(p + f"output_blocks.{b * (L + 1)}.1.transformer_blocks.") + r"(\d+)\.")
        up.append("CrossAttnUpBlock2D" if tb else "UpBlock2D")
    mid_tb = _indices(shapes, re.escape(p + "middle_block.1.transformer_blocks.") + r"(\d+)\.")
    cfg.update(
        in_channels=int(conv_in[1]),
        out_channels=int(shapes[p + "out.2.weight"][0]),
        block_out_channels=blocks,
        layers_per_block=L,
        down_block_types=down,
        up_block_types=up,
        norm_num_groups=int(cfg.get("norm_num_groups", 32)),
    )
    if not mid_tb:
        cfg["mid_block_type"] = "UNetMidBlock2D"
    attn_depths = [d for d, t in zip(depths, down, strict=True) if t.startswith("CrossAttn")]
    if mid_tb and attn_depths and len(mid_tb) != attn_depths[-1]:
        raise ValueError(f"unsupported UNet: middle block depth {len(mid_tb)} differs from the last level's")
    cfg["transformer_layers_per_block"] = depths if len(set(depths)) > 1 else depths[0]
    ctx = None
    for k, s in shapes.items():
        if k.startswith(p) and k.endswith("attn2.to_k.weight"):
            ctx = int(s[1])
            proj = shapes.get(k.split("transformer_blocks.")[0] + "proj_in.weight")
            cfg["use_linear_projection"] = proj is not None and len(proj) == 2
            break
    if ctx is not None:
        cfg["cross_attention_dim"] = ctx
    if family == "sd1":
        cfg["attention_head_dim"] = 8
    else:
        cfg["attention_head_dim"] = [max(1, c // 64) for c in blocks]
    adm = shapes.get(p + "label_emb.0.0.weight")
    if adm is not None:
        adm_in = int(adm[1])
        n_time = 5 if family == "sdxl_refiner" else 6
        time_dim = 256
        if pooled_dim is not None and (adm_in - pooled_dim) % n_time == 0 and adm_in > pooled_dim:
            time_dim = (adm_in - pooled_dim) // n_time
        cfg.update(addition_embed_type="text_time", addition_time_embed_dim=time_dim,
                   projection_class_embeddings_input_dim=adm_in)
    else:
        for key in ("addition_embed_type", "addition_time_embed_dim", "projection_class_embeddings_input_dim"):
            cfg.pop(key, None)
    return cfg


def vae_config(shapes: dict, prefix: str = "first_stage_model.", scaling_factor: float | None = None,
               folder: str = "sd1") -> dict:
    """The ``AutoencoderKL`` config of an LDM VAE (keys under ``prefix``)."""
    cfg = shipped(folder, "vae")
    cfg.pop("_class_name", None)
    p = prefix
    levels = _indices(shapes, re.escape(p + "encoder.down.") + r"(\d+)\.")
    blocks = []
    for i in levels:
        res = _indices(shapes, re.escape(p + f"encoder.down.{i}.block.") + r"(\d+)\.")
        blocks.append(int(shapes[p + f"encoder.down.{i}.block.{res[-1]}.conv2.weight"][0]))
    layers = len(_indices(shapes, re.escape(p + "encoder.down.0.block.") + r"(\d+)\."))
    cfg.update(
        in_channels=int(shapes[p + "encoder.conv_in.weight"][1]),
        out_channels=int(shapes[p + "decoder.conv_out.weight"][0]),
        latent_channels=int(shapes[p + "decoder.conv_in.weight"][1]),
        block_out_channels=blocks,
        layers_per_block=layers,
        down_block_types=["DownEncoderBlock2D"] * len(blocks),
        up_block_types=["UpDecoderBlock2D"] * len(blocks),
    )
    if scaling_factor is not None:
        cfg["scaling_factor"] = scaling_factor
    return cfg


def clip_config(shapes: dict, prefix: str, open_clip: bool, drop_last: bool = False) -> dict:
    """A ``CLIPTextConfig`` dict for CLIP-L (``<prefix>text_model.*``) or OpenCLIP
    (``<prefix>transformer.resblocks.*``) weights. ``drop_last``: build one layer fewer (SD2)."""
    if open_clip:
        tok = shapes[prefix + "token_embedding.weight"]
        pos = shapes[prefix + "positional_embedding"]
        layers = _indices(shapes, re.escape(prefix + "transformer.resblocks.") + r"(\d+)\.")
        inter = shapes[prefix + "transformer.resblocks.0.mlp.c_fc.weight"][0]
        proj = shapes.get(prefix + "text_projection")
        act = "gelu"
    else:
        tp = prefix + "text_model."
        tok = shapes[tp + "embeddings.token_embedding.weight"]
        pos = shapes[tp + "embeddings.position_embedding.weight"]
        layers = _indices(shapes, re.escape(tp + "encoder.layers.") + r"(\d+)\.")
        inter = shapes[tp + "encoder.layers.0.mlp.fc1.weight"][0]
        proj = None
        act = "quick_gelu"
    hidden = int(tok[1])
    n_layers = len(layers) - (1 if drop_last else 0)
    return dict(vocab_size=int(tok[0]), hidden_size=hidden, intermediate_size=int(inter),
                num_hidden_layers=n_layers, num_attention_heads=max(1, hidden // 64),
                max_position_embeddings=int(pos[0]), hidden_act=act,
                projection_dim=int(proj[1]) if proj is not None else hidden, layer_norm_eps=1e-5,
                bos_token_id=49406, eos_token_id=49407, pad_token_id=1)
