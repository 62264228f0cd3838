"""IP-Adapter (base; SD1.5 and SDXL) against diffusers' ``load_ip_adapter`` + pipeline with the same
image embeddings; the MODEL's UNet is left unchanged; weight and range; the loader and apply nodes
with a CLIP-vision encoding from transformers' CLIPVisionModelWithProjection."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

from nodegen.compat import torchvision as _tv
from nodegen.diffusion.sample import Steps, sample
from nodegen.kernel.registry import default_registry
from nodegen.models.objects import DiffusionModel, TextEncoder
from tests.support.fixtures import fixture

_tv.apply()
torch.set_num_threads(1)
STEPS = 4
EMBED_DIM = 32
REG = default_registry()


def make_ip_adapter(unet, seed: int) -> dict[str, torch.Tensor]:
    """A random base IP-Adapter for ``unet`` in the original file layout (4 image tokens)."""
    g = torch.Generator().manual_seed(seed)
    cross = unet.config.cross_attention_dim
    sd = {"image_proj.proj.weight": torch.randn(cross * 4, EMBED_DIM, generator=g) * 0.2,
          "image_proj.proj.bias": torch.randn(cross * 4, generator=g) * 0.1,
          "image_proj.norm.weight": 1 + torch.randn(cross, generator=g) * 0.1,
          "image_proj.norm.bias": torch.randn(cross, generator=g) * 0.1}
    key = 1
    blocks = list(unet.config.block_out_channels)
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        if name.startswith("mid_block"):
            hidden = blocks[-1]
        elif name.startswith("up_blocks"):
            hidden = blocks[::-1][int(name[len("up_blocks.")])]
        else:
            hidden = blocks[int(name[len("down_blocks.")])]
        for kv in ("to_k_ip", "to_v_ip"):
            sd[f"ip_adapter.{key}.{kv}.weight"] = torch.randn(hidden, cross, generator=g) * 0.3
        key += 2
    return sd


def _embeds(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, EMBED_DIM, generator=g), torch.zeros(1, EMBED_DIM)


def _apply(model, path, pos, neg, weight=0.8, start=0.0, end=1.0):
    from nodegen.models.ip_adapter import load_ip_adapter

    ip = load_ip_adapter(path)
    out = REG["IPAdapterApply"].run(None, model=model, ipadapter=ip, clip_vision_output=SimpleNamespace(image_embeds=pos),
                                    weight=weight, start_at=start, end_at=end,
                                    negative_clip_vision_output=SimpleNamespace(image_embeds=neg))
    assert ip.variant == "base"
    return out


def _latents(sched, seed):
    sched.set_timesteps(STEPS)
    smax = float(sched.sigmas[0])
    return torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(seed)) * ((smax**2 + 1) ** 0.5 / smax)


def test_sd15_ip_adapter_matches_diffusers(tmp_path_factory, tmp_path):
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    fx = fixture("sd1", tmp_path_factory.mktemp("sd1"))
    save_file(make_ip_adapter(fx.unet, 1), str(tmp_path / "ip.safetensors"))
    pos_img, neg_img = _embeds(2)
    before = {k: v.clone() for k, v in fx.unet.state_dict().items()}
    model = DiffusionModel.from_unet(fx.unet, "sd1", "epsilon")
    te = TextEncoder.from_components([fx.tokenizer], [fx.text_encoder], "sd1")
    pos, neg = te.encode("a photo of a cat"), te.encode("blurry")

    def ours(m):
        return sample(m, pos, neg, {"samples": torch.zeros(1, 4, 8, 8)}, 3, Steps(STEPS), 6.0,
                  device="cpu").latent["samples"]

    lat = ours(_apply(model, tmp_path / "ip.safetensors", pos_img, neg_img))
    # the shared UNet is as it was: processors, projection and weights
    assert fx.unet.encoder_hid_proj is None and fx.unet.config.encoder_hid_dim_type is None
    assert not any(hasattr(p, "to_k_ip") for p in fx.unet.attn_processors.values())
    assert all(torch.equal(v, before[k]) for k, v in fx.unet.state_dict().items())
    sched = EulerDiscreteScheduler.from_config(fx.scheduler.config, timestep_spacing="linspace")
    pipe = StableDiffusionPipeline(vae=fx.vae, text_encoder=fx.text_encoder, tokenizer=fx.tokenizer,
                                   unet=copy.deepcopy(fx.unet), scheduler=sched, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_ip_adapter(str(tmp_path), subfolder="", weight_name="ip.safetensors", image_encoder_folder=None)
    pipe.set_ip_adapter_scale(0.8)
    ref = pipe(prompt_embeds=pos[0].embeds, negative_prompt_embeds=neg[0].embeds,
               ip_adapter_image_embeds=[torch.cat([neg_img, pos_img])[:, None]], num_inference_steps=STEPS,
               guidance_scale=6.0, height=64, width=64, latents=_latents(sched, 3),
               generator=torch.Generator().manual_seed(3), output_type="latent").images
    assert (lat - ref).abs().max() <= 1e-4 * ref.abs().max(), float((lat - ref).abs().max())
    plain = ours(model)
    assert (plain - lat).abs().max() > 1e-2 * ref.abs().max()  # the image prompt mattered
    late = ours(_apply(model, tmp_path / "ip.safetensors", pos_img, neg_img, start=0.5))
    assert (late - lat).abs().max() > 1e-3 and (late - plain).abs().max() > 1e-3  # the range matters


def test_sdxl_ip_adapter_matches_diffusers(tmp_path_factory, tmp_path):
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    fx = fixture("sdxl", tmp_path_factory.mktemp("sdxl"))
    save_file(make_ip_adapter(fx.unet, 4), str(tmp_path / "ip-xl.safetensors"))
    pos_img, neg_img = _embeds(5)
    model = DiffusionModel.from_unet(fx.unet, "sdxl", "epsilon")
    te = TextEncoder.from_components([fx.tokenizer, fx.tokenizer_2], [fx.text_encoder, fx.text_encoder_2], "sdxl")
    pos, neg = te.encode("a castle"), te.encode("low quality")
    m = _apply(model, tmp_path / "ip-xl.safetensors", pos_img, neg_img, weight=0.6)
    lat = sample(m, pos, neg, {"samples": torch.zeros(1, 4, 8, 8)}, 5, Steps(STEPS), 5.0,
                  device="cpu").latent["samples"]
    sched = EulerDiscreteScheduler.from_config(fx.scheduler.config, timestep_spacing="linspace")
    pipe = StableDiffusionXLPipeline(vae=fx.vae, text_encoder=fx.text_encoder, text_encoder_2=fx.text_encoder_2,
                                     tokenizer=fx.tokenizer, tokenizer_2=fx.tokenizer_2, unet=copy.deepcopy(fx.unet),
                                     scheduler=sched, force_zeros_for_empty_prompt=False)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_ip_adapter(str(tmp_path), subfolder="", weight_name="ip-xl.safetensors", image_encoder_folder=None)
    pipe.set_ip_adapter_scale(0.6)
    ref = pipe(prompt_embeds=pos[0].embeds, pooled_prompt_embeds=pos[0].pooled,
               negative_prompt_embeds=neg[0].embeds, negative_pooled_prompt_embeds=neg[0].pooled,
               ip_adapter_image_embeds=[torch.cat([neg_img, pos_img])[:, None]], num_inference_steps=STEPS,
               guidance_scale=5.0, height=64, width=64, latents=_latents(sched, 5),
               generator=torch.Generator().manual_seed(5), output_type="latent").images
    assert (lat - ref).abs().max() <= 1e-4 * ref.abs().max(), float((lat - ref).abs().max())


def test_loader_node_and_clip_vision_output(tmp_path_factory, tmp_path):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from nodegen.kernel.context import CancelToken, RunContext
    from nodegen.models.paths import ModelPaths

    fx = fixture("sd1", tmp_path_factory.mktemp("sd1"))
    (tmp_path / "ipadapter").mkdir()
    save_file(make_ip_adapter(fx.unet, 7), str(tmp_path / "ipadapter" / "ip-adapter_sd15.safetensors"))
    paths = ModelPaths([tmp_path], use_env=False, use_config=False)
    assert paths.list("ipadapter") == ["ip-adapter_sd15.safetensors"]
    ctx = RunContext(node_id="1", node_title="IPAdapterLoader", device=torch.device("cpu"), models=None, paths=paths,
                     output_dir=".", input_dir=".", temp_dir=".", workflow=None, cancel=CancelToken())
    ip = REG["IPAdapterLoader"].run(ctx, ipadapter_file="ip-adapter_sd15.safetensors")
    torch.manual_seed(0)
    vision = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                            num_attention_heads=2, image_size=32, patch_size=8,
                                                            projection_dim=EMBED_DIM)).eval()
    with torch.no_grad():
        out = vision(pixel_values=torch.rand(1, 3, 32, 32), output_hidden_states=True)
    cvo = SimpleNamespace(image_embeds=out.image_embeds, last_hidden_state=out.last_hidden_state,
                          penultimate_hidden_states=out.hidden_states[-2])
    model = DiffusionModel.from_unet(fx.unet, "sd1", "epsilon")
    applied = REG["IPAdapterApply"].run(None, model=model, ipadapter=ip, clip_vision_output=cvo, weight=1.0,
                                        start_at=0.0, end_at=1.0)
    assert "ip_adapters" not in model.options and len(applied.options["ip_adapters"]) == 1
    te = TextEncoder.from_components([fx.tokenizer], [fx.text_encoder], "sd1")
    lat = sample(applied, te.encode("a cat"), te.encode(""), {"samples": torch.zeros(1, 4, 8, 8)}, 1, Steps(2),
                 5.0, device="cpu").latent["samples"]
    assert torch.isfinite(lat).all()
    with pytest.raises(ValueError, match="must not exceed"):
        REG["IPAdapterApply"].run(None, model=model, ipadapter=ip, clip_vision_output=cvo, weight=1.0,
                                  start_at=0.9, end_at=0.1)


def make_plus_projection(cross: int, embed: int, seed: int, queries: int = 4, hidden: int = 64) -> dict:
    """A random "plus" (perceiver resampler) image projection in the original file layout:
    4 layers of (attention with fused to_kv, feed-forward), 64-wide heads."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, s=0.1):
        return torch.randn(*shape, generator=g) * s

    sd = {"latents": r(1, queries, hidden, s=1.0), "proj_in.weight": r(hidden, embed), "proj_in.bias": r(hidden),
          "proj_out.weight": r(cross, hidden), "proj_out.bias": r(cross),
          "norm_out.weight": 1 + r(cross), "norm_out.bias": r(cross)}
    for i in range(4):
        p = f"layers.{i}."
        sd |= {p + "0.norm1.weight": 1 + r(hidden), p + "0.norm1.bias": r(hidden),
               p + "0.norm2.weight": 1 + r(hidden), p + "0.norm2.bias": r(hidden),
               p + "0.to_q.weight": r(64, hidden), p + "0.to_kv.weight": r(128, hidden),
               p + "0.to_out.weight": r(hidden, 64),
               p + "1.0.weight": 1 + r(hidden), p + "1.0.bias": r(hidden),
               p + "1.1.weight": r(hidden * 4, hidden), p + "1.3.weight": r(hidden, hidden * 4)}
    return {"image_proj." + k: v for k, v in sd.items()}


