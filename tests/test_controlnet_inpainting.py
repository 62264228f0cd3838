"""Inpainting ControlNets (Alimama's SD3-Controlnet-Inpainting and FLUX.1-dev-Controlnet-Inpainting-
Alpha/Beta, diffusers layout as published) with ComfyUI's ControlNetInpaintingAliMamaApply: the SD3
one == diffusers' StableDiffusion3ControlNetInpaintingPipeline, the Flux one == FluxControlNetPipeline
given the control latent by the rule of Alimama's own Flux inpainting pipeline (diffusers has none),
on tiny random-weight components (max abs pixel difference <= 1e-3, fp32 CPU); ComfyUI's workflow
imports and runs; what cannot work is refused naming the node and input."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from nodegen.diffusion.sample import Steps, sample
from nodegen.models.control_files import load_control
from nodegen.models.flow_text import FlowTextEncoder
from nodegen.models.flux_controlnet import FluxControlNet
from nodegen.models.objects import DiffusionModel, VAEModel
from nodegen.models.sd3_controlnet import SD3ControlNet
from tests.support.fixtures import _randomize_
from tests.support.flow_fixtures import T5_WIDTH, _save, fixture
from tests.support.nodes import run

torch.set_num_threads(1)
TOL = 1e-3
CTX = SimpleNamespace(device="cpu", models=None)
NODE = "ControlNetInpaintingAliMamaApply"


@pytest.fixture(scope="module")
def sd3(tmp_path_factory):
    return fixture("sd3", tmp_path_factory.mktemp("sd3"))


@pytest.fixture(scope="module")
def flux(tmp_path_factory):
    return fixture("flux", tmp_path_factory.mktemp("flux"))


def _state(net) -> dict:
    return {k: v.detach().contiguous() for k, v in net.state_dict().items()}


def _sd3_inpaint_net(seed: int = 170):
    """Alimama's SD3 inpainting ControlNet in small: InstantX's architecture with one extra
    conditioning channel (diffusers' ``extra_conditioning_channels=1``)."""
    from diffusers import SD3ControlNetModel

    torch.manual_seed(seed)
    net = SD3ControlNetModel(sample_size=8, patch_size=2, in_channels=16, out_channels=16, attention_head_dim=64,
                             num_attention_heads=2, pooled_projection_dim=64 + 128, num_layers=2,
                             joint_attention_dim=T5_WIDTH, caption_projection_dim=128, pos_embed_max_size=16,
                             extra_conditioning_channels=1)
    _randomize_(net, seed + 1)  # the zero-initialised control blocks too: residuals that matter
    with torch.no_grad():
        for block in net.controlnet_blocks:
            block.weight.mul_(10.0)
    return net.eval()


def _flux_inpaint_net(seed: int = 190):
    """Alimama's Flux inpainting ControlNet in small: a FluxControlNetModel whose controlnet_x_embedder
    takes 4 more channels (the mask packed 2x2), as Alimama's model class builds it."""
    from diffusers import FluxControlNetModel

    torch.manual_seed(seed)
    net = FluxControlNetModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=128,
                              num_attention_heads=1, joint_attention_dim=T5_WIDTH, pooled_projection_dim=64,
                              guidance_embeds=True, axes_dims_rope=(16, 56, 56))
    net.controlnet_x_embedder = torch.nn.Linear(68, 128)
    _randomize_(net, seed + 1)
    return net.eval()


def _image_and_mask(seed: int):
    """A 64x64 image and a binary mask whose edges lie on the 8-pixel latent grid (so every
    resizing rule - ComfyUI's nearest-exact, diffusers' nearest - gives the same latent mask)."""
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(seed))
    mask = torch.zeros(1, 64, 64)
    mask[:, 16:48, 24:56] = 1.0
    return image, mask


def _sd3_parts(fx):
    te = FlowTextEncoder("sd3", {"clip_l": (fx.tokenizer, fx.text_encoder), "clip_g": (fx.tokenizer_2, fx.text_encoder_2),
                                 "t5": (fx.tokenizer_3, fx.text_encoder_3)})
    return DiffusionModel(fx.transformer, "sd3", "flow"), te, VAEModel.from_vae(fx.vae)


def _flux_parts(fx):
    from nodegen.diffusion.flow_sampling import flux_mu

    te = FlowTextEncoder("flux", {"clip_l": (fx.tokenizer, fx.text_encoder), "t5": (fx.tokenizer_2, fx.text_encoder_2)})
    model = DiffusionModel(fx.transformer, "flux", "flow")
    model.options["model_sampling"] = {"kind": "flux", "shift": flux_mu(64, 64), "multiplier": 1.0}
    return model, te, VAEModel.from_vae(fx.vae)


