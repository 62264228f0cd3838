"""ModelSamplingDiscrete, RescaleCFG and FreeU against diffusers.

* v-prediction + RescaleCFG: our sampling == StableDiffusionPipeline with EulerDiscreteScheduler
  (``prediction_type="v_prediction"``) and ``guidance_rescale`` on the same fixture components.
* LCM: our ``lcm`` sampler on an ``lcm`` model == the pipeline with LCMScheduler on its timesteps
  (diffusers applies the boundary condition to the VP sample, ComfyUI and nodegen to ``x``: the
  difference is ``c_skip`` <= 4e-8 times the sample, far below the tolerance).
* zsnr: diffusers' ``rescale_zero_terminal_snr`` (DDIM) but the last value, ComfyUI's 4.9e-8.
* FreeU: the per-tensor maths == diffusers' ``apply_freeu``; the whole UNet == diffusers' FreeU code
  path with ComfyUI's channel rule put in for diffusers' block-index rule (and V2's mean scaling).
"""

from __future__ import annotations

import pytest
import torch

from nodegen.models.objects import DiffusionModel, TextEncoder
from tests.support.fixtures import fixture
from tests.support.nodes import run
from tests.support.sampling import sample

torch.set_num_threads(1)



@pytest.fixture(scope="module")
def sd1(tmp_path_factory):
    return fixture("sd1", tmp_path_factory.mktemp("sd1"))


def _conds(fx):
    te = TextEncoder.from_components([fx.tokenizer], [fx.text_encoder], fx.family)
    return te.encode("a photo of a cat"), te.encode("blurry, ugly")


def _pipe(fx, scheduler):
    pipe = fx.pipeline()
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = scheduler
    return pipe


def test_v_prediction_with_rescale_cfg_matches_diffusers(sd1):
    from diffusers import EulerDiscreteScheduler

    model = DiffusionModel.from_unet(sd1.unet, "sd1")
    model = run("ModelSamplingDiscrete", model=model, sampling="v_prediction", zsnr=False)["model"]
    model = run("RescaleCFG", model=model, multiplier=0.7)["model"]
    assert model.prediction_type == "v_prediction" and model.options["rescale_cfg"] == 0.7
    pos, neg = _conds(sd1)
    ours = sample(model, pos, neg, {"samples": torch.zeros(1, 4, 8, 8)}, seed=7, steps=4, cfg=7.5,
                  sampler="euler", scheduler="normal", device="cpu")["samples"]
    sched = EulerDiscreteScheduler.from_config(sd1.scheduler.config, prediction_type="v_prediction",
                                               timestep_spacing="linspace")
    pipe = _pipe(sd1, sched)
    sched.set_timesteps(4)
    smax = float(sched.sigmas[0])
    gen = torch.Generator().manual_seed(7)
    latents = torch.randn((1, 4, 8, 8), generator=gen) * (smax**2 + 1) ** 0.5 / float(sched.init_noise_sigma)

    def ref(rescale):
        return pipe(prompt_embeds=pos[0].embeds, negative_prompt_embeds=neg[0].embeds, num_inference_steps=4,
                    guidance_scale=7.5, guidance_rescale=rescale, height=64, width=64, latents=latents.clone(),
                    generator=torch.Generator().manual_seed(7), output_type="latent").images

    want = ref(0.7)
    assert (ours - want).abs().max() <= 1e-4 * want.abs().max()
    assert (ref(0.0) - want).abs().max() > 1e-2 * want.abs().max()  # the rescale matters here


