"""Oracle: SD3 / Flux sampling == diffusers' StableDiffusion3Pipeline / FluxPipeline on the same tiny
random-weight components (max abs pixel difference <= 1e-3, fp32 CPU).

Schedules: SD3's default flow-match schedule is our ``normal`` (shift 3); FluxPipeline's
``linspace(1, 1/N, N)`` with the resolution shift is our ``simple`` with ModelSamplingFlux at the
image size. diffusers' FlowMatchHeunDiscreteScheduler is our ``heun``. img2img: diffusers runs the
last ``int(N * strength)`` steps of an N-step schedule, our ``steps = k, denoise = k / N``; the image
latents are handed to diffusers directly (its encode samples the latent distribution).
"""

from __future__ import annotations

import math

import pytest
import torch

from nodegen.diffusion.flow_sampling import flux_mu
from nodegen.diffusion.sample import Steps, sample
from nodegen.models.flow_text import FlowTextEncoder
from nodegen.models.objects import DiffusionModel, VAEModel
from tests.support.flow_fixtures import fixture

torch.set_num_threads(1)
TOL = 1e-3


@pytest.fixture(scope="module")
def sd3(tmp_path_factory):
    return fixture("sd3", tmp_path_factory.mktemp("sd3"))


@pytest.fixture(scope="module")
def flux(tmp_path_factory):
    return fixture("flux", tmp_path_factory.mktemp("flux"))


def sd3_components(fx, t5: bool = True):
    parts = {"clip_l": (fx.tokenizer, fx.text_encoder), "clip_g": (fx.tokenizer_2, fx.text_encoder_2)}
    if t5:
        parts["t5"] = (fx.tokenizer_3, fx.text_encoder_3)
    return (DiffusionModel(fx.transformer, "sd3", "flow"), FlowTextEncoder("sd3", parts),
            VAEModel.from_vae(fx.vae))


def flux_components(fx):
    parts = {"clip_l": (fx.tokenizer, fx.text_encoder), "t5": (fx.tokenizer_2, fx.text_encoder_2)}
    return DiffusionModel(fx.transformer, "flux", "flow"), FlowTextEncoder("flux", parts), VAEModel.from_vae(fx.vae)


def _pixels(pipe_out) -> torch.Tensor:
    return pipe_out.images if torch.is_tensor(pipe_out.images) else torch.as_tensor(pipe_out.images)


def _diff(ours_img: torch.Tensor, theirs: torch.Tensor) -> float:
    theirs = theirs.permute(0, 2, 3, 1) if theirs.shape[1] == 3 else theirs
    return float((ours_img - theirs).abs().max())


def _heun(fx, **kw):
    from diffusers import FlowMatchHeunDiscreteScheduler

    class Heun(FlowMatchHeunDiscreteScheduler):
        """FluxPipeline hands every scheduler its sigmas and mu; Heun's own schedule takes neither
        (it is a static shift, which equals Flux's resolution shift with shift = e^mu)."""

        def set_timesteps(self, num_inference_steps=None, device=None, sigmas=None, mu=None):
            super().set_timesteps(num_inference_steps or len(sigmas), device)

    return Heun.from_config(fx.scheduler.config, **kw)


@pytest.mark.parametrize("sampler", ["euler", "heun"])
@pytest.mark.parametrize("t5", [True, False])
def test_sd3_txt2img_equals_diffusers(sd3, sampler, t5):
    model, te, vae = sd3_components(sd3, t5)
    pos, neg = te.encode("a photo of a cat"), te.encode("blurry")
    out = sample(model, pos, neg, {"samples": torch.zeros(1, 16, 8, 8)}, 7, Steps(3, "normal"), 5.0, sampler, device="cpu")
    ours = vae.decode(out.latent["samples"], device="cpu")
    pipe = sd3.pipeline(**({} if t5 else {"text_encoder_3": None, "tokenizer_3": None}))
    if sampler == "heun":
        pipe.scheduler = _heun(sd3)
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(prompt="a photo of a cat", negative_prompt="blurry", num_inference_steps=3, guidance_scale=5.0,
                  height=64, width=64, generator=torch.Generator().manual_seed(7), output_type="pt").images
    assert _diff(ours, theirs * 0.5 + 0.5 if theirs.min() < 0 else theirs) <= TOL


