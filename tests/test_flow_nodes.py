"""The SD3 / Flux nodes: loaders through the model folders, text encoding, guidance, model sampling,
custom sampling (SamplerCustomAdvanced with CFGGuider equals KSampler)."""

from __future__ import annotations

import os

import pytest
import torch

from nodegen.kernel.context import CancelToken, RunContext
from nodegen.models.manager import ModelManager
from nodegen.models.paths import ModelPaths
from nodegen.nodes import flow as fl
from nodegen.nodes import sampling as sm
from tests.support.flow_fixtures import fixture

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    sd3, flux = fixture("sd3"), fixture("flux")
    root = tmp_path_factory.mktemp("models")
    files = {"diffusion_models/flux1-dev.safetensors": flux.diffusion_model,
             "unet/flux1-schnell.safetensors": flux.diffusion_model_schnell,
             "clip/clip_l.safetensors": sd3.clip_l, "text_encoders/clip_g.safetensors": sd3.clip_g,
             "text_encoders/t5xxl_fp16.safetensors": sd3.t5xxl, "diffusion_models/sd3.safetensors": sd3.diffusion_model}
    for rel, src in files.items():
        (root / rel).parent.mkdir(exist_ok=True)
        os.symlink(src, root / rel)
    return RunContext(node_id="1", node_title="t", device=torch.device("cpu"), models=ModelManager(device="cpu"),
                      paths=ModelPaths([root]), output_dir=".", input_dir=".", temp_dir=".", workflow=None,
                      cancel=CancelToken())


def run(nd, ctx, **kw):
    return nd.normalize_result(nd.run(ctx, **kw))


def test_loaders_find_files_in_comfy_folder_names(ctx):
    schnell = run(fl.unet_loader, ctx, unet_name="flux1-schnell.safetensors", weight_dtype="default")["model"]
    assert schnell.family == "flux" and not schnell.unet.config.guidance_embeds
    clip = run(fl.dual_clip_loader, ctx, clip_name1="t5xxl_fp16.safetensors", clip_name2="clip_l.safetensors",
               type="flux")["clip"]
    assert clip.family == "flux" and clip.roles == ("clip_l", "t5")
    triple = run(fl.triple_clip_loader, ctx, clip_name1="clip_l.safetensors", clip_name2="clip_g.safetensors",
                 clip_name3="t5xxl_fp16.safetensors")["clip"]
    assert triple.roles == ("clip_l", "clip_g", "t5")
    single = run(fl.clip_loader, ctx, clip_name="t5xxl_fp16.safetensors", type="sd3")["clip"]
    assert single.roles == ("t5",)
    with pytest.raises(ValueError, match="UNETLoader: unet_name 'nope.safetensors' was not found"):
        run(fl.unet_loader, ctx, unet_name="nope.safetensors", weight_dtype="default")
    with pytest.raises(ValueError, match="DualCLIPLoader:.*Flux.*t5|DualCLIPLoader:.*missing t5"):
        run(fl.dual_clip_loader, ctx, clip_name1="clip_l.safetensors", clip_name2="clip_g.safetensors", type="flux")


def _sd3(ctx):
    model = run(fl.unet_loader, ctx, unet_name="sd3.safetensors", weight_dtype="default")["model"]
    clip = run(fl.triple_clip_loader, ctx, clip_name1="clip_l.safetensors", clip_name2="clip_g.safetensors",
               clip_name3="t5xxl_fp16.safetensors")["clip"]
    return model, clip


def test_sd3_encode_node_equals_plain_encode(ctx):
    _, clip = _sd3(ctx)
    a = run(fl.clip_text_encode_sd3, ctx, clip=clip, clip_l="a cat", clip_g="a cat", t5xxl="a cat")["conditioning"]
    b = clip.encode("a cat")
    assert torch.equal(a[0].embeds, b[0].embeds) and torch.equal(a[0].pooled, b[0].pooled)
    c = run(fl.clip_text_encode_sd3, ctx, clip=clip, clip_l="a cat", clip_g="a dog", t5xxl="a cat")["conditioning"]
    assert not torch.equal(a[0].embeds, c[0].embeds)
    with pytest.raises(ValueError, match="CLIPTextEncodeFlux: input 'clip' is a sd3"):
        run(fl.clip_text_encode_flux, ctx, clip=clip, clip_l="a", t5xxl="a", guidance=3.5)


