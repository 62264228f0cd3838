"""Oracle: img2img and inpainting against diffusers' pipelines (same fixture components).

* Img2img: diffusers ``strength=s`` with ``num_inference_steps=N`` runs the last ``k = int(N*s)``
  steps of the N-step schedule from ``latents + noise * sigma_start``; ours: ``steps=k``,
  ``denoise=k/N`` (BasicScheduler's tail of an ``int(steps/denoise)``-step schedule), same scheduler
  mapping as txt2img. The init latents are handed to diffusers as a 4-channel ``image`` (so it does
  not sample the VAE posterior with the generator) and the noise is its first draw, like ours.
* Legacy inpainting (4-channel UNet): our ``noise_mask`` blending == diffusers'
  StableDiffusionInpaintPipeline blending for a binary mask (strength < 1).
* 9-channel inpainting model: the mask and masked-image latents given as conditioning extras
  (``concat_mask``, ``concat_latent_image``) on an empty latent == diffusers' inpaint pipeline at
  strength 1 (which starts from pure noise and does not blend).
* InstructPix2Pix model (8 channels): InstructPixToPixConditioning's image latents (unscaled) in both
  conditionings, 2-way CFG == diffusers' InstructPix2Pix pipeline with ``image_guidance_scale=1``
  (its 3-way guidance ``uncond + g (text - image) + s (image - uncond)`` is then ``image + g (text - image)``).
"""

from __future__ import annotations

import pytest
import torch

from nodegen.models.objects import DiffusionModel, TextEncoder, VAEModel
from tests.support.fixtures import fixture
from tests.support.sampling import sample

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def sd1(tmp_path_factory):
    return fixture("sd1", tmp_path_factory.mktemp("sd1"))


@pytest.fixture(scope="session")
def sd1_inpaint(tmp_path_factory):
    return fixture("sd1_inpaint", tmp_path_factory.mktemp("sd1_inpaint"))


@pytest.fixture(scope="session")
def sd1_ip2p(tmp_path_factory):
    return fixture("sd1_ip2p", tmp_path_factory.mktemp("sd1_ip2p"))


def _setup(fx):
    model = DiffusionModel.from_unet(fx.unet, fx.family, fx.prediction)
    te = TextEncoder.from_components([fx.tokenizer], [fx.text_encoder], fx.family)
    vae = VAEModel.from_vae(fx.vae)
    pos, neg = te.encode("a red house"), te.encode("")
    return model, vae, pos, neg


def _image(seed=5):
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(1, 3, 8, 8, generator=g)
    return torch.nn.functional.interpolate(small, size=(64, 64), mode="bilinear").permute(0, 2, 3, 1)


def _block_mask():
    m = torch.zeros(1, 64, 64)
    m[:, 16:48, 24:56] = 1.0
    return m


def _scheduler(fx, cls_name, **kw):
    import diffusers

    return getattr(diffusers, cls_name).from_config(fx.scheduler.config, **kw)


@pytest.mark.parametrize("sampler,scheduler,cls,kw", [
    ("euler", "normal", "EulerDiscreteScheduler", dict(timestep_spacing="linspace")),
    ("dpmpp_2m", "karras", "DPMSolverMultistepScheduler", dict(use_karras_sigmas=True)),
])
def test_img2img_matches_diffusers(sd1, sampler, scheduler, cls, kw):
    from diffusers import StableDiffusionImg2ImgPipeline

    model, vae, pos, neg = _setup(sd1)
    init = vae.encode(_image(), device="cpu")
    n, strength = 10, 0.5
    k = int(n * strength)
    out = sample(model, pos, neg, {"samples": init}, seed=77, steps=k, cfg=6.0, sampler=sampler,
                 scheduler=scheduler, denoise=k / n, device="cpu")
    ours = vae.decode(out["samples"], device="cpu").permute(0, 3, 1, 2)

    base = sd1.pipeline()
    pipe = StableDiffusionImg2ImgPipeline(**base.components)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = _scheduler(sd1, cls, **kw)
    args = dict(image=init, strength=strength, prompt_embeds=pos[0].embeds, negative_prompt_embeds=neg[0].embeds,
                num_inference_steps=n, guidance_scale=6.0)
    ref = pipe(**args, generator=torch.Generator().manual_seed(77), output_type="pt").images
    ref_lat = pipe(**args, generator=torch.Generator().manual_seed(77), output_type="latent").images
    assert (out["samples"] - ref_lat).abs().max() <= 1e-4 * ref_lat.abs().max()
    assert (ours - ref).abs().max() <= 1e-3
    # it really is partial denoising: the result keeps a lot of the input
    assert (out["samples"] - init).abs().mean() < (torch.randn_like(init) * 3).abs().mean()


