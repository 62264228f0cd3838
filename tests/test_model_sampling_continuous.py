"""ModelSamplingContinuousEDM / ModelSamplingContinuousV (continuous-time SD/SDXL models) against
diffusers' EDM schedulers and ComfyUI's formulas.

* Preconditioning: the UNet's timestep, ``c_in * x`` and the denoised estimate equal
  ``EDMEulerScheduler.precondition_noise / precondition_inputs / precondition_outputs`` (diffusers'
  ``epsilon`` there is Karras' F-prediction, nodegen's and ComfyUI's ``edm``; ``v_prediction`` the same
  name in both) for the same sigma.
* Whole runs: Euler on the karras schedule over ``[sigma_min, sigma_max]`` == StableDiffusionPipeline
  with EDMEulerScheduler (same components, same starting noise); Playground v2.5 (``edm_playground_v2.5``:
  EDM + per-channel latent normalisation) with DPM++ 2M == StableDiffusionXLPipeline with
  EDMDPMSolverMultistepScheduler and a VAE config carrying ``latents_mean`` / ``latents_std``, compared
  in latents and in decoded pixels.
* ComfyUI's formulas (transcribed here): continuous V's ``atan(sigma) * 2 / pi`` timestep, ``eps``,
  Cosmos rectified flow, ``percent_to_sigma`` in log-sigma, the empty latent left unshifted.
"""

from __future__ import annotations

import math

import pytest
import torch

from nodegen.diffusion.continuous_sampling import ContinuousModelSampling
from nodegen.diffusion.model_sampling import percent_to_sigma
from nodegen.diffusion.sample import model_sampling_for
from nodegen.models.objects import DiffusionModel, TextEncoder, VAEModel
from tests.support.fixtures import fixture
from tests.support.nodes import run
from tests.support.sampling import sample

torch.set_num_threads(1)

PLAYGROUND_MEAN = (-1.6574, 1.886, -1.383, 2.5155)
PLAYGROUND_STD = (8.4927, 5.9022, 6.5498, 5.2299)
SIGMAS = [80.0, 14.6, 3.0, 1.0, 0.5, 0.1, 0.01, 0.002]


@pytest.fixture(scope="module")
def sd1(tmp_path_factory):
    return fixture("sd1", tmp_path_factory.mktemp("sd1"))


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    return fixture("sdxl", tmp_path_factory.mktemp("sdxl"))


def _patched(model, sampling: str, sigma_max: float, sigma_min: float, node="ModelSamplingContinuousEDM"):
    return run(node, model=model, sampling=sampling, sigma_max=sigma_max, sigma_min=sigma_min)["model"]


# -- the maths, per sigma ------------------------------------------------------------------------
@pytest.mark.parametrize("sampling, diffusers_prediction, sigma_data",
                         [("edm", "epsilon", 0.5), ("v_prediction", "v_prediction", 1.0)])
def test_preconditioning_equals_diffusers_edm_scheduler(sd1, sampling, diffusers_prediction, sigma_data):
    from diffusers import EDMEulerScheduler

    model = _patched(DiffusionModel.from_unet(sd1.unet, "sd1"), sampling, 120.0, 0.002)
    ms = model_sampling_for(model)
    assert isinstance(ms, ContinuousModelSampling) and ms.sigma_data == sigma_data
    sched = EDMEulerScheduler(sigma_min=0.002, sigma_max=120.0, sigma_data=sigma_data,
                              prediction_type=diffusers_prediction)
    g = torch.Generator().manual_seed(0)
    x, out = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
    for s in SIGMAS:
        sigma = torch.tensor(s, dtype=torch.float64)
        assert float(ms.timestep(s)) == pytest.approx(float(sched.precondition_noise(sigma)), rel=1e-12, abs=1e-12)
        assert torch.allclose(x * ms.c_in(sigma).float(), sched.precondition_inputs(x, sigma).float(), rtol=1e-6)
        want = sched.precondition_outputs(x, out, torch.tensor(s))
        assert torch.allclose(ms.denoised(x, torch.tensor([s]), out), want, rtol=1e-5, atol=1e-6)