def test_custom_advanced_with_cfg_guider_equals_ksampler(ctx):
    model, clip = _sd3(ctx)
    model = run(fl.model_sampling_sd3, ctx, model=model, shift=2.0)["model"]
    pos, neg = clip.encode("a cat"), clip.encode("")
    lat = run(fl.empty_sd3_latent_image, ctx, width=64, height=64, batch_size=1)["latent"]
    assert lat["samples"].shape == (1, 16, 8, 8)
    ks = run(sm.ksampler, ctx, model=model, seed=3, steps=3, cfg=3.0, sampler_name="euler", scheduler="beta",
             positive=pos, negative=neg, latent_image=lat, denoise=1.0)["latent"]
    guider = run(fl.cfg_guider, ctx, model=model, positive=pos, negative=neg, cfg=3.0)["guider"]
    sigmas = run(fl.beta_sampling_scheduler, ctx, model=model, steps=3, alpha=0.6, beta=0.6)["sigmas"]
    out = run(fl.sampler_custom_advanced, ctx, noise=run(fl.random_noise, ctx, noise_seed=3)["noise"], guider=guider,
              sampler=run(sm.ksampler_select, ctx, sampler_name="euler")["sampler"], sigmas=sigmas,
              latent_image=lat)["output"]
    assert torch.equal(out["samples"], ks["samples"])
    shifted = run(sm.basic_scheduler, ctx, model=model, scheduler="simple", steps=4, denoise=1.0)["sigmas"]
    plain = run(sm.basic_scheduler, ctx, model=_sd3(ctx)[0], scheduler="simple", steps=4, denoise=1.0)["sigmas"]
    assert float(shifted[1]) == pytest.approx(2 * 0.75 / (1 + 0.75)) and float(plain[1]) == pytest.approx(3 * 0.75 / (1 + 2 * 0.75))


def test_flux_guidance_and_model_sampling_flux(ctx):
    dev = run(fl.unet_loader, ctx, unet_name="flux1-dev.safetensors", weight_dtype="default")["model"]
    schnell = run(fl.unet_loader, ctx, unet_name="flux1-schnell.safetensors", weight_dtype="default")["model"]
    clip = run(fl.dual_clip_loader, ctx, clip_name1="clip_l.safetensors", clip_name2="t5xxl_fp16.safetensors",
               type="flux")["clip"]
    cond = run(fl.clip_text_encode_flux, ctx, clip=clip, clip_l="a cat", t5xxl="a cat", guidance=3.5)["conditioning"]
    strong = run(fl.flux_guidance, ctx, conditioning=cond, guidance=8.0)["conditioning"]
    assert strong[0].extras["guidance"] == 8.0 and cond[0].extras["guidance"] == 3.5
    lat = run(fl.empty_sd3_latent_image, ctx, width=64, height=64, batch_size=1)["latent"]
    dev = run(fl.model_sampling_flux, ctx, model=dev, max_shift=1.15, base_shift=0.5, width=64, height=64)["model"]
    sigmas = run(sm.basic_scheduler, ctx, model=dev, scheduler="simple", steps=2, denoise=1.0)["sigmas"]
    mu = dev.options["model_sampling"]["shift"]
    assert float(sigmas[1]) == pytest.approx(float(torch.tensor(mu).exp() / (torch.tensor(mu).exp() + 1)), rel=1e-5)

    def image(model, c):
        g = run(fl.basic_guider, ctx, model=model, conditioning=c)["guider"]
        return run(fl.sampler_custom_advanced, ctx, noise=run(fl.random_noise, ctx, noise_seed=1)["noise"], guider=g,
                   sampler=run(sm.ksampler_select, ctx, sampler_name="euler")["sampler"], sigmas=sigmas,
                   latent_image=lat)["output"]["samples"]

    assert not torch.equal(image(dev, cond), image(dev, strong))
    assert torch.equal(image(schnell, cond), image(schnell, strong))  # schnell has no guidance input
    with pytest.raises(ValueError, match="ModelSamplingSD3: input 'model' is a sd1"):
        from nodegen.models.objects import DiffusionModel

        run(fl.model_sampling_sd3, ctx, model=DiffusionModel(torch.nn.Linear(1, 1), "sd1"), shift=3.0)