def test_legacy_inpaint_blending_matches_diffusers(sd1):
    from diffusers import StableDiffusionInpaintPipeline

    model, vae, pos, neg = _setup(sd1)
    init = vae.encode(_image(), device="cpu")
    mask = _block_mask()
    n, strength = 10, 0.5
    k = int(n * strength)
    out = sample(model, pos, neg, {"samples": init, "noise_mask": mask[:, None]}, seed=9, steps=k, cfg=5.0,
                 sampler="euler", scheduler="normal", denoise=k / n, device="cpu")
    ours = vae.decode(out["samples"], device="cpu").permute(0, 3, 1, 2)

    pipe = StableDiffusionInpaintPipeline(**sd1.pipeline().components)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = _scheduler(sd1, "EulerDiscreteScheduler", timestep_spacing="linspace")
    args = dict(image=init, mask_image=mask[:, None], masked_image_latents=init, strength=strength,
                prompt_embeds=pos[0].embeds, negative_prompt_embeds=neg[0].embeds, num_inference_steps=n,
                guidance_scale=5.0, height=64, width=64)
    ref = pipe(**args, generator=torch.Generator().manual_seed(9), output_type="pt").images
    ref_lat = pipe(**args, generator=torch.Generator().manual_seed(9), output_type="latent").images
    assert (out["samples"] - ref_lat).abs().max() <= 1e-4 * ref_lat.abs().max()
    assert (ours - ref).abs().max() <= 1e-3
    # outside the mask the latent is the input's, inside it changed
    keep = torch.ones(8, 8, dtype=torch.bool)
    keep[2:6, 3:7] = False
    assert torch.allclose(out["samples"][..., keep], init[..., keep], atol=1e-5)
    assert (out["samples"][..., ~keep] - init[..., ~keep]).abs().max() > 0.1


def test_nine_channel_inpaint_model_matches_diffusers(sd1_inpaint):
    from diffusers import StableDiffusionInpaintPipeline

    fx = sd1_inpaint
    model, vae, pos, neg = _setup(fx)
    assert model.is_inpaint
    image, mask = _image(3), _block_mask()
    masked_pixels = image * (mask[..., None] < 0.5) + 0.5 * (mask[..., None] >= 0.5)
    masked_latents = vae.encode(masked_pixels, device="cpu")
    extras = {"concat_mask": mask, "concat_latent_image": masked_latents}
    pos = [c.copy(extras=dict(c.extras, **extras)) for c in pos]
    neg = [c.copy(extras=dict(c.extras, **extras)) for c in neg]
    out = sample(model, pos, neg, {"samples": torch.zeros(1, 4, 8, 8)}, seed=21, steps=6, cfg=7.0,
                 sampler="dpmpp_2m", scheduler="karras", device="cpu")
    ours = vae.decode(out["samples"], device="cpu").permute(0, 3, 1, 2)

    pipe = StableDiffusionInpaintPipeline(**fx.pipeline().components)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = _scheduler(fx, "DPMSolverMultistepScheduler", use_karras_sigmas=True)
    args = dict(image=image.permute(0, 3, 1, 2), mask_image=mask[:, None], masked_image_latents=masked_latents,
                strength=1.0, prompt_embeds=pos[0].embeds, negative_prompt_embeds=neg[0].embeds,
                num_inference_steps=6, guidance_scale=7.0, height=64, width=64)
    ref = pipe(**args, generator=torch.Generator().manual_seed(21), output_type="pt").images
    ref_lat = pipe(**args, generator=torch.Generator().manual_seed(21), output_type="latent").images
    assert (out["samples"] - ref_lat).abs().max() <= 1e-4 * ref_lat.abs().max()
    assert (ours - ref).abs().max() <= 1e-3


