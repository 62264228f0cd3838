"""Full-size ControlNet layouts (SD1.5, SD2.1, SDXL), checked on shapes only (meta tensors, no
weights): the original-layout keys of a real-size ControlNet give back its diffusers config
(blocks, heads by family rule, depths, text width, SDXL embedding), and every converted key
fits the model built from that config."""

from __future__ import annotations

import pytest
import torch

from nodegen.models.controlnet import config_from_ldm
from nodegen.models.controlnet_export import controlnet_to_ldm

SD15 = dict(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, cross_attention_dim=768,
            attention_head_dim=8, down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",))
SD21 = dict(SD15, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20), use_linear_projection=True)
SDXL = dict(block_out_channels=(320, 640, 1280), layers_per_block=2, cross_attention_dim=2048,
            attention_head_dim=(5, 10, 20), use_linear_projection=True,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            transformer_layers_per_block=(1, 2, 10), addition_embed_type="text_time",
            addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816)


@pytest.mark.parametrize("name,cfg,family", [("sd15", SD15, "sd1"), ("sd21", SD21, "sd2"),
                                             ("sdxl", SDXL, "sdxl")])
def test_fullsize_config_from_shapes(name, cfg, family):
    from nodegen.compat import torchvision as torchvision_fix

    torchvision_fix.apply()
    from diffusers import ControlNetModel
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

    with torch.device("meta"):
        net = ControlNetModel(**cfg)
    sd = net.state_dict()
    ldm = {k[len("control_model."):]: v for k, v in controlnet_to_ldm(sd).items()}
    shapes = {k: tuple(v.shape) for k, v in ldm.items()}
    got, fam = config_from_ldm(shapes, name)
    assert fam == family
    want = dict(net.config)
    for key in ("block_out_channels", "layers_per_block", "cross_attention_dim", "down_block_types",
                "conditioning_embedding_out_channels", "use_linear_projection", "in_channels",
                "conditioning_channels"):
        assert list(got[key]) == list(want[key]) if isinstance(want[key], (list, tuple)) else \
            got[key] == want[key], key
    heads = want["attention_head_dim"]
    assert (got["attention_head_dim"] == heads) if isinstance(heads, int) else list(got["attention_head_dim"]) == list(heads)
    tl = got["transformer_layers_per_block"]
    assert (list(tl) if isinstance(tl, list) else [tl] * 4)[: len(cfg["block_out_channels"])] == \
        list(cfg.get("transformer_layers_per_block", (1,) * len(cfg["block_out_channels"])))
    if family == "sdxl":
        assert got["projection_class_embeddings_input_dim"] == 2816 and got["addition_time_embed_dim"] == 256
    # the diffusers converter's output fits a model built from the derived config exactly
    with torch.device("meta"):
        rebuilt = ControlNetModel(**got)
    conv = {k for k, v in convert_controlnet_checkpoint(ldm, got).items() if v is not None}
    if family == "sdxl":  # diffusers' converter leaves out the text_time embedding; we add it
        conv |= {k for k in sd if k.startswith("add_embedding.")}
    assert conv == set(rebuilt.state_dict())
    assert all(rebuilt.state_dict()[k].shape == sd[k].shape for k in sd)