def test_continuous_v_eps_and_cosmos_follow_comfyui(sd1):
    """ComfyUI's ModelSamplingContinuousV timestep, its EPS and COSMOS_RFLOW conversions."""
    base = DiffusionModel.from_unet(sd1.unet, "sd1")
    x, out = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    v = model_sampling_for(_patched(base, "v_prediction", 500.0, 0.03, node="ModelSamplingContinuousV"))
    assert (v.timing, v.prediction_type, v.sigma_min, v.sigma_max) == ("v", "v_prediction", 0.03, 500.0)
    for s in SIGMAS:
        assert float(v.timestep(s)) == pytest.approx(math.atan(s) / math.pi * 2, rel=1e-12)
        assert float(v.c_in(torch.tensor(s, dtype=torch.float64))) == pytest.approx(1 / math.sqrt(s * s + 1), rel=1e-12)
        sig = torch.tensor([s, s])
        want = x / (s * s + 1) - out * s / math.sqrt(s * s + 1)
        assert torch.allclose(v.denoised(x, sig, out), want, rtol=1e-5, atol=1e-6)
    eps = model_sampling_for(_patched(base, "eps", 120.0, 0.002))
    assert torch.allclose(eps.denoised(x, torch.tensor([2.0, 0.5]), out),
                          x - out * torch.tensor([2.0, 0.5]).view(2, 1, 1, 1))
    assert float(eps.timestep(2.0)) == pytest.approx(0.25 * math.log(2.0))
    # Cosmos: the network sees the rectified-flow sample (1 - t) x0 + t noise, t = sigma / (sigma + 1), and
    # a perfect velocity (noise - x0) gives back x0
    rf = model_sampling_for(_patched(base, "cosmos_rflow", 80.0, 0.002))
    x0, noise = torch.randn(1, 4, 3, 3), torch.randn(1, 4, 3, 3)
    for s in (80.0, 3.0, 0.2):
        t = s / (s + 1)
        xs = x0 + s * noise
        assert float(rf.timestep(s)) == pytest.approx(t)
        assert torch.allclose(xs * float(rf.c_in(torch.tensor(s))), (1 - t) * x0 + t * noise, atol=1e-5)
        assert torch.allclose(rf.denoised(xs, torch.tensor([s]), noise - x0), x0, atol=1e-5)
        assert torch.allclose(rf.noise_scaling(s, noise, x0), xs)  # no sqrt(1 + sigma^2) at the top


def test_schedules_and_ranges_span_sigma_min_to_sigma_max(sd1):
    from diffusers import EDMEulerScheduler

    model = _patched(DiffusionModel.from_unet(sd1.unet, "sd1"), "edm", 80.0, 0.002)
    ms = model_sampling_for(model)
    karras = run("BasicScheduler", model=model, scheduler="karras", steps=6, denoise=1.0)["sigmas"]
    sched = EDMEulerScheduler(sigma_min=0.002, sigma_max=80.0)
    sched.set_timesteps(6)
    assert torch.allclose(karras, sched.sigmas.float(), rtol=1e-6)
    normal = run("BasicScheduler", model=model, scheduler="normal", steps=5, denoise=1.0)["sigmas"]
    want = torch.linspace(math.log(80.0), math.log(0.002), 5, dtype=torch.float64).exp().float()
    assert torch.allclose(normal[:-1], want, rtol=1e-5) and normal[-1] == 0
    sched_exp = EDMEulerScheduler(sigma_min=0.002, sigma_max=80.0, sigma_schedule="exponential")
    sched_exp.set_timesteps(5)
    assert torch.allclose(normal, sched_exp.sigmas.float(), rtol=1e-5)
    # ComfyUI's percent_to_sigma: log-linear between sigma_min and sigma_max; its inverse is the progress
    for p in (0.1, 0.5, 0.9):
        want = math.exp((math.log(80.0) - math.log(0.002)) * (1 - p) + math.log(0.002))
        assert percent_to_sigma(ms, p) == pytest.approx(want, rel=1e-9)
        assert 1 - float(ms.sigma_to_t(want)) / (ms.num_timesteps - 1) == pytest.approx(p, abs=1e-9)
    assert percent_to_sigma(ms, 0.0) == math.inf and percent_to_sigma(ms, 1.0) == 0.0


# -- whole sampling runs against diffusers' pipelines --------------------------------------------------
@pytest.mark.parametrize("sampling, diffusers_prediction, sigma_data",
                         [("edm", "epsilon", 0.5), ("v_prediction", "v_prediction", 1.0)])