def test_inpaint_model_conditioning_node(sd1_inpaint):
    """The node builds exactly the inputs the 9-channel oracle above uses, and a KSampler run with
    its outputs keeps the unmasked area (noise_mask) and changes the masked one."""
    from nodegen.kernel.context import CancelToken, RunContext
    from nodegen.nodes.conditioning import inpaint_model_conditioning
    from nodegen.nodes.sampling import ksampler

    model, vae, pos, neg = _setup(sd1_inpaint)
    image, mask = _image(3), _block_mask()
    ctx = RunContext(node_id="1", node_title="t", device=torch.device("cpu"), models=None, paths=None,
                     output_dir=".", input_dir=".", temp_dir=".", workflow=None, cancel=CancelToken())
    out = inpaint_model_conditioning.normalize_result(
        inpaint_model_conditioning.run(ctx, positive=pos, negative=neg, vae=vae, pixels=image, mask=mask))
    masked_pixels = image * (mask[..., None] < 0.5) + 0.5 * (mask[..., None] >= 0.5)
    ex = out["positive"][0].extras
    assert torch.equal(ex["concat_latent_image"], vae.encode(masked_pixels, device="cpu"))
    assert torch.equal(ex["concat_mask"][0, 0], mask[0])
    assert out["negative"][0].extras.keys() == ex.keys()
    assert torch.equal(out["latent"]["samples"], vae.encode(image, device="cpu"))
    res = ksampler.run(ctx, model=model, seed=1, steps=4, cfg=5.0, sampler_name="euler", scheduler="normal",
                       positive=out["positive"], negative=out["negative"], latent_image=out["latent"], denoise=1.0)
    keep = torch.ones(8, 8, dtype=torch.bool)
    keep[2:6, 3:7] = False
    assert torch.allclose(res["samples"][..., keep], out["latent"]["samples"][..., keep], atol=1e-5)
    assert (res["samples"][..., ~keep] - out["latent"]["samples"][..., ~keep]).abs().max() > 0.1


def test_instruct_pix2pix_model_matches_diffusers(sd1_ip2p):
    from diffusers import StableDiffusionInstructPix2PixPipeline

    from tests.support.nodes import run

    fx = sd1_ip2p
    model, vae, pos, neg = _setup(fx)
    assert model.in_channels == 8
    image = _image(4)
    out = run("InstructPixToPixConditioning", positive=pos, negative=neg, vae=vae, pixels=image)
    latents = out["positive"][0].extras["concat_latent_image"]
    assert torch.equal(latents, vae.encode(image, device="cpu")) and not out["latent"]["samples"].any()
    got = sample(model, out["positive"], out["negative"], out["latent"], seed=22, steps=6, cfg=6.0,
                 sampler="dpmpp_2m", scheduler="karras", device="cpu")
    ours = vae.decode(got["samples"], device="cpu").permute(0, 3, 1, 2)

    pipe = StableDiffusionInstructPix2PixPipeline(**fx.pipeline().components)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = _scheduler(fx, "DPMSolverMultistepScheduler", use_karras_sigmas=True)
    args = dict(image=latents / fx.vae.config.scaling_factor,  # 4 channels: used as the image's latents
                prompt_embeds=pos[0].embeds, negative_prompt_embeds=neg[0].embeds, num_inference_steps=6,
                guidance_scale=6.0, image_guidance_scale=1.0)
    ref = pipe(**args, generator=torch.Generator().manual_seed(22), output_type="pt").images
    assert (ours - ref).abs().max() <= 1e-3


@pytest.mark.parametrize("cfg", [5.0, 1.0])
def test_perturbed_attention_guidance_matches_diffusers(sd1, cfg):
    """PerturbedAttentionGuidance == diffusers' StableDiffusionPAGPipeline with
    ``pag_applied_layers=["mid"]`` (no adaptive scale): ``uncond + g (cond - uncond) + s (cond - perturbed)``;
    at cfg 1 (no negative) ``cond + s (cond - perturbed)``."""
    from diffusers import StableDiffusionPAGPipeline

    from tests.support.nodes import run

    model, vae, pos, neg = _setup(sd1)
    pag = run("PerturbedAttentionGuidance", model=model, scale=2.5)["model"]
    assert not model.options.get("denoise_hooks")  # the input MODEL is left as it was
    got = sample(pag, pos, neg, {"samples": torch.zeros(1, 4, 8, 8)}, seed=23, steps=5, cfg=cfg,
                 sampler="dpmpp_2m", scheduler="karras", device="cpu")
    plain = sample(model, pos, neg, {"samples": torch.zeros(1, 4, 8, 8)}, seed=23, steps=5, cfg=cfg,
                   sampler="dpmpp_2m", scheduler="karras", device="cpu")
    assert (got["samples"] - plain["samples"]).abs().max() > 1e-2  # the guidance does something
    assert all(type(p).__name__ != "IdentitySelfAttention" for p in model.unet.attn_processors.values())

    pipe = StableDiffusionPAGPipeline(**sd1.pipeline().components, pag_applied_layers=["mid"])
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = _scheduler(sd1, "DPMSolverMultistepScheduler", use_karras_sigmas=True)
    ref = pipe(prompt_embeds=pos[0].embeds, negative_prompt_embeds=neg[0].embeds, num_inference_steps=5,
               guidance_scale=cfg, pag_scale=2.5, pag_adaptive_scale=0.0, height=64, width=64,
               generator=torch.Generator().manual_seed(23), output_type="latent").images
    assert (got["samples"] - ref).abs().max() <= 1e-4 * ref.abs().max()
