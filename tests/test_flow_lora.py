"""Flux / SD3 LoRAs at strength 1 equal diffusers' ``load_lora_weights`` (max abs pixel difference
<= 1e-3): the formats people publish for Flux (diffusers/PEFT, kohya, XLabs, the original BFL/ComfyUI
keys) and diffusers' SD3 format. The kohya file leaves out ``single_blocks.N.linear1`` because
diffusers' kohya converter hard-codes the full-size split (3072 x 3 + 12288); the fused-weight split
is checked on its own against the same LoRA written in the diffusers format."""

from __future__ import annotations

import pytest
import torch

from nodegen.diffusion.flow_sampling import flux_mu
from nodegen.diffusion.sample import Steps, sample
from nodegen.models.lora import apply_lora, parse_lora
from tests.support.flow_fixtures import fixture
from tests.test_oracle_flow import flux_components, sd3_components

torch.set_num_threads(1)
RANK = 4


@pytest.fixture(scope="module")
def flux(tmp_path_factory):
    return fixture("flux", tmp_path_factory.mktemp("flux"))


@pytest.fixture(scope="module")
def sd3(tmp_path_factory):
    return fixture("sd3", tmp_path_factory.mktemp("sd3"))


def _pair(g, out_f: int, in_f: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(RANK, in_f, generator=g) * 0.3, torch.randn(out_f, RANK, generator=g) * 0.3


def flux_lora(fmt: str, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    h, mlp = 128, 512
    sd = {}
    if fmt == "diffusers":
        for m, (o, i) in {"transformer_blocks.0.attn.to_q": (h, h), "transformer_blocks.0.attn.add_v_proj": (h, h),
                          "transformer_blocks.0.ff.net.2": (h, 4 * h), "single_transformer_blocks.1.proj_mlp": (mlp, h),
                          "single_transformer_blocks.0.proj_out": (h, h + mlp)}.items():
            down, up = _pair(g, o, i)
            sd[f"transformer.{m}.lora_A.weight"], sd[f"transformer.{m}.lora_B.weight"] = down, up
    elif fmt == "kohya":
        for m, (o, i) in {"double_blocks_0_img_attn_qkv": (3 * h, h), "double_blocks_0_txt_mlp_0": (4 * h, h),
                          "single_blocks_1_linear2": (h, h + mlp)}.items():
            down, up = _pair(g, o, i)
            sd[f"lora_unet_{m}.lora_down.weight"], sd[f"lora_unet_{m}.lora_up.weight"] = down, up
            sd[f"lora_unet_{m}.alpha"] = torch.tensor(2.0)
    elif fmt == "xlabs":
        for m, (o, i) in {"double_blocks.0.processor.qkv_lora1": (3 * h, h),
                          "double_blocks.0.processor.proj_lora2": (h, h)}.items():
            down, up = _pair(g, o, i)
            sd[f"{m}.down.weight"], sd[f"{m}.up.weight"] = down, up
    return sd


def _flux_image(fx, lora_sd=None, ours=True):
    if ours:
        model, te, vae = flux_components(fx)
        if lora_sd is not None:
            model, te = apply_lora(model, te, parse_lora(lora_sd), 1.0, 1.0)
        model.options["model_sampling"] = {"kind": "flux", "shift": flux_mu(64, 64), "multiplier": 1.0}
        out = sample(model, te.encode("a cat"), None, {"samples": torch.zeros(1, 16, 8, 8)}, 4, Steps(2, "simple"), 1.0, "euler", device="cpu")
        return vae.decode(out.latent["samples"], device="cpu")
    pipe = fx.pipeline()
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights({k: v.clone() for k, v in lora_sd.items()})
    try:
        img = pipe(prompt="a cat", num_inference_steps=2, guidance_scale=3.5, height=64, width=64,
                   generator=torch.Generator().manual_seed(4), output_type="pt").images
    finally:
        pipe.unload_lora_weights()
    return img.permute(0, 2, 3, 1)


@pytest.mark.parametrize("fmt", ["diffusers", "kohya", "xlabs"])
def test_flux_lora_equals_diffusers(flux, fmt):
    from nodegen.models.detect import detect

    sd = flux_lora(fmt)
    assert detect({k: tuple(v.shape) for k, v in sd.items()}).kind == "lora"
    base = _flux_image(flux)
    ours = _flux_image(flux, sd)
    theirs = _flux_image(flux, sd, ours=False)
    assert float((ours - base).abs().max()) > 1e-2, "the LoRA changes the image"
    assert float((ours - theirs).abs().max()) <= 1e-3


def test_flux_original_layout_lora_splits_fused_weights(flux):
    """The same LoRA on ``single_blocks.0.linear1`` and ``double_blocks.0.img_attn.qkv`` written in the
    BFL/ComfyUI spelling and, split by rows, in the diffusers spelling gives the same patches."""
    g = torch.Generator().manual_seed(7)
    h, mlp = 128, 512
    d1, u1 = _pair(g, 3 * h + mlp, h)
    d2, u2 = _pair(g, 3 * h, h)
    bfl = {"diffusion_model.single_blocks.0.linear1.lora_A.weight": d1,
           "diffusion_model.single_blocks.0.linear1.lora_B.weight": u1,
           "diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight": d2,
           "diffusion_model.double_blocks.0.img_attn.qkv.lora_B.weight": u2}
    diff = {}
    for j, p in enumerate("qkv"):
        diff[f"transformer.single_transformer_blocks.0.attn.to_{p}.lora_A.weight"] = d1
        diff[f"transformer.single_transformer_blocks.0.attn.to_{p}.lora_B.weight"] = u1[j * h:(j + 1) * h]
        diff[f"transformer.transformer_blocks.0.attn.to_{p}.lora_A.weight"] = d2
        diff[f"transformer.transformer_blocks.0.attn.to_{p}.lora_B.weight"] = u2[j * h:(j + 1) * h]
    diff["transformer.single_transformer_blocks.0.proj_mlp.lora_A.weight"] = d1
    diff["transformer.single_transformer_blocks.0.proj_mlp.lora_B.weight"] = u1[3 * h:]
    a, b = _flux_image(flux, bfl), _flux_image(flux, diff)
    assert float((a - b).abs().max()) <= 1e-5
    assert float((a - _flux_image(flux)).abs().max()) > 1e-2


def test_sd3_lora_equals_diffusers(sd3):
    g = torch.Generator().manual_seed(3)
    sd = {}
    for m, (o, i) in {"transformer_blocks.0.attn.to_k": (128, 128), "transformer_blocks.1.ff.net.0.proj": (512, 128),
                      "transformer_blocks.0.attn2.to_v": (128, 128)}.items():
        sd[f"transformer.{m}.lora_A.weight"], sd[f"transformer.{m}.lora_B.weight"] = _pair(g, o, i)
    model, te, vae = sd3_components(sd3)
    model, _ = apply_lora(model, None, parse_lora(sd), 1.0, 0.0)
    out = sample(model, te.encode("a cat"), te.encode(""), {"samples": torch.zeros(1, 16, 8, 8)}, 2, Steps(2, "normal"), 3.0, "euler", device="cpu")
    ours = vae.decode(out.latent["samples"], device="cpu")
    pipe = sd3.pipeline()
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights({k: v.clone() for k, v in sd.items()})
    try:
        theirs = pipe(prompt="a cat", negative_prompt="", num_inference_steps=2, guidance_scale=3.0, height=64,
                      width=64, generator=torch.Generator().manual_seed(2), output_type="pt").images
    finally:
        pipe.unload_lora_weights()
    assert float((ours - theirs.permute(0, 2, 3, 1)).abs().max()) <= 1e-3


def test_sd3_original_layout_lora_equals_its_diffusers_spelling(sd3):
    """A kohya LoRA on MMDiT's fused ``joint_blocks.N.x_block.attn.qkv`` (and a context-block MLP) equals
    the same LoRA split by rows into diffusers' to_q / to_k / to_v."""
    g = torch.Generator().manual_seed(8)
    h = 128
    d1, u1 = _pair(g, 3 * h, h)
    d2, u2 = _pair(g, 4 * h, h)
    kohya = {"lora_unet_joint_blocks_0_x_block_attn_qkv.lora_down.weight": d1,
             "lora_unet_joint_blocks_0_x_block_attn_qkv.lora_up.weight": u1,
             "lora_unet_joint_blocks_0_x_block_attn_qkv.alpha": torch.tensor(2.0),
             "lora_unet_joint_blocks_0_context_block_mlp_fc1.lora_down.weight": d2,
             "lora_unet_joint_blocks_0_context_block_mlp_fc1.lora_up.weight": u2,
             "lora_unet_joint_blocks_0_context_block_mlp_fc1.alpha": torch.tensor(2.0)}
    scale = 2.0 / RANK
    diff = {"transformer.transformer_blocks.0.ff_context.net.0.proj.lora_A.weight": d2 * scale,
            "transformer.transformer_blocks.0.ff_context.net.0.proj.lora_B.weight": u2}
    for j, p in enumerate("qkv"):
        diff[f"transformer.transformer_blocks.0.attn.to_{p}.lora_A.weight"] = d1 * scale
        diff[f"transformer.transformer_blocks.0.attn.to_{p}.lora_B.weight"] = u1[j * h:(j + 1) * h]

    def image(lora_sd):
        model, te, vae = sd3_components(sd3)
        if lora_sd is not None:
            model, _ = apply_lora(model, None, parse_lora(lora_sd), 1.0, 0.0)
        out = sample(model, te.encode("a cat"), None, {"samples": torch.zeros(1, 16, 8, 8)}, 2, Steps(2, "normal"),
                     1.0, "euler", device="cpu")
        return vae.decode(out.latent["samples"], device="cpu")

    a, b = image(kohya), image(diff)
    assert float((a - b).abs().max()) <= 1e-5
    assert float((a - image(None)).abs().max()) > 1e-2