def test_lcm_matches_diffusers_lcm_scheduler(sd1):
    from diffusers import LCMScheduler

    from nodegen.diffusion.sample import model_sampling_for

    model = run("ModelSamplingDiscrete", model=DiffusionModel.from_unet(sd1.unet, "sd1"), sampling="lcm",
                zsnr=False)["model"]
    ms = model_sampling_for(model)
    sched = LCMScheduler.from_config(sd1.scheduler.config)
    sched.set_timesteps(4)
    assert sched.timesteps.tolist() == [999, 759, 499, 259]
    sigmas = torch.cat([ms.t_to_sigma(sched.timesteps.double()), torch.zeros(1, dtype=torch.float64)])
    assert [int(ms.timestep(s)) for s in sigmas[:-1]] == [999, 759, 499, 259]
    pos, neg = _conds(sd1)
    ours = sample(model, pos, neg, {"samples": torch.zeros(1, 4, 8, 8)}, seed=3, cfg=1.0, sampler="lcm",
                  sigmas=sigmas, device="cpu")["samples"]
    want = _pipe(sd1, sched)(prompt_embeds=pos[0].embeds, num_inference_steps=4, guidance_scale=1.0, height=64,
                             width=64, generator=torch.Generator().manual_seed(3), output_type="latent").images
    assert (ours - want).abs().max() <= 1e-4 * want.abs().max()
    # ComfyUI's sgm_uniform on the distilled table: timesteps 999 .. 19 evenly, looked up in the 50-entry table
    from nodegen.diffusion.schedules import get_sigmas

    sg = get_sigmas("sgm_uniform", ms, 4, 1.0)
    assert sg[:-1].tolist() == pytest.approx(ms.t_to_sigma(torch.tensor([999.0, 754.0, 509.0, 264.0])).tolist(),
                                             rel=1e-5)


def test_x0_and_zsnr():
    from diffusers.schedulers.scheduling_ddim import rescale_zero_terminal_snr

    from nodegen.diffusion.sample import model_sampling_for
    from nodegen.models.schedule import scaled_linear_alphas_cumprod

    unet = torch.nn.Module()
    model = DiffusionModel.__new__(DiffusionModel)
    model.__dict__.update(prediction_type="epsilon", alphas_cumprod=scaled_linear_alphas_cumprod(), options={},
                          patches=[], family="sd1", unet=unet)
    x0 = run("ModelSamplingDiscrete", model=model, sampling="x0", zsnr=True)["model"]
    ms = model_sampling_for(x0)
    out = torch.randn(2, 4, 3, 3)
    assert torch.equal(ms.denoised(torch.randn(2, 4, 3, 3), torch.tensor([3.0, 1.0]), out), out)
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    want = torch.cumprod(1 - rescale_zero_terminal_snr(betas), 0)
    assert torch.allclose(x0.alphas_cumprod[:-1], want[:-1], rtol=1e-6)
    assert float(x0.alphas_cumprod[-1]) == 4.8973451890853435e-08 and model.prediction_type == "epsilon"
    with pytest.raises(ValueError, match="ModelSamplingDiscrete: input 'model' is a flux"):
        flow = DiffusionModel.__new__(DiffusionModel)
        flow.__dict__.update(prediction_type="flow", family="flux")
        run("ModelSamplingDiscrete", model=flow, sampling="eps", zsnr=False)


def test_img_to_img_feeds_the_sample_unscaled_and_takes_the_output_as_the_image(sd1):
    """ComfyUI's ``img_to_img`` (IMG_TO_IMG: an x0 model whose input is not scaled by c_in): one
    Euler step from sigma_max lands exactly on what the UNet returned for the raw noisy sample."""
    model = DiffusionModel.from_unet(sd1.unet, "sd1")
    i2i = run("ModelSamplingDiscrete", model=model, sampling="img_to_img", zsnr=False)["model"]
    assert i2i.prediction_type == "img_to_img" and model.prediction_type == "epsilon"
    seen: list[torch.Tensor] = []
    hook = sd1.unet.register_forward_hook(lambda mod, args, kwargs, out: seen.append(args[0].clone()),
                                          with_kwargs=True)
    try:
        pos, neg = _conds(sd1)
        got = sample(i2i, pos, neg, {"samples": torch.zeros(1, 4, 8, 8)}, seed=3, steps=1, cfg=1.0,
                     sampler="euler", scheduler="normal", device="cpu")["samples"]
        x0_model = run("ModelSamplingDiscrete", model=model, sampling="x0", zsnr=False)["model"]
        sample(x0_model, pos, neg, {"samples": torch.zeros(1, 4, 8, 8)}, seed=3, steps=1, cfg=1.0,
               sampler="euler", scheduler="normal", device="cpu")
    finally:
        hook.remove()
    raw, scaled = seen  # the same noisy sample: as it is for img_to_img, times c_in for x0
    from nodegen.diffusion.sample import model_sampling_for

    smax = model_sampling_for(model).sigma_max
    assert torch.allclose(scaled, raw / (smax**2 + 1) ** 0.5, rtol=1e-5, atol=1e-6)
    assert raw.abs().max() > 5  # sigma_max * noise: not scaled down
    with torch.no_grad():
        want = sd1.unet(raw, torch.tensor([999.0]), encoder_hidden_states=pos[0].embeds).sample
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-5)


