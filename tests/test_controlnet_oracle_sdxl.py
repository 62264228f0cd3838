"""Oracle: an SDXL ControlNet loaded from an original-layout single file, sampled with our nodes,
== diffusers' StableDiffusionXLControlNetPipeline over the in-memory ControlNet (pooled
text_embeds + size time_ids reach the ControlNet too). Max abs pixel diff <= 1e-3 fp32 CPU."""

from __future__ import annotations

import pytest
import torch

from nodegen.models.controlnet import load_controlnet
from nodegen.models.objects import DiffusionModel, TextEncoder, VAEModel
from tests.support.controlnet_fixtures import build_controlnet, save_controlnet
from tests.support.fixtures import fixture
from tests.support.sampling import sample

torch.set_num_threads(1)
STEPS = 4


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    fx = fixture("sdxl", tmp_path_factory.mktemp("sdxl"))
    net = build_controlnet(fx.unet, seed=9)
    files = save_controlnet(net, tmp_path_factory.mktemp("cn"), "cn-sdxl")
    return fx, net, files


def test_sdxl_controlnet_matches_diffusers(sdxl):
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLControlNetPipeline

    from nodegen.nodes.controlnet import controlnet_apply_advanced

    fx, net, files = sdxl
    loaded = load_controlnet(files.single_file)
    assert loaded.family == "sdxl"
    img = torch.zeros(1, 64, 64, 3)
    img[:, 12:52, 20:44] = 1.0
    model = DiffusionModel.from_unet(fx.unet, "sdxl", "epsilon")
    te = TextEncoder.from_components([fx.tokenizer, fx.tokenizer_2], [fx.text_encoder, fx.text_encoder_2], "sdxl")
    pos0, neg0 = te.encode("a castle on a hill"), te.encode("low quality")

    def ours(strength):
        pos, neg = controlnet_apply_advanced.run(None, positive=pos0, negative=neg0, control_net=loaded,
                                                 image=img, strength=strength, start_percent=0.0,
                                                 end_percent=1.0)
        return sample(model, pos, neg, {"samples": torch.zeros(1, 4, 8, 8)}, seed=3, steps=STEPS, cfg=5.0,
                      sampler="euler", scheduler="normal", device="cpu")["samples"]

    lat = ours(0.8)
    pipe = StableDiffusionXLControlNetPipeline(
        vae=fx.vae, text_encoder=fx.text_encoder, text_encoder_2=fx.text_encoder_2, tokenizer=fx.tokenizer,
        tokenizer_2=fx.tokenizer_2, unet=fx.unet, controlnet=net,
        scheduler=EulerDiscreteScheduler.from_config(fx.scheduler.config, timestep_spacing="linspace"),
        force_zeros_for_empty_prompt=False)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler.set_timesteps(STEPS)
    smax = float(pipe.scheduler.sigmas[0])
    gen = torch.Generator().manual_seed(3)
    latents = torch.randn((1, 4, 8, 8), generator=gen) * ((smax**2 + 1) ** 0.5 / smax)

    def ref(output_type):
        return pipe(prompt_embeds=pos0[0].embeds, pooled_prompt_embeds=pos0[0].pooled,
                    negative_prompt_embeds=neg0[0].embeds, negative_pooled_prompt_embeds=neg0[0].pooled,
                    image=img.permute(0, 3, 1, 2), controlnet_conditioning_scale=0.8,
                    num_inference_steps=STEPS, guidance_scale=5.0, height=64, width=64,
                    latents=latents.clone(), generator=torch.Generator().manual_seed(3),
                    output_type=output_type).images

    ref_lat = ref("latent")
    assert (lat - ref_lat).abs().max() <= 1e-4 * ref_lat.abs().max()
    vae = VAEModel.from_vae(fx.vae)
    pixels = vae.decode(lat, device="cpu").permute(0, 3, 1, 2)
    assert (pixels - ref("pt")).abs().max() <= 1e-3
    # and the control mattered
    assert (ours(0.0) - lat).abs().max() > 1e-2 * ref_lat.abs().max()
