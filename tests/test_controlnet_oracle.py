"""Oracle: sampling with our ControlNet nodes == diffusers' StableDiffusionControlNetPipeline
(single and multi-ControlNet) on the same random-weight components, seed, conditioning scale and
control_guidance_start/end. Max abs pixel difference <= 1e-3 (fp32 CPU); latents compared too.

Range mapping: diffusers keeps ControlNet step i when ``i/N >= start`` and ``(i+1)/N <= end``;
we (like ComfyUI) when ``start <= progress <= end`` with progress the fraction of the schedule
done at the step's sigma. The tests pick ranges where both select the same steps and assert
that they do (and that the selection is a proper subset, so the range matters).
"""

from __future__ import annotations

import pytest
import torch

from nodegen.models.controlnet import ControlNetModel
from nodegen.models.objects import DiffusionModel, TextEncoder, VAEModel
from tests.support.controlnet_fixtures import build_controlnet
from tests.support.fixtures import fixture
from tests.support.sampling import sample

torch.set_num_threads(1)
TOL = 1e-3
STEPS = 4


@pytest.fixture(scope="module")
def sd1(tmp_path_factory):
    fx = fixture("sd1", tmp_path_factory.mktemp("sd1"))
    nets = [build_controlnet(fx.unet, seed=s) for s in (5, 6)]
    return fx, nets


def control_images():
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    edges = torch.zeros(1, 64, 64, 3)
    edges[:, 16:48, 16:48] = 1.0
    edges[:, 20:44, 20:44] = 0.0
    grad = torch.stack([xx, yy, 1 - xx], -1)[None]
    return edges, grad


def diffusers_keep(start, end, n):
    return [not (i / n < start or (i + 1) / n > end) for i in range(n)]


def our_keep(model, start, end, sigmas):
    from nodegen.diffusion.sample import model_sampling_for

    ms = model_sampling_for(model)
    prog = [max(0.0, min(1.0, 1 - float(ms.sigma_to_t(float(s))) / (ms.num_timesteps - 1)))
            for s in sigmas[:-1]]
    return [start <= p <= end for p in prog]


def run_both(fx, nets, images, scales, starts, ends, cfg=7.5, seed=77):
    from diffusers import EulerDiscreteScheduler, StableDiffusionControlNetPipeline

    from nodegen.nodes.controlnet import controlnet_apply_advanced

    model = DiffusionModel.from_unet(fx.unet, fx.family, fx.prediction)
    te = TextEncoder.from_components([fx.tokenizer], [fx.text_encoder], fx.family)
    vae = VAEModel.from_vae(fx.vae)
    pos, neg = te.encode("a photo of a cat"), te.encode("blurry, ugly")
    for net, img, sc, st, en in zip(nets, images, scales, starts, ends, strict=True):
        pos, neg = controlnet_apply_advanced.run(None, positive=pos, negative=neg,
                                                 control_net=ControlNetModel(net, "sd1"), image=img,
                                                 strength=sc, start_percent=st, end_percent=en)
    out = sample(model, pos, neg, {"samples": torch.zeros(1, 4, 8, 8)}, seed=seed, steps=STEPS,
                 cfg=cfg, sampler="euler", scheduler="normal", device="cpu")
    ours = vae.decode(out["samples"], device="cpu").permute(0, 3, 1, 2)

    sched = EulerDiscreteScheduler.from_config(fx.scheduler.config, timestep_spacing="linspace")
    pipe = StableDiffusionControlNetPipeline(
        vae=fx.vae, text_encoder=fx.text_encoder, tokenizer=fx.tokenizer, unet=fx.unet,
        controlnet=nets if len(nets) > 1 else nets[0], scheduler=sched, safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    sched.set_timesteps(STEPS)
    # diffusers' Euler starts from noise * sigma_max; ours from noise * sqrt(1 + sigma_max^2)
    ratio = (float(sched.sigmas[0]) ** 2 + 1) ** 0.5 / float(sched.init_noise_sigma)
    noise = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(seed)) * ratio
    single = len(nets) == 1
    args = dict(prompt_embeds=pos[0].embeds, negative_prompt_embeds=neg[0].embeds,
                image=[i.permute(0, 3, 1, 2) for i in images] if not single else images[0].permute(0, 3, 1, 2),
                num_inference_steps=STEPS, guidance_scale=cfg, height=64, width=64,
                controlnet_conditioning_scale=scales if not single else scales[0],
                control_guidance_start=starts if not single else starts[0],
                control_guidance_end=ends if not single else ends[0])
    ref = pipe(**args, latents=noise.clone(), generator=torch.Generator().manual_seed(seed),
               output_type="pt").images
    ref_lat = pipe(**args, latents=noise.clone(), generator=torch.Generator().manual_seed(seed),
                   output_type="latent").images
    scale = ref_lat.abs().max()
    assert (out["samples"] - ref_lat).abs().max() <= 1e-4 * scale, "latents differ"
    sigmas = sched.sigmas
    return ours, ref, model, sigmas


