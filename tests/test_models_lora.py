"""LoRA: diffusers/PEFT and kohya files as patches; oracle against diffusers' load_lora_weights."""

from __future__ import annotations

import copy

import pytest
import torch

from nodegen.models.lora import apply_lora, parse_lora, read_lora
from nodegen.models.objects import DiffusionModel, TextEncoder
from tests.support.fixtures import fixture
from tests.support.lora_fixtures import peft_lora, peft_to_kohya

torch.set_num_threads(1)
PROMPT = "a photo of a cat"


@pytest.fixture(scope="session")
def sd1(tmp_path_factory):
    return fixture("sd1", tmp_path_factory.mktemp("sd1"))


@pytest.fixture(scope="session")
def sdxl(tmp_path_factory):
    return fixture("sdxl", tmp_path_factory.mktemp("sdxl"))


def _objects(ns):
    model = DiffusionModel.from_unet(ns.unet, ns.family, ns.prediction)
    if ns.family == "sdxl":
        clip = TextEncoder.from_components([ns.tokenizer, ns.tokenizer_2], [ns.text_encoder, ns.text_encoder_2], "sdxl")
    else:
        clip = TextEncoder.from_components([ns.tokenizer], [ns.text_encoder], ns.family)
    return model, clip


def _inputs(ns):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 4, 8, 8, generator=g)
    emb = torch.randn(1, 77, ns.unet.config.cross_attention_dim, generator=g)
    kw = {}
    if ns.family == "sdxl":
        kw["added_cond_kwargs"] = dict(text_embeds=torch.randn(1, 128, generator=g),
                                       time_ids=torch.tensor([[64.0, 64, 0, 0, 64, 64]]))
    return x, torch.tensor([300]), emb, kw


def _run(model, ns):
    x, t, emb, kw = _inputs(ns)
    with torch.no_grad(), model.use("cpu", torch.float32) as unet:
        return unet(x, t, emb, **kw).sample