def test_euler_karras_run_equals_pipeline_with_edm_euler(sd1, sampling, diffusers_prediction, sigma_data):
    from diffusers import EDMEulerScheduler

    model = _patched(DiffusionModel.from_unet(sd1.unet, "sd1"), sampling, 80.0, 0.002)
    te = TextEncoder.from_components([sd1.tokenizer], [sd1.text_encoder], "sd1")
    pos, neg = te.encode("a photo of a cat"), te.encode("blurry")
    ours = sample(model, pos, neg, {"samples": torch.zeros(1, 4, 8, 8)}, seed=7, steps=4, cfg=6.0,
                  sampler="euler", scheduler="karras", device="cpu")["samples"]
    pipe = sd1.pipeline()
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = EDMEulerScheduler(sigma_min=0.002, sigma_max=80.0, sigma_data=sigma_data,
                                       prediction_type=diffusers_prediction)
    latents = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(7))  # x init_noise_sigma there
    want = pipe(prompt_embeds=pos[0].embeds, negative_prompt_embeds=neg[0].embeds, num_inference_steps=4,
                guidance_scale=6.0, height=64, width=64, latents=latents, output_type="latent").images
    assert (ours - want).abs().max() <= 1e-4 * want.abs().max()
    # the discrete model on the same schedule is another computation
    plain = sample(DiffusionModel.from_unet(sd1.unet, "sd1"), pos, neg, {"samples": torch.zeros(1, 4, 8, 8)},
                   seed=7, steps=4, cfg=6.0, sampler="euler", scheduler="karras", device="cpu")["samples"]
    assert (plain - want).abs().max() > 1e-2 * want.abs().max()


def test_playground_v2_5_equals_sdxl_pipeline_with_edm_dpmsolver(sdxl):
    from diffusers import AutoencoderKL, EDMDPMSolverMultistepScheduler

    model = _patched(DiffusionModel.from_unet(sdxl.unet, "sdxl"), "edm_playground_v2.5", 80.0, 0.002)
    te = TextEncoder.from_components([sdxl.tokenizer, sdxl.tokenizer_2], [sdxl.text_encoder, sdxl.text_encoder_2],
                                     "sdxl")
    vae = VAEModel.from_vae(sdxl.vae)  # nodegen's SDXL VAE (0.13025): the LATENT stays an SDXL one
    pos, neg = te.encode("a castle on a hill"), te.encode("low quality")
    ours = sample(model, pos, neg, {"samples": torch.zeros(1, 4, 8, 8)}, seed=3, steps=5, cfg=3.0,
                  sampler="dpmpp_2m", scheduler="karras", device="cpu")["samples"]
    ours_px = vae.decode(ours, device="cpu").permute(0, 3, 1, 2)

    pg_vae = AutoencoderKL(**{k: v for k, v in sdxl.vae.config.items() if not k.startswith("_")}
                           | dict(scaling_factor=0.5, latents_mean=PLAYGROUND_MEAN, latents_std=PLAYGROUND_STD))
    pg_vae.load_state_dict(sdxl.vae.state_dict())
    pg_vae.eval()
    pipe = sdxl.pipeline()
    pipe.register_modules(vae=pg_vae, scheduler=EDMDPMSolverMultistepScheduler(sigma_min=0.002, sigma_max=80.0))
    pipe.set_progress_bar_config(disable=True)

    def ref(output_type):
        latents = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(3))
        return pipe(prompt_embeds=pos[0].embeds, pooled_prompt_embeds=pos[0].pooled,
                    negative_prompt_embeds=neg[0].embeds, negative_pooled_prompt_embeds=neg[0].pooled,
                    num_inference_steps=5, guidance_scale=3.0, height=64, width=64, latents=latents,
                    output_type=output_type).images

    model_space = ref("latent")  # Playground's normalised latents
    mean, std = torch.tensor(PLAYGROUND_MEAN).view(1, 4, 1, 1), torch.tensor(PLAYGROUND_STD).view(1, 4, 1, 1)
    want = (model_space * std / 0.5 + mean) * 0.13025  # ComfyUI's process_out, in nodegen's SDXL LATENT
    assert (ours - want).abs().max() <= 1e-4 * want.abs().max()
    assert (ours_px - ref("pt")).abs().max() <= 1e-3


def test_playground_latent_format_in_and_out():
    """ComfyUI's SDXL_Playground_2_5.process_in/out on nodegen's SDXL LATENT; the empty latent stays 0."""
    from nodegen.diffusion.latent_formats import latent_in, latent_out

    z = torch.randn(2, 4, 5, 5)
    mean, std = torch.tensor(PLAYGROUND_MEAN).view(1, 4, 1, 1), torch.tensor(PLAYGROUND_STD).view(1, 4, 1, 1)
    inside = latent_in("sdxl_playground_2_5", z)
    assert torch.allclose(inside, (z / 0.13025 - mean) * 0.5 / std, atol=1e-6)
    assert torch.allclose(latent_out("sdxl_playground_2_5", inside), z, atol=1e-5)
    zeros = torch.zeros(1, 4, 5, 5)
    assert torch.equal(latent_in("sdxl_playground_2_5", zeros), zeros)