def no_control(fx, seed=77, cfg=7.5):
    model = DiffusionModel.from_unet(fx.unet, fx.family, fx.prediction)
    te = TextEncoder.from_components([fx.tokenizer], [fx.text_encoder], fx.family)
    out = sample(model, te.encode("a photo of a cat"), te.encode("blurry, ugly"),
                 {"samples": torch.zeros(1, 4, 8, 8)}, seed=seed, steps=STEPS, cfg=cfg,
                 sampler="euler", scheduler="normal", device="cpu")
    return VAEModel.from_vae(fx.vae).decode(out["samples"], device="cpu").permute(0, 3, 1, 2)


def test_single_controlnet_matches_diffusers(sd1):
    fx, nets = sd1
    edges, _ = control_images()
    ours, ref, _m, _s = run_both(fx, nets[:1], [edges], [0.9], [0.0], [1.0])
    assert ours.shape == ref.shape == (1, 3, 64, 64)
    assert (ours - ref).abs().max() <= TOL
    # the control matters (zero layers were randomised): far from the uncontrolled picture
    assert (ours - no_control(fx)).abs().max() > 50 * TOL


def test_controlnet_range_matches_diffusers(sd1):
    fx, nets = sd1
    edges, _ = control_images()
    ours, ref, model, sigmas = run_both(fx, nets[:1], [edges], [1.0], [0.2], [0.8])
    keep = diffusers_keep(0.2, 0.8, STEPS)
    assert keep == our_keep(model, 0.2, 0.8, sigmas) and any(keep) and not all(keep)
    assert (ours - ref).abs().max() <= TOL
    full, _, _, _ = run_both(fx, nets[:1], [edges], [1.0], [0.0], [1.0])
    assert (full - ours).abs().max() > 10 * TOL  # the range changed the result


def test_multi_controlnet_matches_diffusers(sd1):
    fx, nets = sd1
    edges, grad = control_images()
    ours, ref, model, sigmas = run_both(fx, nets, [edges, grad], [0.8, 0.5], [0.0, 0.2], [1.0, 0.8])
    assert (ours - ref).abs().max() <= TOL
    one, _, _, _ = run_both(fx, nets[:1], [edges], [0.8], [0.0], [1.0])
    assert (one - ours).abs().max() > 10 * TOL  # the second ControlNet contributed


def test_oracle_detects_a_wrong_strength(sd1):
    """The comparison is sensitive: our strength 2% off fails the latent check."""
    import nodegen.nodes.controlnet as C

    fx, nets = sd1
    edges, _ = control_images()
    orig = C.controlnet_apply_advanced

    class Off:
        @staticmethod
        def run(ctx, **kw):
            kw["strength"] *= 0.98
            return orig.run(ctx, **kw)

    C.controlnet_apply_advanced = Off
    try:
        with pytest.raises(AssertionError, match="latents differ"):
            run_both(fx, nets[:1], [edges], [0.9], [0.0], [1.0])
    finally:
        C.controlnet_apply_advanced = orig
