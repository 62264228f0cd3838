"""T2I-Adapter (SD1.5 full_adapter, SDXL full_adapter_xl) loaded by the ControlNet loader from the
original TencentARC layout and the diffusers layout, applied with ControlNetApplyAdvanced;
oracle: diffusers' StableDiffusionAdapterPipeline / StableDiffusionXLAdapterPipeline."""

from __future__ import annotations

import re

import pytest
import torch
from safetensors.torch import save_file

from nodegen.compat import torchvision as _tv
from nodegen.diffusion.sample import Steps, sample
from nodegen.models.control_files import load_control as load_controlnet
from nodegen.models.objects import DiffusionModel, TextEncoder
from tests.support.fixtures import fixture

_tv.apply()
torch.set_num_threads(1)
STEPS = 4


def _adapter(channels, xl: bool, seed: int):
    from diffusers import T2IAdapter

    torch.manual_seed(seed)
    a = T2IAdapter(in_channels=3, channels=channels, num_res_blocks=2, downscale_factor=16 if xl else 8,
                   adapter_type="full_adapter_xl" if xl else "full_adapter")
    with torch.no_grad():
        for p in a.parameters():
            p.mul_(3.0)  # features large enough to matter on a tiny UNet
    return a.eval()


def _original_layout(sd: dict, blocks: int) -> dict:
    """diffusers keys -> TencentARC keys (``body.<stage * blocks + j>``), written out independently."""
    out = {}
    for k, v in sd.items():
        k = k.removeprefix("adapter.")
        m = re.match(r"body\.(\d+)\.resnets\.(\d+)\.(.*)$", k)
        if m:
            k = f"body.{int(m.group(1)) * blocks + int(m.group(2))}.{m.group(3)}"
        m = re.match(r"body\.(\d+)\.in_conv\.(.*)$", k)
        if m:
            k = f"body.{int(m.group(1)) * blocks}.in_conv.{m.group(2)}"
        out[k] = v.contiguous()
    return out


def _image():
    img = torch.zeros(1, 64, 64, 3)
    img[:, 12:52, 20:44] = torch.tensor([0.9, 0.2, 0.5])
    return img


def _latents(sched, seed):
    sched.set_timesteps(STEPS)
    smax = float(sched.sigmas[0])
    return torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(seed)) * ((smax**2 + 1) ** 0.5 / smax)


@pytest.mark.parametrize("layout", ["original", "diffusers"])
def test_sd15_adapter_matches_diffusers(tmp_path_factory, tmp_path, layout):
    from diffusers import EulerDiscreteScheduler, StableDiffusionAdapterPipeline

    from nodegen.nodes.controlnet import controlnet_apply_advanced

    fx = fixture("sd1", tmp_path_factory.mktemp("sd1"))
    adapter = _adapter([32, 64], xl=False, seed=11)
    sd = adapter.state_dict()
    save_file(_original_layout(sd, 2) if layout == "original" else {k: v.contiguous() for k, v in sd.items()},
              str(tmp_path / "t2i.safetensors"))
    loaded = load_controlnet(tmp_path / "t2i.safetensors")
    assert type(loaded).__name__ == "T2IAdapterModel" and loaded.family == "sd1"
    model = DiffusionModel.from_unet(fx.unet, "sd1", "epsilon")
    te = TextEncoder.from_components([fx.tokenizer], [fx.text_encoder], "sd1")
    pos0, neg0 = te.encode("a photo of a cat"), te.encode("blurry")

    def ours(strength):
        pos, neg = controlnet_apply_advanced.run(None, positive=pos0, negative=neg0, control_net=loaded,
                                                 image=_image(), strength=strength, start_percent=0.0,
                                                 end_percent=1.0)
        return sample(model, pos, neg, {"samples": torch.zeros(1, 4, 8, 8)}, 3, Steps(STEPS), 6.0,
                  device="cpu").latent["samples"]

    sched = EulerDiscreteScheduler.from_config(fx.scheduler.config, timestep_spacing="linspace")
    pipe = StableDiffusionAdapterPipeline(vae=fx.vae, text_encoder=fx.text_encoder, tokenizer=fx.tokenizer,
                                          unet=fx.unet, adapter=adapter, scheduler=sched, safety_checker=None,
                                          feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    ref = pipe(prompt_embeds=pos0[0].embeds, negative_prompt_embeds=neg0[0].embeds,
               image=_image().permute(0, 3, 1, 2), adapter_conditioning_scale=0.7, num_inference_steps=STEPS,
               guidance_scale=6.0, height=64, width=64, latents=_latents(sched, 3),
               generator=torch.Generator().manual_seed(3), output_type="latent").images
    lat = ours(0.7)
    assert (lat - ref).abs().max() <= 1e-4 * ref.abs().max(), float((lat - ref).abs().max())
    assert (ours(0.0) - lat).abs().max() > 1e-2 * ref.abs().max()  # the adapter mattered


def test_sdxl_adapter_matches_diffusers(tmp_path_factory, tmp_path):
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLAdapterPipeline

    from nodegen.nodes.controlnet import controlnet_apply_advanced

    fx = fixture("sdxl", tmp_path_factory.mktemp("sdxl"))
    adapter = _adapter([64, 128], xl=True, seed=12)
    adapter.save_pretrained(str(tmp_path / "t2i-xl"))
    loaded = load_controlnet(tmp_path / "t2i-xl")
    save_file({k: v.contiguous() for k, v in adapter.state_dict().items()}, str(tmp_path / "xl.safetensors"))
    assert load_controlnet(tmp_path / "xl.safetensors").family == loaded.family == "sdxl"
    model = DiffusionModel.from_unet(fx.unet, "sdxl", "epsilon")
    te = TextEncoder.from_components([fx.tokenizer, fx.tokenizer_2], [fx.text_encoder, fx.text_encoder_2], "sdxl")
    pos0, neg0 = te.encode("a castle"), te.encode("low quality")
    pos, neg = controlnet_apply_advanced.run(None, positive=pos0, negative=neg0, control_net=loaded, image=_image(),
                                             strength=0.8, start_percent=0.0, end_percent=1.0)
    lat = sample(model, pos, neg, {"samples": torch.zeros(1, 4, 8, 8)}, 5, Steps(STEPS), 5.0,
                  device="cpu").latent["samples"]
    sched = EulerDiscreteScheduler.from_config(fx.scheduler.config, timestep_spacing="linspace")
    pipe = StableDiffusionXLAdapterPipeline(vae=fx.vae, text_encoder=fx.text_encoder, text_encoder_2=fx.text_encoder_2,
                                            tokenizer=fx.tokenizer, tokenizer_2=fx.tokenizer_2, unet=fx.unet,
                                            adapter=adapter, scheduler=sched, force_zeros_for_empty_prompt=False)
    pipe.set_progress_bar_config(disable=True)
    ref = pipe(prompt_embeds=pos0[0].embeds, pooled_prompt_embeds=pos0[0].pooled,
               negative_prompt_embeds=neg0[0].embeds, negative_pooled_prompt_embeds=neg0[0].pooled,
               image=_image().permute(0, 3, 1, 2), adapter_conditioning_scale=0.8, num_inference_steps=STEPS,
               guidance_scale=5.0, height=64, width=64, latents=_latents(sched, 5),
               generator=torch.Generator().manual_seed(5), output_type="latent").images
    assert (lat - ref).abs().max() <= 1e-4 * ref.abs().max(), float((lat - ref).abs().max())