# -- the nodes ---------------------------------------------------------------------------------------
def test_bad_inputs_are_refused_naming_the_node_and_input(sd1):
    base = DiffusionModel.from_unet(sd1.unet, "sd1")
    flow = DiffusionModel.__new__(DiffusionModel)
    flow.__dict__.update(prediction_type="flow", family="flux", options={})
    with pytest.raises(ValueError, match="ModelSamplingContinuousEDM: input 'model' is a flux flow model"):
        _patched(flow, "edm", 120.0, 0.002)
    with pytest.raises(ValueError, match="ModelSamplingContinuousV: input 'model' is a flux flow model"):
        _patched(flow, "v_prediction", 500.0, 0.03, node="ModelSamplingContinuousV")
    with pytest.raises(ValueError, match="ModelSamplingContinuousEDM: input 'sigma_min' must be greater than 0"):
        _patched(base, "edm", 120.0, 0.0)
    with pytest.raises(ValueError, match="ModelSamplingContinuousV: input 'sigma_max'"):
        _patched(base, "v_prediction", 0.01, 0.03, node="ModelSamplingContinuousV")
    with pytest.raises(ValueError, match="input 'sampling' 'edm_playground_v2.5' is for sdxl models, but input "
                                         "'model' is a sd1 model"):
        _patched(base, "edm_playground_v2.5", 120.0, 0.002)


def test_the_node_patches_a_clone_and_model_sampling_discrete_undoes_it(sd1):
    base = DiffusionModel.from_unet(sd1.unet, "sd1")
    edm = _patched(base, "edm", 120.0, 0.002)
    assert base.options == {} and base.prediction_type == "epsilon" and edm.prediction_type == "edm"
    assert edm.options["continuous_sampling"]["sigma_data"] == 0.5
    back = run("ModelSamplingDiscrete", model=edm, sampling="eps", zsnr=False)["model"]
    ms = model_sampling_for(back)
    assert not isinstance(ms, ContinuousModelSampling) and ms.prediction_type == "epsilon"


def test_comfyui_api_workflow_imports_and_runs(sd1, tmp_path):
    import shutil

    from nodegen.formats import comfy
    from nodegen.runtime.engine import Engine

    (tmp_path / "models" / "checkpoints").mkdir(parents=True)
    shutil.copy(sd1.single_file, tmp_path / "models" / "checkpoints" / "tiny-sd1.safetensors")
    engine = Engine(models=tmp_path / "models", output_dir=tmp_path / "out", device="cpu")

    def n(ct, **inputs):
        return {"class_type": ct, "inputs": inputs}

    api = {"4": n("CheckpointLoaderSimple", ckpt_name="tiny-sd1.safetensors"),
           "10": n("ModelSamplingContinuousEDM", sampling="edm", sigma_max=80.0, sigma_min=0.002, model=["4", 0]),
           "6": n("CLIPTextEncode", text="a cat", clip=["4", 1]),
           "7": n("CLIPTextEncode", text="blurry", clip=["4", 1]),
           "5": n("EmptyLatentImage", width=64, height=64, batch_size=1),
           "3": n("KSampler", seed=5, steps=3, cfg=5.0, sampler_name="euler", scheduler="karras", denoise=1.0,
                  model=["10", 0], positive=["6", 0], negative=["7", 0], latent_image=["5", 0]),
           "8": n("VAEDecode", samples=["3", 0], vae=["4", 2]),
           "9": n("SaveImage", filename_prefix="edm", images=["8", 0])}
    doc, notes = comfy.import_comfy(api)
    assert notes == []
    assert doc["nodes"]["10"]["inputs"] == {"sampling": "edm", "sigma_max": 80.0, "sigma_min": 0.002,
                                            "model": {"from": ["4", "model"]}}
    assert comfy.export_api(doc) == api
    result = engine.run(doc)
    assert result.ok, (result.problems, [str(f) for f in result.failures])
    plain = dict(api, **{"3": {**api["3"], "inputs": {**api["3"]["inputs"], "model": ["4", 0]}}})
    other = engine.run(comfy.import_comfy(plain)[0])
    assert list(result.images[0].getdata()) != list(other.images[0].getdata())  # the sampling matters