@pytest.mark.parametrize("sampler", ["euler", "heun"])
def test_flux_txt2img_equals_diffusers(flux, sampler):
    model, te, vae = flux_components(flux)
    mu = flux_mu(64, 64)
    model.options["model_sampling"] = {"kind": "flux", "shift": mu, "multiplier": 1.0}
    scheduler = "simple"
    pipe = flux.pipeline()
    if sampler == "heun":
        model.options["model_sampling"] = {"kind": "flow", "shift": math.exp(mu), "multiplier": 1.0}
        scheduler = "normal"
        pipe.scheduler = _heun(flux, shift=math.exp(mu), use_dynamic_shifting=False)
    pos = [c.copy(extras={"guidance": 4.0}) for c in te.encode("a photo of a cat")]
    out = sample(model, pos, None, {"samples": torch.zeros(1, 16, 8, 8)}, 3, Steps(3, scheduler), 1.0, sampler, device="cpu")
    ours = vae.decode(out.latent["samples"], device="cpu")
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(prompt="a photo of a cat", num_inference_steps=3, guidance_scale=4.0, height=64, width=64,
                  generator=torch.Generator().manual_seed(3), output_type="pt").images
    assert _diff(ours, theirs) <= TOL


def test_sd3_img2img_equals_diffusers(sd3):
    model, te, vae = sd3_components(sd3)
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(1))
    lat = vae.encode(image, device="cpu")
    pos, neg = te.encode("a red ball"), te.encode("")
    out = sample(model, pos, neg, {"samples": lat}, 5, Steps(2, "normal", 2 / 4), 4.0, "euler", device="cpu")
    ours = vae.decode(out.latent["samples"], device="cpu")
    pipe = sd3.img2img_pipeline()
    pipe.set_progress_bar_config(disable=True)
    scale, shift = sd3.vae.config.scaling_factor, sd3.vae.config.shift_factor
    theirs = pipe(prompt="a red ball", negative_prompt="", image=(lat - shift) * scale, strength=0.5,
                  num_inference_steps=4, guidance_scale=4.0, generator=torch.Generator().manual_seed(5),
                  output_type="pt").images
    assert _diff(ours, theirs) <= TOL


def test_flux_img2img_equals_diffusers(flux):
    model, te, vae = flux_components(flux)
    model.options["model_sampling"] = {"kind": "flux", "shift": flux_mu(64, 64), "multiplier": 1.0}
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(2))
    lat = vae.encode(image, device="cpu")
    pos = te.encode("a red ball")
    out = sample(model, pos, None, {"samples": lat}, 9, Steps(2, "simple", 2 / 4), 1.0, "euler", device="cpu")
    ours = vae.decode(out.latent["samples"], device="cpu")
    pipe = flux.img2img_pipeline()
    pipe.set_progress_bar_config(disable=True)
    scale, shift = flux.vae.config.scaling_factor, flux.vae.config.shift_factor
    theirs = pipe(prompt="a red ball", image=(lat - shift) * scale, strength=0.5, num_inference_steps=4,
                  guidance_scale=3.5, height=64, width=64, generator=torch.Generator().manual_seed(9),
                  output_type="pt").images
    assert _diff(ours, theirs) <= TOL


def test_flow_single_file_and_folder_give_identical_images(sd3, flux):
    from nodegen.models.loader import load_checkpoint
    from nodegen.models.manager import ModelManager

    mgr = ModelManager(device="cpu")
    for fx, sched in ((sd3, "normal"), (flux, "simple")):
        images = []
        for src in (fx.single_file, fx.diffusers_dir):
            model, te, vae = load_checkpoint(src, manager=mgr)
            out = sample(model, te.encode("a cat"), te.encode(""), {"samples": torch.zeros(1, 16, 8, 8)}, 1, Steps(2, sched), 2.0, "euler", device="cpu")
            images.append(vae.decode(out.latent["samples"], device="cpu"))
        assert torch.equal(images[0], images[1]), fx.family


