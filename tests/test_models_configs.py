"""Configs derived from tensor shapes reproduce the full-size family configs; detection of
full-size layouts agrees with diffusers. Built on the meta device: no weights allocated."""

from __future__ import annotations

import pytest
import torch

from nodegen.models import configs
from nodegen.models.detect import detect
from nodegen.models.ldm_export import convert_pipeline_to_ldm

KEYS = ("in_channels", "out_channels", "block_out_channels", "layers_per_block", "down_block_types",
        "up_block_types", "cross_attention_dim", "attention_head_dim", "use_linear_projection",
        "addition_embed_type", "addition_time_embed_dim", "projection_class_embeddings_input_dim")


def _meta_ldm(folder: str, family: str) -> tuple[dict, dict]:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    ucfg = configs.shipped(folder, "unet")
    ucfg.pop("_class_name")
    with torch.device("meta"):
        unet = UNet2DConditionModel(**ucfg)
        vcfg = configs.shipped(folder, "vae")
        vcfg.pop("_class_name")
        vae = AutoencoderKL(**vcfg)
        te = te2 = None
        if family != "sdxl_refiner":
            te = CLIPTextModel(CLIPTextConfig(**configs.shipped(folder, "text_encoder")))
        if family.startswith("sdxl"):
            te2 = CLIPTextModelWithProjection(CLIPTextConfig(**configs.shipped(folder, "text_encoder_2")))
    sd = convert_pipeline_to_ldm(unet, vae, te, family, text_encoder_2=te2)
    return sd, dict(unet.config)


@pytest.mark.parametrize("folder,family,inpaint,diffusers_type", [
    ("sd1", "sd1", False, "v1"), ("sd1_inpaint", "sd1", True, "inpainting"), ("sd2_v", "sd2", False, "v2"),
    ("sd2_inpaint", "sd2", True, "inpainting_v2"), ("sdxl", "sdxl", False, "xl_base"),
    ("sdxl_refiner", "sdxl_refiner", False, "xl_refiner")])
def test_full_size_configs_from_shapes(folder, family, inpaint, diffusers_type):
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    sd, real = _meta_ldm(folder, family)
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    det = detect(shapes)
    assert (det.kind, det.family, det.inpaint) == ("checkpoint", family, inpaint)
    assert infer_diffusers_model_type(sd) == diffusers_type
    pooled = int(shapes["conditioner.embedders.1.model.text_projection"][1]) if family == "sdxl" else (
        int(shapes["conditioner.embedders.0.model.text_projection"][1]) if family == "sdxl_refiner" else None)
    derived = configs.unet_config(shapes, family, inpaint, "epsilon", pooled_dim=pooled)
    for key in KEYS:
        a, b = derived.get(key), real.get(key)
        a = list(a) if isinstance(a, (list, tuple)) else a
        b = list(b) if isinstance(b, (list, tuple)) else b
        assert a == b, (key, a, b)
    tl = derived["transformer_layers_per_block"]
    real_tl = real["transformer_layers_per_block"]
    attn = [i for i, t in enumerate(real["down_block_types"]) if t.startswith("CrossAttn")]
    as_list = lambda v: [v] * len(real["block_out_channels"]) if isinstance(v, int) else list(v)  # noqa: E731
    assert [as_list(tl)[i] for i in attn] == [as_list(real_tl)[i] for i in attn]
    vae = configs.vae_config(shapes)
    assert vae["block_out_channels"] == [128, 256, 512, 512] and vae["layers_per_block"] == 2
    if family in ("sd1", "sd2"):
        prefix = "cond_stage_model.transformer." if family == "sd1" else "cond_stage_model.model."
        te = configs.clip_config(shapes, prefix, family == "sd2")
        want = configs.shipped(folder, "text_encoder")
        for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "hidden_act"):
            assert te[key] == want[key], key