def test_freeu_pair_is_diffusers_apply_freeu():
    from diffusers.utils.torch_utils import apply_freeu

    from nodegen.diffusion.freeu import apply_pair

    g = torch.Generator().manual_seed(0)
    h, hsp = torch.randn(2, 8, 6, 4, generator=g), torch.randn(2, 6, 6, 4, generator=g)
    want = apply_freeu(0, h.clone(), hsp.clone(), b1=1.3, s1=0.4, b2=1.0, s2=1.0)
    got = apply_pair(h, hsp, 1.3, 0.4)
    assert torch.allclose(got[0], want[0]) and torch.allclose(got[1], want[1], atol=1e-6)


def _v2_reference(h, b):
    m = h.mean(1, keepdim=True)
    out = h.clone()
    for i in range(h.shape[0]):
        mi = (m[i] - m[i].min()) / (m[i].max() - m[i].min())
        out[i, : h.shape[1] // 2] = h[i, : h.shape[1] // 2] * ((b - 1) * mi + 1)
    return out


@pytest.mark.parametrize("node_type", ["FreeU", "FreeU_V2"])
def test_freeu_unet_matches_diffusers_code_path_with_comfyui_channels(sd1, monkeypatch, node_type):
    import copy

    from diffusers.models.unets import unet_2d_blocks
    from diffusers.utils.torch_utils import fourier_filter

    b1, b2, s1, s2 = 1.4, 1.3, 0.6, 0.5
    unet = sd1.unet
    mc = unet.config.block_out_channels[0]
    table = {4 * mc: (b1, s1), 2 * mc: (b2, s2)}
    seen = []

    def comfy_rule(resolution_idx, hidden, res_hidden, **kw):  # ComfyUI: by the channels of h
        seen.append(hidden.shape[1])
        if hidden.shape[1] not in table:
            return hidden, res_hidden
        b, s = table[hidden.shape[1]]
        if node_type == "FreeU_V2":
            hidden = _v2_reference(hidden, b)
        else:
            hidden = hidden.clone()
            hidden[:, : hidden.shape[1] // 2] *= b
        return hidden, fourier_filter(res_hidden, threshold=1, scale=s)

    g = torch.Generator().manual_seed(1)
    x, emb = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 77, unet.config.cross_attention_dim, generator=g)
    t = torch.tensor(500.0)
    ref_unet = copy.deepcopy(unet)
    ref_unet.enable_freeu(s1=s1, s2=s2, b1=b1, b2=b2)
    monkeypatch.setattr(unet_2d_blocks, "apply_freeu", comfy_rule)
    with torch.no_grad():
        want = ref_unet(x, t, encoder_hidden_states=emb).sample
        plain = unet(x, t, encoder_hidden_states=emb).sample
        model = run(node_type, model=DiffusionModel.from_unet(unet, "sd1"), b1=b1, b2=b2, s1=s1, s2=s2)["model"]
        with model.use("cpu") as u:
            got = u(x, t, encoder_hidden_states=emb).sample
        again = unet(x, t, encoder_hidden_states=emb).sample  # hooks gone after use
    assert 2 * mc in seen  # the fixture has a 2C stage: FreeU acts on it
    assert torch.allclose(got, want, atol=1e-5) and not torch.allclose(got, plain, atol=1e-3)
    assert torch.equal(again, plain)
