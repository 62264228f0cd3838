"""LoRA files as ComfyUI's LoraSave writes them (LDM UNet names under ``diffusion_model.``, text
encoders under ``text_encoders.clip_<l|g>.transformer.``, whole-tensor ``.diff`` / ``.diff_b``
changes), against diffusers; and keys a LoRA cannot use are reported with the file and count."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from safetensors.torch import save_file

from nodegen.models.ldm_export import unet_to_ldm
from nodegen.models.lora import apply_lora, parse_lora, read_lora
from nodegen.models.objects import DiffusionModel, TextEncoder
from tests.support.fixtures import fixture
from tests.support.lora_fixtures import peft_lora, peft_to_comfy

torch.set_num_threads(1)
PROMPT = "a photo of a cat"
BIAS = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0.bias"
NORM = "down_blocks.0.attentions.0.norm.weight"
TE_BIAS = "final_layer_norm.bias"  # transformers 5: no text_model. level


@pytest.fixture(scope="module")
def sd1(tmp_path_factory):
    return fixture("sd1", tmp_path_factory.mktemp("sd1"))


def _ldm(name: str, unet_config: dict) -> str:
    """The LDM module name of a diffusers parameter name."""
    owner = name.rpartition(".")[0]
    return next(iter(unet_to_ldm({owner + ".weight": torch.empty(0)}, unet_config, prefix="")))[: -len(".weight")]


def _unet_out(unet, ns):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 4, 8, 8, generator=g)
    emb = torch.randn(1, 77, ns.unet.config.cross_attention_dim, generator=g)
    with torch.no_grad():
        return unet(x, torch.tensor([300]), emb).sample


def test_comfyui_lorasave_file_equals_diffusers(sd1, tmp_path, caplog):
    from diffusers import StableDiffusionPipeline

    peft = peft_lora(sd1, seed=7)
    cfg = dict(sd1.unet.config)
    g = torch.Generator().manual_seed(8)
    diffs = {BIAS: torch.randn(sd1.unet.get_parameter(BIAS).shape, generator=g) * 0.1,
             NORM: torch.randn(sd1.unet.get_parameter(NORM).shape, generator=g) * 0.1}
    te_diff = torch.randn(sd1.text_encoder.get_parameter(TE_BIAS).shape, generator=g) * 0.1
    comfy = peft_to_comfy(peft, cfg)
    comfy[f"diffusion_model.{_ldm(BIAS, cfg)}.diff_b"] = diffs[BIAS]
    comfy[f"diffusion_model.{_ldm(NORM, cfg)}.diff"] = diffs[NORM]
    comfy["text_encoders.clip_l.transformer.text_model.final_layer_norm.diff_b"] = te_diff
    assert any(k.startswith("diffusion_model.input_blocks.") for k in comfy)
    path = tmp_path / "ComfyUI_extracted_lora_00001_.safetensors"
    save_file({k: v.half().float() for k, v in comfy.items()}, str(path))  # LoraSave writes fp16
    peft = {k: v.half().float() for k, v in peft.items()}

    # oracle: the diffs added to copies of the weights, then diffusers' load_lora_weights
    unet, te = copy.deepcopy(sd1.unet), copy.deepcopy(sd1.text_encoder)
    with torch.no_grad():
        for name, d in diffs.items():
            unet.get_parameter(name).add_(d.half().float())
        te.get_parameter(TE_BIAS).add_(te_diff.half().float())
    pipe = StableDiffusionPipeline(vae=sd1.vae, text_encoder=te, tokenizer=sd1.tokenizer, unet=unet,
                                   scheduler=sd1.scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.load_lora_weights({k: v.clone() for k, v in peft.items()})
    with torch.no_grad():
        ref_embeds, _ = pipe.encode_prompt(PROMPT, "cpu", 1, False)
    ref_unet = _unet_out(pipe.unet, sd1)

    caplog.set_level(logging.WARNING)
    lora = read_lora(path)
    model = DiffusionModel.from_unet(sd1.unet, "sd1", "epsilon")
    clip = TextEncoder.from_components([sd1.tokenizer], [sd1.text_encoder], "sd1")
    m2, c2 = apply_lora(model, clip, lora, 1.0, 1.0)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    with torch.no_grad(), m2.use("cpu", torch.float32) as patched:
        out = _unet_out(patched, sd1)
    assert (out - _unet_out(sd1.unet, sd1)).abs().max() > 0.05
    torch.testing.assert_close(out, ref_unet, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(c2.encode(PROMPT, device="cpu")[0].embeds, ref_embeds, rtol=1e-5, atol=1e-5)


def test_comfyui_sdxl_lora_targets_both_encoders(tmp_path_factory):
    """``text_encoders.clip_l`` / ``clip_g`` go to SDXL's first and second text encoders: the
    same patches as the PEFT file."""
    ns = fixture("sdxl", tmp_path_factory.mktemp("sdxl"))
    peft = peft_lora(ns, seed=9)
    a, b = parse_lora(peft), parse_lora(peft_to_comfy(peft, dict(ns.unet.config)))
    assert {ly.component for ly in b.layers} == {"unet", "text_encoder", "text_encoder_2"}
    model = DiffusionModel.from_unet(ns.unet, "sdxl", "epsilon")
    clip = TextEncoder.from_components([ns.tokenizer, ns.tokenizer_2], [ns.text_encoder, ns.text_encoder_2], "sdxl")
    pa, pb = apply_lora(model, clip, a), apply_lora(model, clip, b)
    for x, y in ((pa[0], pb[0]), (pa[1], pb[1])):
        [(da, _)], [(db, _)] = x.patches, y.patches
        assert da.keys() == db.keys() and len(da) > 0


def test_unreadable_and_unmatched_lora_keys_are_reported(sd1, tmp_path, caplog):
    sd = peft_lora(sd1, seed=3, text=False)
    sd["unet.no_such_block.to_q.lora_A.weight"] = torch.zeros(4, 32)  # fits no module of this model
    sd["unet.no_such_block.to_q.lora_B.weight"] = torch.zeros(32, 4)
    sd["unet.down_blocks.0.hypernet.weight"] = torch.zeros(2)  # not LoRA weights at all
    path = tmp_path / "mixed.safetensors"
    save_file(sd, str(path))
    caplog.set_level(logging.WARNING)
    lora = read_lora(path)
    assert lora.unknown == ["unet.down_blocks.0.hypernet.weight"]
    apply_lora(DiffusionModel.from_unet(sd1.unet, "sd1", "epsilon"), None, lora)
    msgs = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("mixed.safetensors: 1 tensors are not LoRA weights" in m and "hypernet" in m for m in msgs)
    assert any("mixed.safetensors: 1 LoRA layers did not fit and were skipped" in m and "no_such_block" in m
               for m in msgs)


def _old_diffusers_names(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same LoRA in diffusers' pre-PEFT spellings: attention processors
    (``attn1.processor.to_q_lora.down.weight``), ``LoRACompatible`` layers (``proj_in.lora.up.weight``),
    text-encoder attention processors (``self_attn.to_q_lora.down.weight`` for ``q_proj``) and
    patches (``out_proj.lora_linear_layer.down.weight``)."""
    out = {}
    for key, t in sd.items():
        module, kind = key.rsplit(".", 2)[0], "down" if ".lora_A." in key else "up"
        head, _, leaf = module.rpartition(".")
        if module.startswith("text_encoder") and leaf in ("q_proj", "k_proj"):
            out[f"{head}.to_{leaf[0]}_lora.{kind}.weight"] = t
        elif module.startswith("text_encoder"):
            out[f"{module}.lora_linear_layer.{kind}.weight"] = t
        elif leaf in ("to_q", "to_k", "to_v"):
            out[f"{head}.processor.{leaf}_lora.{kind}.weight"] = t
        elif module.endswith("to_out.0"):
            out[f"{module[:-len('.to_out.0')]}.processor.to_out_lora.{kind}.weight"] = t
        else:
            out[f"{module}.lora.{kind}.weight"] = t
    return out


def test_old_diffusers_lora_spellings_equal_peft(sd1):
    peft = peft_lora(sd1, seed=11)
    old = _old_diffusers_names(peft)
    assert any(".processor.to_q_lora.down." in k for k in old) and any(".lora.up." in k for k in old)
    model = DiffusionModel.from_unet(sd1.unet, "sd1", "epsilon")
    clip = TextEncoder.from_components([sd1.tokenizer], [sd1.text_encoder], "sd1")
    a, b = apply_lora(model, clip, parse_lora(peft)), apply_lora(model, clip, parse_lora(old))
    for x, y in zip(a, b, strict=True):
        [(da, _)], [(db, _)] = x.patches, y.patches
        assert da.keys() == db.keys() and len(da) > 0
    assert torch.equal(a[1].encode(PROMPT, "cpu")[0].embeds, b[1].encode(PROMPT, "cpu")[0].embeds)