def _oracle(ns, lora_sd):
    """diffusers with peft: a pipeline over copies of the fixture components with the LoRA loaded."""
    pytest.importorskip("peft")
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    if ns.family == "sdxl":
        pipe = StableDiffusionXLPipeline(vae=ns.vae, text_encoder=copy.deepcopy(ns.text_encoder),
                                         text_encoder_2=copy.deepcopy(ns.text_encoder_2), tokenizer=ns.tokenizer,
                                         tokenizer_2=ns.tokenizer_2, unet=copy.deepcopy(ns.unet),
                                         scheduler=ns.scheduler, force_zeros_for_empty_prompt=False)
    else:
        pipe = StableDiffusionPipeline(vae=ns.vae, text_encoder=copy.deepcopy(ns.text_encoder), tokenizer=ns.tokenizer,
                                       unet=copy.deepcopy(ns.unet), scheduler=ns.scheduler, safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
    pipe.load_lora_weights({k: v.clone() for k, v in lora_sd.items()})
    x, t, emb, kw = _inputs(ns)
    with torch.no_grad():
        unet_out = pipe.unet(x, t, emb, **kw).sample
        if ns.family == "sdxl":
            embeds, _, pooled, _ = pipe.encode_prompt(PROMPT, device="cpu", num_images_per_prompt=1,
                                                      do_classifier_free_guidance=False)
        else:
            embeds, _ = pipe.encode_prompt(PROMPT, "cpu", 1, False)
            pooled = None
    return unet_out, embeds, pooled


@pytest.mark.parametrize("form", ["peft", "kohya"])
def test_sd1_lora_equals_diffusers(sd1, form):
    sd = peft_lora(sd1, seed=1)
    if form == "kohya":
        sd = peft_to_kohya(sd, alpha=2.0)  # alpha/rank = 0.5
    ref_unet, ref_embeds, _ = _oracle(sd1, sd)
    model, clip = _objects(sd1)
    m2, c2 = apply_lora(model, clip, parse_lora(sd), 1.0, 1.0)
    out = _run(m2, sd1)
    base = _run(model, sd1)
    assert (ref_unet - base).abs().max() > 0.05  # the LoRA matters
    torch.testing.assert_close(out, ref_unet, rtol=1e-5, atol=1e-5)
    [item] = c2.encode(PROMPT, device="cpu")
    torch.testing.assert_close(item.embeds, ref_embeds, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("form", ["peft", "kohya_ldm_names"])
def test_sdxl_lora_equals_diffusers(sdxl, form):
    sd = peft_lora(sdxl, seed=2)
    if form == "kohya_ldm_names":
        sd = peft_to_kohya(sd, alpha=4.0, unet_config=dict(sdxl.unet.config))
        assert any(k.startswith("lora_unet_input_blocks_") for k in sd)
    ref_unet, ref_embeds, ref_pooled = _oracle(sdxl, sd)
    model, clip = _objects(sdxl)
    m2, c2 = apply_lora(model, clip, parse_lora(sd), 1.0, 1.0)
    torch.testing.assert_close(_run(m2, sdxl), ref_unet, rtol=1e-5, atol=1e-5)
    [item] = c2.encode(PROMPT, device="cpu")
    torch.testing.assert_close(item.embeds, ref_embeds, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(item.pooled, ref_pooled, rtol=1e-5, atol=1e-5)


def test_kohya_and_peft_give_the_same_patches(sd1, sdxl):
    """Without diffusers: the same LoRA in both layouts (kohya with alpha = rank) patches alike."""
    for ns, cfg in ((sd1, None), (sdxl, dict(sdxl.unet.config))):
        sd = peft_lora(ns, seed=4)
        model, clip = _objects(ns)
        a = apply_lora(model, clip, parse_lora(sd))
        b = apply_lora(model, clip, parse_lora(peft_to_kohya(sd, alpha=4.0, unet_config=cfg)))
        assert torch.equal(_run(a[0], ns), _run(b[0], ns))
        assert torch.equal(a[1].encode(PROMPT, "cpu")[0].embeds, b[1].encode(PROMPT, "cpu")[0].embeds)
        n_layers = len(sd) // 2
        assert sum(len(p) for p, _ in a[0].patches) + sum(len(p) for p, _ in a[1].patches) == n_layers


def test_strength_zero_changes_nothing_and_base_is_untouched(sd1):
    model, clip = _objects(sd1)
    before = {k: v.clone() for k, v in sd1.unet.state_dict().items()}
    base_out = _run(model, sd1)
    [base_e] = clip.encode(PROMPT, "cpu")
    lora = parse_lora(peft_lora(sd1, seed=5))
    m0, c0 = apply_lora(model, clip, lora, 0.0, 0.0)
    assert torch.equal(_run(m0, sd1), base_out)
    assert torch.equal(c0.encode(PROMPT, "cpu")[0].embeds, base_e.embeds)
    m1, c1 = apply_lora(model, clip, lora, 1.0, 1.0)
    assert not torch.equal(_run(m1, sd1), base_out)
    # using the patched clone leaves the shared weights and the original object alone
    assert all(torch.equal(before[k], v) for k, v in sd1.unet.state_dict().items())
    assert torch.equal(_run(model, sd1), base_out) and model.patches == [] and clip.patches == []


def test_strength_scales_and_chains(sd1):
    model, clip = _objects(sd1)
    la = parse_lora(peft_lora(sd1, seed=6, text=False))
    lb = parse_lora(peft_lora(sd1, seed=7, text=False))
    name = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"
    w0 = dict(sd1.unet.named_parameters())[name].detach().clone()
    da = next(ly for ly in la.layers if ly.module + ".weight" == name).delta(w0)
    db = next(ly for ly in lb.layers if ly.module + ".weight" == name).delta(w0)
    chained, _ = apply_lora(model, None, la, 0.5, 1.0)
    chained, _ = apply_lora(chained, None, lb, -1.5, 1.0)
    with chained.use("cpu") as unet:
        w = dict(unet.named_parameters())[name].detach().clone()
    torch.testing.assert_close(w, w0 + 0.5 * da - 1.5 * db, rtol=1e-6, atol=1e-6)
    assert torch.equal(dict(sd1.unet.named_parameters())[name], w0)


def test_model_only_lora_leaves_clip_alone(sd1):
    model, clip = _objects(sd1)
    m, c = apply_lora(model, None, parse_lora(peft_lora(sd1, seed=8)), 1.0, 1.0)
    assert c is None and len(m.patches) == 1


def test_read_lora_file_and_errors(sd1, tmp_path):
    from safetensors.torch import save_file

    from nodegen.models.detect import ModelKindError

    sd = peft_to_kohya(peft_lora(sd1, seed=9), alpha=1.0)
    path = tmp_path / "k.safetensors"
    save_file(sd, str(path))
    lora = read_lora(path)
    assert lora.layout == "kohya" and all(ly.scale == 0.25 for ly in lora.layers)
    with pytest.raises(ModelKindError, match="this is a checkpoint .*not a LoRA"):
        read_lora(sd1.single_file)
    other = parse_lora({"unet.nothing.here.lora_A.weight": torch.zeros(2, 3),
                        "unet.nothing.here.lora_B.weight": torch.zeros(3, 2)}, "other.safetensors")
    model, clip = _objects(sd1)
    with pytest.raises(ValueError, match="other.safetensors: none of its 1 LoRA layers fit"):
        apply_lora(model, clip, other)