def test_published_layouts_load_as_inpainting_controlnets(tmp_path):
    """Alimama publishes diffusers folders (config.json + diffusion_pytorch_model.safetensors); users
    put the weights file alone in ComfyUI's controlnet folder. Both load, tensors unchanged."""
    sd3_net, flux_net = _sd3_inpaint_net(), _flux_inpaint_net()
    sd3_net.save_pretrained(str(tmp_path / "SD3-Controlnet-Inpainting"))
    flux_dir = tmp_path / "FLUX.1-dev-Controlnet-Inpainting-Beta"
    flux_net.save_pretrained(str(flux_dir))
    cfg = json.loads((flux_dir / "config.json").read_text())
    cfg["extra_condition_channels"] = 4  # Alimama's config (their FluxControlNetModel's option)
    (flux_dir / "config.json").write_text(json.dumps(cfg))
    sd3_file = _save(_state(sd3_net), tmp_path / "SD3-Controlnet-Inpainting.safetensors")
    flux_file = _save(_state(flux_net), tmp_path / "FLUX.1-dev-Controlnet-Inpainting-Beta.safetensors")
    for path, net, kind in ((sd3_file, sd3_net, SD3ControlNet), (tmp_path / "SD3-Controlnet-Inpainting", sd3_net, SD3ControlNet),
                            (flux_file, flux_net, FluxControlNet), (flux_dir, flux_net, FluxControlNet)):
        loaded = load_control(path)
        assert isinstance(loaded, kind) and loaded.is_inpainting, path
        assert "inpainting" in repr(loaded)
        assert set(loaded.net.state_dict()) == set(net.state_dict())
        for k, v in net.state_dict().items():
            assert torch.equal(loaded.net.state_dict()[k], v), (path, k)


def test_sd3_inpainting_equals_the_sd3_controlnet_inpainting_pipeline(sd3, tmp_path, monkeypatch):
    """The pipeline encodes the masked image with ``latent_dist.sample()``: made to take the mode, as ours
    (and ComfyUI) do. It shifts the control latent by the VAE's shift (Alimama's pipeline)."""
    from diffusers import StableDiffusion3ControlNetInpaintingPipeline
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    monkeypatch.setattr(DiagonalGaussianDistribution, "sample", lambda self, generator=None: self.mode())
    net = _sd3_inpaint_net()
    cn = load_control(_save(_state(net), tmp_path / "SD3-Controlnet-Inpainting.safetensors"))
    model, te, vae = _sd3_parts(sd3)
    image, mask = _image_and_mask(41)
    pos, neg = te.encode("a cat on a sofa"), te.encode("blurry")
    out = run(NODE, CTX, positive=pos, negative=neg, control_net=cn, vae=vae, image=image, mask=mask, strength=0.8,
              start_percent=0.0, end_percent=1.0)
    empty = {"samples": torch.zeros(1, 16, 8, 8)}
    ours = vae.decode(sample(model, out["positive"], out["negative"], empty, 4, Steps(3, "normal"), 5.0, "euler",
                             device="cpu").latent["samples"], device="cpu")
    parts = {k: getattr(sd3, k) for k in ("transformer", "scheduler", "vae", "text_encoder", "tokenizer",
                                          "text_encoder_2", "tokenizer_2", "text_encoder_3", "tokenizer_3")}
    pipe = StableDiffusion3ControlNetInpaintingPipeline(**parts, controlnet=net)
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(prompt="a cat on a sofa", negative_prompt="blurry", control_image=image.permute(0, 3, 1, 2) * 2 - 1,
                  control_mask=mask[:, None], controlnet_conditioning_scale=0.8, height=64, width=64,
                  num_inference_steps=3, guidance_scale=5.0, generator=torch.Generator().manual_seed(4),
                  output_type="pt").images
    assert float((ours - theirs.permute(0, 2, 3, 1)).abs().max()) <= TOL
    # the mask matters: another mask gives another image
    other = run(NODE, CTX, positive=pos, negative=neg, control_net=cn, vae=vae, image=image, mask=1.0 - mask,
                strength=0.8)
    moved = vae.decode(sample(model, other["positive"], other["negative"], empty, 4, Steps(3, "normal"), 5.0, "euler",
                              device="cpu").latent["samples"], device="cpu")
    assert float((moved - ours).abs().max()) > 1e-2


