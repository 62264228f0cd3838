"""Oracle: SDXL sampling (pooled text_embeds + size/crop time_ids) == StableDiffusionXLPipeline."""

from __future__ import annotations

import pytest
import torch

from nodegen.models.objects import DiffusionModel, TextEncoder, VAEModel
from tests.support.fixtures import fixture
from tests.support.sampling import sample

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def sdxl(tmp_path_factory):
    return fixture("sdxl", tmp_path_factory.mktemp("sdxl"))


def _run(fx, extras: dict, pipe_kw: dict, sampler="euler", scheduler="normal", steps=4, sched_kw=None):
    from diffusers import DPMSolverMultistepScheduler, EulerDiscreteScheduler

    model = DiffusionModel.from_unet(fx.unet, "sdxl", "epsilon")
    te = TextEncoder.from_components([fx.tokenizer, fx.tokenizer_2], [fx.text_encoder, fx.text_encoder_2], "sdxl")
    vae = VAEModel.from_vae(fx.vae)
    pos = [c.copy(extras=dict(c.extras, **extras)) for c in te.encode("a castle on a hill")]
    neg = [c.copy(extras=dict(c.extras, **extras)) for c in te.encode("low quality")]
    assert pos[0].pooled is not None
    out = sample(model, pos, neg, {"samples": torch.zeros(1, 4, 8, 8)}, seed=3, steps=steps, cfg=5.0,
                 sampler=sampler, scheduler=scheduler, device="cpu")
    ours = vae.decode(out["samples"], device="cpu").permute(0, 3, 1, 2)

    pipe = fx.pipeline()
    pipe.set_progress_bar_config(disable=True)
    if sampler == "euler":
        pipe.scheduler = EulerDiscreteScheduler.from_config(fx.scheduler.config, timestep_spacing="linspace")
    else:
        pipe.scheduler = DPMSolverMultistepScheduler.from_config(fx.scheduler.config, **(sched_kw or {}))

    def run(output_type):
        gen = torch.Generator().manual_seed(3)
        kw = {}
        if sampler == "euler":  # see test_oracle_txt2img: diffusers' Euler starts at noise * sigma_max
            pipe.scheduler.set_timesteps(steps)
            smax = float(pipe.scheduler.sigmas[0])
            kw["latents"] = torch.randn((1, 4, 8, 8), generator=gen) * ((smax**2 + 1) ** 0.5 / smax)
        return pipe(prompt_embeds=pos[0].embeds, pooled_prompt_embeds=pos[0].pooled,
                    negative_prompt_embeds=neg[0].embeds, negative_pooled_prompt_embeds=neg[0].pooled,
                    num_inference_steps=steps, guidance_scale=5.0, height=64, width=64, generator=gen,
                    output_type=output_type, **kw, **pipe_kw).images

    ref, ref_lat = run("pt"), run("latent")
    return out["samples"], ref_lat, ours, ref


def test_sdxl_default_size_conditioning(sdxl):
    lat, ref_lat, ours, ref = _run(sdxl, {}, {})
    assert (lat - ref_lat).abs().max() <= 1e-4 * ref_lat.abs().max()
    assert (ours - ref).abs().max() <= 1e-3


def test_sdxl_explicit_size_and_crop(sdxl):
    extras = dict(width=96, height=80, crop_w=8, crop_h=16, target_width=72, target_height=64)
    pipe_kw = dict(original_size=(80, 96), crops_coords_top_left=(16, 8), target_size=(64, 72))
    lat, ref_lat, ours, ref = _run(sdxl, extras, pipe_kw, sampler="dpmpp_2m", scheduler="karras", steps=5,
                                   sched_kw=dict(use_karras_sigmas=True))
    assert (lat - ref_lat).abs().max() <= 1e-4 * ref_lat.abs().max()
    assert (ours - ref).abs().max() <= 1e-3
    # and the size conditioning matters: the default sizes give another result
    lat2, *_ = _run(sdxl, {}, {}, sampler="dpmpp_2m", scheduler="karras", steps=5,
                    sched_kw=dict(use_karras_sigmas=True))
    assert (lat - lat2).abs().max() > 1e-3


@pytest.fixture(scope="module")
def refiner(sdxl):
    """A tiny SDXL refiner UNet (OpenCLIP-G only, 5 time ids with the aesthetic score) over the SDXL
    fixture's second text encoder and VAE."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(30)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(64, 128),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=128, attention_head_dim=(1, 2), use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=128 + 5 * 8, norm_num_groups=32)
    unet.eval()
    return unet


def test_sdxl_refiner_img2img_matches_diffusers(sdxl, refiner):
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLImg2ImgPipeline

    model = DiffusionModel.from_unet(refiner, "sdxl_refiner", "epsilon")
    te = TextEncoder.from_components([sdxl.tokenizer_2], [sdxl.text_encoder_2], "sdxl_refiner")
    vae = VAEModel.from_vae(sdxl.vae)
    pos, neg = te.encode("a castle, detailed"), te.encode("blurry")
    assert pos[0].embeds.shape[-1] == 128 and pos[0].pooled is not None
    init = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(8))
    out = sample(model, pos, neg, {"samples": init}, seed=4, steps=5, cfg=5.0, sampler="euler",
                 scheduler="normal", denoise=0.5, device="cpu")

    pipe = StableDiffusionXLImg2ImgPipeline(vae=sdxl.vae, text_encoder=None, text_encoder_2=sdxl.text_encoder_2,
                                            tokenizer=None, tokenizer_2=sdxl.tokenizer_2, unet=refiner,
                                            scheduler=EulerDiscreteScheduler.from_config(
                                                sdxl.scheduler.config, timestep_spacing="linspace"),
                                            requires_aesthetics_score=True, force_zeros_for_empty_prompt=False)
    pipe.set_progress_bar_config(disable=True)
    args = dict(image=init, strength=0.5, num_inference_steps=10, guidance_scale=5.0,
                prompt_embeds=pos[0].embeds, pooled_prompt_embeds=pos[0].pooled,
                negative_prompt_embeds=neg[0].embeds, negative_pooled_prompt_embeds=neg[0].pooled)
    ref_lat = pipe(**args, generator=torch.Generator().manual_seed(4), output_type="latent").images
    assert (out["samples"] - ref_lat).abs().max() <= 1e-4 * ref_lat.abs().max()
    ours = vae.decode(out["samples"], device="cpu").permute(0, 3, 1, 2)
    ref = pipe(**args, generator=torch.Generator().manual_seed(4), output_type="pt").images
    assert (ours - ref).abs().max() <= 1e-3
    # the aesthetic score is part of the conditioning: another score, another result
    pos9 = [c.copy(extras=dict(c.extras, aesthetic_score=9.0)) for c in pos]
    other = sample(model, pos9, neg, {"samples": init}, seed=4, steps=5, cfg=5.0, sampler="euler",
                   scheduler="normal", denoise=0.5, device="cpu")
    assert (other["samples"] - out["samples"]).abs().max() > 1e-3