def test_sd15_ip_adapter_plus_matches_diffusers(tmp_path_factory, tmp_path):
    """The plus / plus-face adapters (same layout) read the penultimate CLIP-vision hidden states."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    from nodegen.models.ip_adapter import load_ip_adapter

    fx = fixture("sd1", tmp_path_factory.mktemp("sd1"))
    sd = {k: v for k, v in make_ip_adapter(fx.unet, 8).items() if k.startswith("ip_adapter.")}
    sd |= make_plus_projection(fx.unet.config.cross_attention_dim, 48, 9)
    save_file(sd, str(tmp_path / "ip-plus.safetensors"))
    ip = load_ip_adapter(tmp_path / "ip-plus.safetensors")
    assert ip.variant == "plus" and ip.uses_hidden_states
    g = torch.Generator().manual_seed(10)
    pos_h, neg_h = torch.randn(1, 5, 48, generator=g), torch.randn(1, 5, 48, generator=g) * 0.1
    model = DiffusionModel.from_unet(fx.unet, "sd1", "epsilon")
    applied = REG["IPAdapterApply"].run(
        None, model=model, ipadapter=ip, clip_vision_output=SimpleNamespace(penultimate_hidden_states=pos_h),
        weight=0.7, start_at=0.0, end_at=1.0,
        negative_clip_vision_output=SimpleNamespace(penultimate_hidden_states=neg_h))
    te = TextEncoder.from_components([fx.tokenizer], [fx.text_encoder], "sd1")
    pos, neg = te.encode("a photo of a cat"), te.encode("blurry")
    lat = sample(applied, pos, neg, {"samples": torch.zeros(1, 4, 8, 8)}, 3, Steps(STEPS), 6.0,
                 device="cpu").latent["samples"]
    sched = EulerDiscreteScheduler.from_config(fx.scheduler.config, timestep_spacing="linspace")
    pipe = StableDiffusionPipeline(vae=fx.vae, text_encoder=fx.text_encoder, tokenizer=fx.tokenizer,
                                   unet=copy.deepcopy(fx.unet), scheduler=sched, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_ip_adapter(str(tmp_path), subfolder="", weight_name="ip-plus.safetensors", image_encoder_folder=None)
    pipe.set_ip_adapter_scale(0.7)
    ref = pipe(prompt_embeds=pos[0].embeds, negative_prompt_embeds=neg[0].embeds,
               ip_adapter_image_embeds=[torch.cat([neg_h, pos_h])[:, None]], num_inference_steps=STEPS,
               guidance_scale=6.0, height=64, width=64, latents=_latents(sched, 3),
               generator=torch.Generator().manual_seed(3), output_type="latent").images
    assert (lat - ref).abs().max() <= 1e-4 * ref.abs().max(), float((lat - ref).abs().max())


@pytest.mark.parametrize("weight_type", ["ease in", "strong middle"])
def test_weight_types_match_diffusers_per_block_scales(tmp_path_factory, tmp_path, weight_type):
    """ComfyUI_IPAdapter_plus's weight types give each transformer block (numbered in run order, 16 for
    SD1.5) its own weight; oracle: diffusers' per-block IP-Adapter scales with the pack's values,
    computed here from the tiny UNet's blocks (down 0: block 0, middle: 1, up 1: blocks 2 and 3)."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    fx = fixture("sd1", tmp_path_factory.mktemp("sd1"))
    save_file(make_ip_adapter(fx.unet, 1), str(tmp_path / "ip.safetensors"))
    pos_img, neg_img = _embeds(2)
    model = _apply(DiffusionModel.from_unet(fx.unet, "sd1", "epsilon"), tmp_path / "ip.safetensors", pos_img, neg_img)
    model.options["ip_adapters"][0].weight_type = weight_type
    te = TextEncoder.from_components([fx.tokenizer], [fx.text_encoder], "sd1")
    pos, neg = te.encode("a photo of a cat"), te.encode("blurry")
    lat = sample(model, pos, neg, {"samples": torch.zeros(1, 4, 8, 8)}, 3, Steps(STEPS), 6.0,
                 device="cpu").latent["samples"]
    if weight_type == "ease in":
        w = [0.8 * (0.05 + 0.95 * (1 - t / 16)) for t in range(4)]
    else:  # strong middle: the input and output blocks at a fifth
        w = [0.16, 0.8, 0.16, 0.16]
    sched = EulerDiscreteScheduler.from_config(fx.scheduler.config, timestep_spacing="linspace")
    pipe = StableDiffusionPipeline(vae=fx.vae, text_encoder=fx.text_encoder, tokenizer=fx.tokenizer,
                                   unet=copy.deepcopy(fx.unet), scheduler=sched, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_ip_adapter(str(tmp_path), subfolder="", weight_name="ip.safetensors", image_encoder_folder=None)
    pipe.set_ip_adapter_scale({"down": {"block_0": [w[0]]}, "mid": w[1], "up": {"block_1": [w[2], w[3]]}})
    ref = pipe(prompt_embeds=pos[0].embeds, negative_prompt_embeds=neg[0].embeds,
               ip_adapter_image_embeds=[torch.cat([neg_img, pos_img])[:, None]], num_inference_steps=STEPS,
               guidance_scale=6.0, height=64, width=64, latents=_latents(sched, 3),
               generator=torch.Generator().manual_seed(3), output_type="latent").images
    assert (lat - ref).abs().max() <= 1e-4 * ref.abs().max(), float((lat - ref).abs().max())


def test_sdxl_block_numbering_finds_instantstyle_blocks():
    """SDXL's 11 transformer blocks in run order: the style block (up 0, attention 1) is 6 and the
    layout block (down 2, attention 1) is 3, where the pack's style / composition types put the weight
    (InstantStyle's blocks)."""
    from nodegen.models.ip_adapter_weights import layer_weight, transformer_blocks

    names = [f"down_blocks.{b}.attentions.{a}.transformer_blocks.{t}.attn2.processor"
             for b in (1, 2) for a in (0, 1) for t in range(2)]
    names += [f"mid_block.attentions.0.transformer_blocks.{t}.attn2.processor" for t in range(10)]
    names += [f"up_blocks.{b}.attentions.{a}.transformer_blocks.0.attn2.processor" for b in (0, 1) for a in range(3)]
    blocks = transformer_blocks(reversed(names))
    assert len({i for i, _ in blocks.values()}) == 11
    assert blocks["up_blocks.0.attentions.1.transformer_blocks.0.attn2.processor"] == (6, "output")
    assert blocks["down_blocks.2.attentions.1.transformer_blocks.1.attn2.processor"] == (3, "input")
    assert blocks["mid_block.attentions.0.transformer_blocks.7.attn2.processor"] == (4, "middle")
    sdxl = {"ip_adapter": {"1.to_k_ip.weight": torch.zeros(640, 2048), "101.to_k_ip.weight": torch.zeros(1280, 2048)}}
    assert [layer_weight("style transfer", 0.9, i, "output", sdxl) for i in range(11)] == [0.0] * 6 + [0.9] + [0.0] * 4
    assert [layer_weight("composition", 0.9, i, "input", sdxl) for i in range(11)] == [0.0] * 3 + [0.9] + [0.0] * 7