def test_flux_inpainting_equals_alimamas_rule_on_the_flux_controlnet_pipeline(flux, tmp_path, monkeypatch):
    """diffusers has no pipeline for Alimama's Flux model; their pipeline's control input is transcribed
    here: the masked image (pixels where mask > 0.5 set to -1) VAE-encoded, shifted and scaled, then
    ``1 - mask`` resized to the latent (nearest) concatenated and the 17 channels packed together.
    FluxControlNetPipeline gets it through its VAE-encode and pack steps; the rest is its own."""
    import diffusers.pipelines.flux.pipeline_flux_controlnet as fcp
    from diffusers import FluxControlNetPipeline

    net = _flux_inpaint_net()
    cn = load_control(_save(_state(net), tmp_path / "FLUX.1-dev-Controlnet-Inpainting-Beta.safetensors"))
    model, te, vae = _flux_parts(flux)
    image, mask = _image_and_mask(42)
    pos = [c.copy(extras={"guidance": 3.5}) for c in te.encode("a dog in a park")]
    out = run(NODE, CTX, positive=pos, negative=pos, control_net=cn, vae=vae, image=image, mask=mask, strength=0.7)
    empty = {"samples": torch.zeros(1, 16, 8, 8)}
    ours = vae.decode(sample(model, out["positive"], None, empty, 4, Steps(3, "simple"), 1.0, "euler",
                             device="cpu").latent["samples"], device="cpu")

    pixels, m = image.permute(0, 3, 1, 2) * 2 - 1, mask[:, None]
    masked = pixels.clone()
    masked[(m > 0.5).repeat(1, 3, 1, 1)] = -1
    keep = 1 - torch.nn.functional.interpolate(m, size=(8, 8))
    shift, scale = flux.vae.config.shift_factor, flux.vae.config.scaling_factor
    # the pipeline computes (latents - shift) * scale: the keep channel goes in as keep / scale + shift
    monkeypatch.setattr(fcp, "retrieve_latents", lambda enc, generator=None, sample_mode="sample":
                        torch.cat([enc.latent_dist.mode(), keep / scale + shift], dim=1))
    pack = FluxControlNetPipeline._pack_latents
    monkeypatch.setattr(FluxControlNetPipeline, "_pack_latents",
                        staticmethod(lambda x, b, c, h, w: pack(x, b, x.shape[1], h, w)))  # 17 channels
    pipe = FluxControlNetPipeline(transformer=flux.transformer, scheduler=flux.scheduler, vae=flux.vae,
                                  text_encoder=flux.text_encoder, tokenizer=flux.tokenizer,
                                  text_encoder_2=flux.text_encoder_2, tokenizer_2=flux.tokenizer_2, controlnet=net)
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(prompt="a dog in a park", control_image=masked, controlnet_conditioning_scale=0.7, height=64,
                  width=64, num_inference_steps=3, guidance_scale=3.5, generator=torch.Generator().manual_seed(4),
                  output_type="pt").images
    assert float((ours - theirs.permute(0, 2, 3, 1)).abs().max()) <= TOL
    plain = vae.decode(sample(model, pos, None, empty, 4, Steps(3, "simple"), 1.0, "euler",
                              device="cpu").latent["samples"], device="cpu")
    assert float((plain - ours).abs().max()) > 1e-2


def test_plain_apply_keeps_the_whole_image_as_comfyui_does(sd3):
    """ComfyUI gives an inpainting ControlNet applied without a mask (ControlNetApplyAdvanced) a "keep"
    channel of ones: the same control input as ControlNetInpaintingAliMamaApply with an empty mask."""
    cn = SD3ControlNet(_sd3_inpaint_net(), "SD3-Controlnet-Inpainting.safetensors")
    _, te, vae = _sd3_parts(sd3)
    image, _ = _image_and_mask(43)
    pos = te.encode("x")
    plain = run("ControlNetApplyAdvanced", CTX, positive=pos, negative=pos, control_net=cn, image=image, vae=vae)
    empty = run(NODE, CTX, positive=pos, negative=pos, control_net=cn, vae=vae, image=image, mask=torch.zeros(1, 64, 64))
    a = plain["positive"][0].extras["controls"][-1].cond(1, 8, 8, "cpu", torch.float32)
    b = empty["positive"][0].extras["controls"][-1].cond(1, 8, 8, "cpu", torch.float32)
    assert a.shape == (1, 17, 8, 8) and torch.equal(a[:, 16], torch.ones(1, 8, 8)) and torch.equal(a, b)