def _mask() -> torch.Tensor:
    m = torch.zeros(1, 64, 64)
    m[:, 16:48, 8:40] = 1.0  # 8-pixel aligned: exact at latent resolution for both resizers
    return m


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_inpaint_equals_diffusers(sd3, flux, family):
    """Noise-mask inpainting (a standard model, the known region re-noised to each step's level)
    equals diffusers' StableDiffusion3InpaintPipeline / FluxInpaintPipeline at strength 1. The
    pipelines' latents are decoded here with the VAE's shift: diffusers 0.42's SD3 inpaint pipeline
    decodes ``latents / scaling_factor`` without adding ``shift_factor`` back."""
    fx = sd3 if family == "sd3" else flux
    model, te, vae = sd3_components(fx) if family == "sd3" else flux_components(fx)
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(11))
    lat = vae.encode(image, device="cpu")
    mask = _mask()
    if family == "sd3":
        out = sample(model, te.encode("a dog"), te.encode(""), {"samples": lat, "noise_mask": mask}, 6,
                     Steps(3, "normal"), 3.0, "euler", device="cpu")
    else:
        model.options["model_sampling"] = {"kind": "flux", "shift": flux_mu(64, 64), "multiplier": 1.0}
        out = sample(model, te.encode("a dog"), None, {"samples": lat, "noise_mask": mask}, 6,
                     Steps(3, "simple"), 1.0, "euler", device="cpu")
    ours = vae.decode(out.latent["samples"], device="cpu")
    pipe = fx.inpaint_pipeline()
    pipe.set_progress_bar_config(disable=True)
    scale, shift = fx.vae.config.scaling_factor, fx.vae.config.shift_factor
    # masked_image_latents feed only 33-channel inpainting transformers; given, so that diffusers does not
    # multiply the latents passed as the image by the pixel mask
    args = dict(prompt="a dog", image=(lat - shift) * scale, mask_image=mask[:, None], strength=1.0,
                masked_image_latents=(lat - shift) * scale,
                num_inference_steps=3, height=64, width=64, generator=torch.Generator().manual_seed(6),
                output_type="latent")
    if family == "sd3":
        args.update(negative_prompt="", guidance_scale=3.0)
    else:
        args.update(guidance_scale=3.5)
    theirs = pipe(**args).images
    if family == "flux":  # packed [B, h/2 * w/2, 64] -> [B, 16, h, w]
        from nodegen.diffusion.flow_forward import unpack

        theirs = unpack(theirs, 8, 8)
    assert _diff(ours, vae.decode(theirs / scale + shift, device="cpu")) <= TOL


def _percent_for(ms, sigma: float) -> float:
    """The schedule fraction whose sigma is ``sigma`` (ComfyUI's percent_to_sigma for flow models,
    ``t_to_sigma((1 - p) * T)``, inverted by bisection)."""
    lo, hi = 0.0, 1.0  # sigma falls as p grows
    for _ in range(60):
        mid = (lo + hi) / 2
        if float(ms.t_to_sigma((1 - mid) * ms.num_timesteps)) > sigma:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@pytest.mark.parametrize("window", ["every step", "steps 1 and 2"])
def test_sd3_skip_layer_guidance_equals_diffusers(sd3, window):
    """SkipLayerGuidanceSD3 == StableDiffusion3Pipeline's ``skip_guidance_layers``. diffusers' window
    counts steps (``N * start < i < N * stop``), ComfyUI's sigmas: the percents are chosen to bracket
    the same steps' sigmas."""
    from nodegen.diffusion.sample import _sigmas, model_sampling_for
    from tests.support.nodes import run

    model, te, vae = sd3_components(sd3)
    pos, neg = te.encode("a photo of a cat"), te.encode("blurry")
    if window == "every step":
        percents, fractions = (0.0, 1.0), (-0.01, 1.01)
    else:
        ms = model_sampling_for(model)
        s = [float(v) for v in _sigmas(Steps(4, "normal"), ms)]
        percents = (_percent_for(ms, (s[0] + s[1]) / 2), _percent_for(ms, (s[2] + s[3]) / 2))
        fractions = (0.2, 0.7)  # i in {1, 2}
    slg = run("SkipLayerGuidanceSD3", model=model, layers="1", scale=2.5, start_percent=percents[0],
              end_percent=percents[1])["model"]
    args = (pos, neg, {"samples": torch.zeros(1, 16, 8, 8)}, 7, Steps(4, "normal"), 5.0, "euler")
    out = sample(slg, *args, device="cpu")
    plain = sample(model, *args, device="cpu")
    assert float((out.latent["samples"] - plain.latent["samples"]).abs().max()) > 1e-3
    ours = vae.decode(out.latent["samples"], device="cpu")
    pipe = sd3.pipeline()
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(prompt="a photo of a cat", negative_prompt="blurry", num_inference_steps=4, guidance_scale=5.0,
                  height=64, width=64, generator=torch.Generator().manual_seed(7), output_type="pt",
                  skip_guidance_layers=[1], skip_layer_guidance_scale=2.5, skip_layer_guidance_start=fractions[0],
                  skip_layer_guidance_stop=fractions[1]).images
    assert _diff(ours, theirs) <= TOL
    assert "forward" not in model.unet.transformer_blocks[1].__dict__  # the block is itself again
