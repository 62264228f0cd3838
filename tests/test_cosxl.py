"""Continuous-time SDXL checkpoints as ComfyUI reads them: a file with ComfyUI's ``edm_vpred``
marker (CosXL) loads as EDM timing with v-prediction and the file's sigma range, and its
InstructPix2Pix form (CosXL edit) takes the image latents in the model's scale: equal to diffusers'
StableDiffusionXLInstructPix2PixPipeline with ``is_cosxl_edit`` and EDMEulerScheduler. A file with
``edm_mean`` / ``edm_std`` (Playground v2.5) loads as EDM with Playground's latent normalisation."""

from __future__ import annotations

import logging

import pytest
import torch

from nodegen.models.loader import load_checkpoint
from nodegen.models.objects import VAEModel
from tests.support.fixtures import _randomize_, fixture
from tests.support.nodes import run
from tests.support.sampling import sample

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    return fixture("sdxl", tmp_path_factory.mktemp("sdxl"))


def _ip2p_unet(fx):
    from diffusers import UNet2DConditionModel

    cfg = dict(fx.unet.config)
    cfg["in_channels"] = 8
    torch.manual_seed(31)
    unet = UNet2DConditionModel.from_config(cfg)
    _randomize_(unet, 32)
    return unet.eval()


def _checkpoint(fx, unet, path, markers: dict):
    from safetensors.torch import save_file

    from nodegen.models.ldm_export import convert_pipeline_to_ldm

    sd = convert_pipeline_to_ldm(unet, fx.vae, fx.text_encoder, "sdxl", text_encoder_2=fx.text_encoder_2)
    save_file({**{k: v.contiguous() for k, v in sd.items()}, **markers}, str(path))
    return path


def test_a_cosxl_marker_means_edm_v_prediction_with_the_files_sigmas(sdxl, tmp_path, caplog):
    path = _checkpoint(sdxl, sdxl.unet, tmp_path / "cosxl.safetensors",
                       {"edm_vpred.sigma_max": torch.tensor(120.0), "edm_vpred.sigma_min": torch.tensor(0.002)})
    with caplog.at_level(logging.WARNING):
        model, _, _ = load_checkpoint(path)
    assert model.options["continuous_sampling"] == {"timing": "edm", "prediction_type": "v_prediction",
                                                    "sigma_min": pytest.approx(0.002), "sigma_max": 120.0,
                                                    "sigma_data": 1.0}
    assert "edm_vpred" not in caplog.text  # read, not reported as unused
    plain, _, _ = load_checkpoint(path, prediction="epsilon")  # an explicit choice wins
    assert "continuous_sampling" not in plain.options
    play = _checkpoint(sdxl, sdxl.unet, tmp_path / "playground.safetensors",
                       {"edm_mean": torch.zeros(1, 4, 1, 1), "edm_std": torch.ones(1, 4, 1, 1)})
    model, _, _ = load_checkpoint(play)
    assert model.options["latent_format"] == "sdxl_playground_2_5"
    assert model.options["continuous_sampling"]["prediction_type"] == "edm"
    assert (model.options["continuous_sampling"]["sigma_max"], model.options["continuous_sampling"]["sigma_data"]) == (80.0, 0.5)


def test_cosxl_edit_equals_the_sdxl_instruct_pix2pix_pipeline_for_cosxl(sdxl, tmp_path):
    from diffusers import EDMEulerScheduler, StableDiffusionXLInstructPix2PixPipeline

    unet = _ip2p_unet(sdxl)
    path = _checkpoint(sdxl, unet, tmp_path / "cosxl_edit.safetensors",
                       {"edm_vpred.sigma_max": torch.tensor(120.0), "edm_vpred.sigma_min": torch.tensor(0.002)})
    model, clip, _ = load_checkpoint(path)
    vae = VAEModel.from_vae(sdxl.vae)
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(41))
    pos, neg = clip.encode("make it red"), clip.encode("blurry")
    out = run("InstructPixToPixConditioning", positive=pos, negative=neg, vae=vae, pixels=image)
    got = sample(model, out["positive"], out["negative"], out["latent"], seed=8, steps=3, cfg=5.0,
                 sampler="euler", scheduler="karras", device="cpu")
    ours = vae.decode(got["samples"], device="cpu").permute(0, 3, 1, 2)

    sched = EDMEulerScheduler(sigma_min=0.002, sigma_max=120.0, sigma_data=1.0, prediction_type="v_prediction",
                              sigma_schedule="karras")
    pipe = StableDiffusionXLInstructPix2PixPipeline(vae=sdxl.vae, text_encoder=sdxl.text_encoder,
                                                    text_encoder_2=sdxl.text_encoder_2, tokenizer=sdxl.tokenizer,
                                                    tokenizer_2=sdxl.tokenizer_2, unet=unet, scheduler=sched,
                                                    is_cosxl_edit=True)
    pipe.set_progress_bar_config(disable=True)
    latents = out["positive"][0].extras["concat_latent_image"]
    ref = pipe(image=latents / sdxl.vae.config.scaling_factor,  # 4 channels: the image's latents, unscaled
               prompt="make it red", negative_prompt="blurry", num_inference_steps=3, guidance_scale=5.0,
               image_guidance_scale=1.0, height=64, width=64, generator=torch.Generator().manual_seed(8),
               output_type="pt").images
    assert float((ours - ref).abs().max()) <= 1e-3
    # the same file without the marker takes unscaled image latents (diffusers' plain InstructPix2Pix)
    model.options.pop("ip2p_image_scaled")
    other = sample(model, out["positive"], out["negative"], out["latent"], seed=8, steps=3, cfg=5.0,
                   sampler="euler", scheduler="karras", device="cpu")
    assert float((vae.decode(other["samples"], device="cpu").permute(0, 3, 1, 2) - ref).abs().max()) > 1e-2