def test_what_cannot_work_is_refused(sd3, tmp_path):
    from diffusers import SD3ControlNetModel

    from nodegen.models.sd3_controlnet import SD3ControlNetError

    _, te, vae = _sd3_parts(sd3)
    image, mask = _image_and_mask(44)
    pos = te.encode("x")
    inpaint = SD3ControlNet(_sd3_inpaint_net(), "SD3-Controlnet-Inpainting.safetensors")
    torch.manual_seed(0)
    canny = SD3ControlNet(SD3ControlNetModel(sample_size=8, patch_size=2, in_channels=16, out_channels=16,
                                             attention_head_dim=64, num_attention_heads=2, pooled_projection_dim=192,
                                             num_layers=1, joint_attention_dim=T5_WIDTH, caption_projection_dim=128,
                                             pos_embed_max_size=16), "SD3-Controlnet-Canny.safetensors")
    args = dict(positive=pos, negative=pos, vae=vae, image=image)
    with pytest.raises(ValueError, match=f"{NODE}: control_net: .*SD3-Controlnet-Canny.* is not an inpainting ControlNet"):
        run(NODE, CTX, control_net=canny, mask=mask, **args)
    with pytest.raises(ValueError, match=f"{NODE}: mask: the mask is 64x32 but the image is 64x64"):
        run(NODE, CTX, control_net=inpaint, mask=torch.zeros(1, 32, 64), **args)
    with pytest.raises(ValueError, match=f"{NODE}: mask: 2 masks for 1 images"):
        run(NODE, CTX, control_net=inpaint, mask=torch.zeros(2, 64, 64), **args)
    with pytest.raises(ValueError, match=f"{NODE}: mask: expected a MASK"):
        run(NODE, CTX, control_net=inpaint, mask=torch.zeros(1, 1, 64, 64, 1), **args)
    with pytest.raises(ValueError, match=f"{NODE}: vae: .*connect the model's VAE"):
        run(NODE, CTX, control_net=inpaint, mask=mask, **{**args, "vae": None})
    with pytest.raises(ValueError, match=f"{NODE}: positive: .*not an SD3 text encoding"):
        run(NODE, CTX, control_net=inpaint, mask=mask, **{**args, "positive": [pos[0].copy(pooled=None)]})
    # a half-size mask of the image's shape is fitted to it (ComfyUI's bilinear resize, rounded)
    half = run(NODE, CTX, control_net=inpaint, mask=mask[:, ::2, ::2], **args)["positive"][0].extras["controls"][-1]
    full = run(NODE, CTX, control_net=inpaint, mask=mask, **args)["positive"][0].extras["controls"][-1]
    assert torch.equal(half.image, full.image)
    too_many = _state(_sd3_inpaint_net())
    too_many["pos_embed_input.proj.weight"] = torch.zeros(128, 18, 2, 2)
    with pytest.raises(SD3ControlNetError, match="sd3-odd.safetensors: an SD3 ControlNet with 2 extra conditioning"):
        load_control(_save(too_many, tmp_path / "sd3-odd.safetensors"))


def test_comfyui_inpainting_controlnet_workflow_imports_and_runs(sd3, tmp_path):
    """ComfyUI's Alimama SD3 inpainting example: the image and its mask (the PNG's alpha) from
    LoadImage, ControlNetInpaintingAliMamaApply with the checkpoint's VAE, KSampler."""
    from PIL import Image

    from tests.support.comfy_run import models_folder, run_api

    cn_path = _save(_state(_sd3_inpaint_net()), tmp_path / "cn.safetensors")
    models = models_folder(tmp_path, [("checkpoints", sd3.single_file, "sd3_medium_incl_clips_t5xxlfp16.safetensors"),
                                      ("controlnet", cn_path, "SD3-Controlnet-Inpainting.safetensors")])
    rgba = Image.effect_mandelbrot((64, 64), (-2, -1.5, 1, 1.5), 40).convert("RGBA")
    alpha = Image.new("L", (64, 64), 255)
    alpha.paste(0, (16, 16, 48, 48))  # transparent: the area to repaint (ComfyUI's mask is 1 - alpha)
    rgba.putalpha(alpha)
    rgba.save(tmp_path / "in" / "photo.png")
    api = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd3_medium_incl_clips_t5xxlfp16.safetensors"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red apple", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "4": {"class_type": "LoadImage", "inputs": {"image": "photo.png"}},
        "5": {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "SD3-Controlnet-Inpainting.safetensors"}},
        "6": {"class_type": NODE,
              "inputs": {"strength": 0.9, "start_percent": 0.0, "end_percent": 1.0, "positive": ["2", 0],
                         "negative": ["3", 0], "control_net": ["5", 0], "vae": ["1", 2], "image": ["4", 0],
                         "mask": ["4", 1]}},
        "7": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "8": {"class_type": "KSampler", "inputs": {"seed": 3, "steps": 2, "cfg": 4.0, "sampler_name": "euler",
                                                   "scheduler": "normal", "denoise": 1.0, "model": ["1", 0],
                                                   "positive": ["6", 0], "negative": ["6", 1], "latent_image": ["7", 0]}},
        "9": {"class_type": "VAEDecode", "inputs": {"samples": ["8", 0], "vae": ["1", 2]}},
        "10": {"class_type": "SaveImage", "inputs": {"filename_prefix": "inpaint", "images": ["9", 0]}},
    }
    result = run_api(api, models, tmp_path)
    assert result.images[0].size == (64, 64)
