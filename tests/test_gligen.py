"""GLIGEN (GLIGENLoader, GLIGENTextBoxApply) against diffusers' StableDiffusionGLIGENPipeline.

The GLIGEN file is made here in ComfyUI's key layout from a diffusers gated UNet that has the SD1
fixture's weights plus random fuser and position-net weights; nodegen samples with the fixture's
plain UNet and the file, diffusers with the gated UNet. ComfyUI applies GLIGEN at every step
(diffusers' ``gligen_scheduled_sampling_beta=1``) and grounds the negative prediction with the
positive's boxes (``apply_empty_x_to_equal_area``), where diffusers masks the negative's boxes: for
the CFG comparison the diffusers UNet is handed unmasked boxes (ComfyUI's rule), and a check shows
the rule matters.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from nodegen.models.objects import DiffusionModel, TextEncoder, VAEModel
from tests.support.fixtures import fixture
from tests.support.nodes import run
from tests.support.sampling import sample

torch.set_num_threads(1)
TOL = 1e-3
STEPS = 5
PHRASES = [("a cat", 32, 40, 16, 8), ("a red ball", 16, 16, 40, 40)]  # text, width, height, x, y (pixels)


def comfy_key(diffusers_key: str, layers_per_block: int) -> str:
    """The LDM (ComfyUI) name of a diffusers gated-UNet fuser or position-net key."""
    parts = diffusers_key.split(".")
    if parts[0] == "position_net":
        return diffusers_key
    if parts[0] == "mid_block":
        return "middle_block.1." + ".".join(parts[3:])
    block, attention = int(parts[1]), int(parts[3])
    if parts[0] == "down_blocks":
        return f"input_blocks.{1 + block * (layers_per_block + 1) + attention}.1." + ".".join(parts[4:])
    return f"output_blocks.{block * (layers_per_block + 1) + attention}.1." + ".".join(parts[4:])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    sd1 = fixture("sd1", tmp_path_factory.mktemp("sd1"))
    config = {k: v for k, v in sd1.unet.config.items() if not k.startswith("_")}
    gated = UNet2DConditionModel(**{**config, "attention_type": "gated"})
    missing, unexpected = gated.load_state_dict(sd1.unet.state_dict(), strict=False)
    assert not unexpected and all("fuser" in k or "position_net" in k for k in missing)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in gated.named_parameters():
            if name in missing:
                if name.endswith(("alpha_attn", "alpha_dense")):
                    p.fill_(0.8)  # tanh(0) = 0: a fresh fuser changes nothing
                elif "norm" in name and name.endswith("weight"):
                    p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
                else:
                    p.copy_(0.15 * torch.randn(p.shape, generator=g))
    gated.eval()
    root = tmp_path_factory.mktemp("models")
    (root / "gligen").mkdir()
    layers = int(sd1.unet.config.layers_per_block)
    sd = {comfy_key(k, layers): v.to(torch.float16 if "fuser" in k else torch.float32).contiguous()
          for k, v in gated.state_dict().items() if k in missing}
    save_file(dict(reversed(list(sd.items()))), str(root / "gligen" / "gligen_sd14_textbox_pruned.safetensors"))
    for name, p in gated.named_parameters():  # the file's fp16 fusers, as nodegen reads them
        if "fuser" in name:
            p.data = p.data.half().float()
    return sd1, gated, root


def _ctx(root):
    from nodegen.kernel.context import CancelToken, RunContext
    from nodegen.models.paths import ModelPaths

    return RunContext(node_id="1", node_title="t", device=torch.device("cpu"), models=None, paths=ModelPaths([root]),
                      output_dir=".", input_dir=".", temp_dir=".", workflow=None, cancel=CancelToken())


def _grounded(setup, phrases=PHRASES):
    sd1, _, root = setup
    ctx = _ctx(root)
    te = TextEncoder.from_components([sd1.tokenizer], [sd1.text_encoder], "sd1")
    gligen = run("GLIGENLoader", ctx, gligen_name="gligen_sd14_textbox_pruned.safetensors")["gligen"]
    pos = te.encode("a photo of a cat and a ball")
    for text, w, h, x, y in phrases:
        pos = run("GLIGENTextBoxApply", ctx, conditioning_to=pos, clip=te, gligen_textbox_model=gligen, text=text,
                  width=w, height=h, x=x, y=y)["conditioning"]
    return te, pos, te.encode("blurry, ugly")


def _ours(setup, cfg, pos, neg):
    sd1 = setup[0]
    model = DiffusionModel.from_unet(sd1.unet, "sd1", "epsilon")
    out = sample(model, pos, neg, {"samples": torch.zeros(1, 4, 8, 8)}, seed=42, steps=STEPS, cfg=cfg,
                 sampler="dpmpp_2m", scheduler="karras", device="cpu")["samples"]
    return out, VAEModel.from_vae(sd1.vae).decode(out, device="cpu").permute(0, 3, 1, 2)


def _diffusers(setup, cfg, pos, neg, negative="grounded"):
    """diffusers' GLIGEN pipeline; its negative: "grounded" with the positive's boxes (ComfyUI's
    rule), "masked" (diffusers' own: null box tokens) or "plain" (no fuser: a negative ComfyUI
    leaves without boxes, one with an area)."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionGLIGENPipeline

    sd1, gated, _ = setup
    pipe = StableDiffusionGLIGENPipeline(vae=sd1.vae, text_encoder=sd1.text_encoder, tokenizer=sd1.tokenizer,
                                         unet=gated, scheduler=DPMSolverMultistepScheduler.from_config(
                                             sd1.scheduler.config, use_karras_sigmas=True),
                                         safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    forward = gated.forward

    def grounded(*args, cross_attention_kwargs=None, **kw):
        masks = cross_attention_kwargs["gligen"]["masks"]
        grounding = dict(cross_attention_kwargs["gligen"], masks=masks[-1:].expand_as(masks))
        return forward(*args, cross_attention_kwargs={**cross_attention_kwargs, "gligen": grounding}, **kw)

    def plain(sample, t, encoder_hidden_states=None, cross_attention_kwargs=None, **kw):
        from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

        n = sample.shape[0] // 2
        grounding = {k: v[n:] for k, v in cross_attention_kwargs["gligen"].items()}
        uncond = sd1.unet(sample[:n], t, encoder_hidden_states=encoder_hidden_states[:n], **kw).sample
        cond = forward(sample[n:], t, encoder_hidden_states=encoder_hidden_states[n:],
                       cross_attention_kwargs={"gligen": grounding}, **kw).sample
        return UNet2DConditionOutput(sample=torch.cat([uncond, cond]))

    boxes = [[x / 64, y / 64, (x + w) / 64, (y + h) / 64] for _, w, h, x, y in PHRASES]
    args = dict(prompt_embeds=pos[0].embeds, negative_prompt_embeds=neg[0].embeds, num_inference_steps=STEPS,
                guidance_scale=cfg, height=64, width=64, gligen_phrases=[p[0] for p in PHRASES],
                gligen_boxes=boxes, gligen_scheduled_sampling_beta=1.0)
    if cfg > 1 and negative != "masked":
        gated.forward = grounded if negative == "grounded" else plain
    try:
        return [pipe(**args, generator=torch.Generator().manual_seed(42), output_type=t).images
                for t in ("latent", "pt")]
    finally:
        gated.__dict__.pop("forward", None)


def test_box_coordinates_and_the_file_layout(setup):
    from nodegen.models.gligen import (
        gligen_from_state_dict,
        load_gligen,
        normalised_boxes,
        pixel_box,
        spatial_transformers,
    )

    sd1, gated, root = setup
    g = load_gligen(root / "gligen" / "gligen_sd14_textbox_pruned.safetensors")
    assert len(g.fusers) == 4 and g.text_width == 64  # down 0, mid, up 1 (x2): the file's order was reversed
    blocks = [t.transformer_blocks[0] for t in spatial_transformers(gated)]
    for ours, theirs in zip(g.fusers, [b.fuser for b in blocks], strict=True):
        for (k, a), (k2, b) in zip(ours.state_dict().items(), theirs.state_dict().items(), strict=True):
            assert k == k2 and torch.equal(a, b)
    box = pixel_box(torch.zeros(64), 32, 40, 16, 8)
    assert box[1:5] == (5, 4, 1, 2)  # ComfyUI's (h // 8, w // 8, y // 8, x // 8)
    torch.testing.assert_close(normalised_boxes([box], 8, 8), torch.tensor([[0.25, 0.125, 0.75, 0.75]]))
    prefixed = {"model.diffusion_model." + k: v for k, v in load_state(root).items()}
    assert len(gligen_from_state_dict(prefixed).fusers) == 4
    broken = {k: v for k, v in load_state(root).items() if k != "middle_block.1.transformer_blocks.0.fuser.alpha_attn"}
    with pytest.raises(ValueError, match="fuser middle_block.1.transformer_blocks.0 is not a GLIGEN.*alpha_attn"):
        gligen_from_state_dict(broken, "x.pt")
    with pytest.raises(ValueError, match="not a GLIGEN text-box model"):
        gligen_from_state_dict({k: v for k, v in load_state(root).items() if "position_net" not in k}, "x.pt")


def test_fusers_take_the_unet_blocks_heads(setup):
    from diffusers.models.attention import GatedSelfAttentionDense

    from nodegen.models.gligen import load_gligen

    root = setup[2]
    g = load_gligen(root / "gligen" / "gligen_sd14_textbox_pruned.safetensors")
    fuser = g.fusers_with_heads([2, 8, 8, 8])[0]
    want = GatedSelfAttentionDense(32, 64, 2, 16)
    want.load_state_dict(fuser.state_dict())
    gen = torch.Generator().manual_seed(1)
    x, objs = torch.randn(2, 16, 32, generator=gen), torch.randn(2, 30, 64, generator=gen)
    with torch.no_grad():
        assert fuser.attn.heads == 2
        torch.testing.assert_close(fuser(x, objs), want(x, objs))
        eight = g.fusers_with_heads([8, 8, 8, 8])[0](x, objs)
    assert (eight - want(x, objs)).abs().max() > 1e-4  # the heads matter


def load_state(root):
    from safetensors.torch import load_file

    return load_file(str(root / "gligen" / "gligen_sd14_textbox_pruned.safetensors"))


def test_phrase_embedding_is_the_pooled_text_output(setup):
    te, pos, _ = _grounded(setup)
    sd1 = setup[0]
    ids = sd1.tokenizer(["a cat", "a red ball"], padding=True, return_tensors="pt")
    want = sd1.text_encoder(**ids).pooler_output  # what the GLIGEN pipeline uses
    boxes = pos[0].extras["gligen"][2]
    assert [b.text for b in boxes] == ["a cat", "a red ball"]
    torch.testing.assert_close(torch.stack([b.embedding for b in boxes]), want, rtol=1e-5, atol=1e-5)
    # the checkpoint's own text encoder gives it too, from the last layer whatever the CLIP skip (as ComfyUI)
    from nodegen.models.gligen import phrase_embedding
    from nodegen.models.manager import ModelManager

    clip = ModelManager(device="cpu").load_checkpoint(sd1.single_file)[1].set_layer(-2)
    torch.testing.assert_close(phrase_embedding(clip, "a red ball"), want[1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cfg", [1.0, 6.0])
def test_sampling_matches_diffusers_gligen_pipeline(setup, cfg):
    te, pos, neg = _grounded(setup)
    before, _ = _ours(setup, cfg, te.encode("a photo of a cat and a ball"), neg)
    latent, ours = _ours(setup, cfg, pos, neg)
    ref_latent, ref = _diffusers(setup, cfg, pos, neg)
    assert (latent - ref_latent).abs().max() <= 1e-4 * ref_latent.abs().max(), "latents differ"
    assert (ours - ref).abs().max() <= TOL
    plain_latent, _ = _ours(setup, cfg, te.encode("a photo of a cat and a ball"), neg)
    assert (plain_latent - latent).abs().max() > 1e-2  # the boxes matter
    assert torch.equal(plain_latent, before)  # and are gone after the run
    if cfg > 1:  # ComfyUI grounds the negative too; diffusers' own rule (masked) gives another image
        masked, _ = _diffusers(setup, cfg, pos, neg, negative="masked")
        assert (masked - latent).abs().max() > 1e-3
    assert not any(hasattr(m, "fuser") for m in setup[0].unet.modules())
    assert not hasattr(setup[0].unet, "position_net")


def test_a_negative_with_an_area_stays_ungrounded(setup):
    """ComfyUI grounds only negatives without an area: here the negative (a full-size area, so the
    same prediction) runs without the fusers in the same UNet batch as the grounded positive."""
    from nodegen.diffusion.conditioning import set_area

    te, pos, neg = _grounded(setup)
    framed = set_area(neg, 64, 64, 0, 0, 1.0)
    latent, ours = _ours(setup, 6.0, pos, framed)
    ref_latent, ref = _diffusers(setup, 6.0, pos, neg, negative="plain")
    assert (latent - ref_latent).abs().max() <= 1e-4 * ref_latent.abs().max()
    assert (ours - ref).abs().max() <= TOL
    grounded, _ = _ours(setup, 6.0, pos, neg)
    assert (grounded - latent).abs().max() > 1e-3


def test_errors_name_node_and_input(setup, tmp_path):
    from safetensors.torch import save_file

    sd1, _, root = setup
    ctx = _ctx(root)
    te, pos, neg = _grounded(setup, PHRASES[:1])
    save_file({"a.weight": torch.zeros(2)}, str(root / "gligen" / "not_gligen.safetensors"))
    with pytest.raises(ValueError, match="GLIGENLoader: gligen_name 'not_gligen.safetensors'.*not a GLIGEN"):
        run("GLIGENLoader", ctx, gligen_name="not_gligen.safetensors")
    gligen = pos[0].extras["gligen"][1]
    sdxl = fixture("sdxl", tmp_path / "sdxl")
    xl_clip = TextEncoder.from_components([sdxl.tokenizer, sdxl.tokenizer_2], [sdxl.text_encoder, sdxl.text_encoder_2],
                                          "sdxl")
    with pytest.raises(ValueError, match="GLIGENTextBoxApply: clip is a sdxl text encoder"):
        run("GLIGENTextBoxApply", ctx, conditioning_to=pos, clip=xl_clip, gligen_textbox_model=gligen, text="a cat")
    xl_model = DiffusionModel.from_unet(sdxl.unet, "sdxl", "epsilon")
    with pytest.raises(ValueError, match="GLIGENTextBoxApply: gligen_textbox_model gligen_sd14.*MODEL"):
        sample(xl_model, pos, neg, {"samples": torch.zeros(1, 4, 8, 8)}, seed=1, steps=1, device="cpu")
    assert not any(hasattr(m, "fuser") for m in sdxl.unet.modules())
    far = run("GLIGENTextBoxApply", ctx, conditioning_to=te.encode("x"), clip=te, gligen_textbox_model=gligen,
              text="a dog", x=64, y=0)["conditioning"]
    with pytest.raises(ValueError, match=r"GLIGENTextBoxApply: the box for 'a dog' at x=64, y=0 lies outside"):
        _ours(setup, 1.0, far, neg)
    from nodegen.diffusion.dual_cfg import DualCFG

    dual = DiffusionModel.from_unet(sd1.unet, "sd1", "epsilon").with_denoise_hook(DualCFG(pos, 2.0, 5.0))
    with pytest.raises(ValueError, match="GLIGENTextBoxApply: boxes on a conditioning that is not the sampler's"):
        sample(dual, te.encode("x"), neg, {"samples": torch.zeros(1, 4, 8, 8)}, seed=1, steps=1, device="cpu")
    with pytest.raises(ValueError, match="GLIGENTextBoxApply: input 'x' must be a multiple of 8"):
        run("GLIGENTextBoxApply", ctx, conditioning_to=pos, clip=te, gligen_textbox_model=gligen, text="a", x=3)
    assert not any(hasattr(m, "fuser") for m in sd1.unet.modules())


def test_comfy_workflow_imports_and_runs(setup, tmp_path):
    from nodegen.formats import comfy
    from nodegen.runtime.engine import Engine

    sd1, _, gligen_root = setup
    root = tmp_path / "models"
    (root / "checkpoints").mkdir(parents=True)
    shutil.copy(sd1.single_file, root / "checkpoints" / "tiny-sd1.safetensors")
    shutil.copytree(gligen_root / "gligen", root / "gligen")

    def n(ct, **inputs):
        return {"class_type": ct, "inputs": inputs}

    api = {
        "4": n("CheckpointLoaderSimple", ckpt_name="tiny-sd1.safetensors"),
        "10": n("GLIGENLoader", gligen_name="gligen_sd14_textbox_pruned.safetensors"),
        "6": n("CLIPTextEncode", text="a photo of a cat and a ball", clip=["4", 1]),
        "11": n("GLIGENTextBoxApply", text="a cat", width=32, height=40, x=16, y=8, conditioning_to=["6", 0],
                clip=["4", 1], gligen_textbox_model=["10", 0]),
        "12": n("GLIGENTextBoxApply", text="a red ball", width=16, height=16, x=40, y=40, conditioning_to=["11", 0],
                clip=["4", 1], gligen_textbox_model=["10", 0]),
        "7": n("CLIPTextEncode", text="blurry, ugly", clip=["4", 1]),
        "5": n("EmptyLatentImage", width=64, height=64, batch_size=1),
        "3": n("KSampler", seed=42, steps=3, cfg=6.0, sampler_name="euler", scheduler="normal", denoise=1.0,
               model=["4", 0], positive=["12", 0], negative=["7", 0], latent_image=["5", 0]),
        "8": n("VAEDecode", samples=["3", 0], vae=["4", 2]),
        "9": n("SaveImage", filename_prefix="gligen", images=["8", 0]),
    }
    doc, notes = comfy.import_comfy(api)
    assert notes == []
    assert doc["nodes"]["11"]["inputs"]["gligen_textbox_model"] == {"from": ["10", "gligen"]}
    assert comfy.export_api(doc) == api
    engine = Engine(models=root, input_dir=tmp_path, output_dir=tmp_path / "out", device="cpu")
    result = engine.run(doc)
    assert result.ok, (result.problems, [str(f) for f in result.failures])
    plain = dict(api, **{"3": {**api["3"], "inputs": {**api["3"]["inputs"], "positive": ["6", 0]}}})
    other = engine.run(comfy.import_comfy(plain)[0])
    assert other.ok and [list(im.getdata()) for im in other.images] != [list(im.getdata()) for im in result.images]
