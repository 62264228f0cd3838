"""TAESD tiny autoencoders through VAELoader: madebyollin's files, ComfyUI's names and combined
layout, diffusers' AutoencoderTiny layout; against diffusers' own decode and encode paths
(``vae.decode(latents / vae.config.scaling_factor)`` in the pipelines, 1.0 for AutoencoderTiny)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from nodegen.models.paths import ModelPaths
from tests.support.comfy_run import run_api
from tests.support.nodes import run

SD1, FLUX = (0.18215, 0.0), (0.3611, 0.1159)  # ComfyUI's vae_scale / vae_shift for taesd and taef1


def tiny(latent_channels: int, seed: int):
    import nodegen.compat.torchvision as tv

    tv.apply()
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    vae = AutoencoderTiny(latent_channels=latent_channels)
    with torch.no_grad():
        for p in vae.parameters():
            p.add_(torch.randn_like(p) * 0.02)  # default init, made distinct per seed
    return vae.eval()


def madebyollin(vae, part: str) -> dict[str, torch.Tensor]:
    """madebyollin's bare nn.Sequential keys (the decoder's module 0 is its clamp)."""
    shift = 1 if part == "decoder" else 0
    out = {}
    for key, value in getattr(vae, part).state_dict().items():
        index, _, rest = key[len("layers."):].partition(".")
        out[f"{int(index) + shift}.{rest}"] = value.clone()
    return out


@pytest.fixture(scope="module")
def tinies():
    return {"taesd": tiny(4, 1), "taef1": tiny(16, 2)}


@pytest.fixture
def models(tmp_path, tinies):
    approx = tmp_path / "models" / "vae_approx"
    approx.mkdir(parents=True)
    torch.save(madebyollin(tinies["taesd"], "decoder"), approx / "taesd_decoder.pth")
    save_file(madebyollin(tinies["taesd"], "encoder"), str(approx / "taesd_encoder.safetensors"))
    save_file(madebyollin(tinies["taef1"], "decoder"), str(approx / "taef1_decoder.safetensors"))
    (tmp_path / "in").mkdir()
    return tmp_path / "models"


def ctx_for(models):
    from types import SimpleNamespace

    from nodegen.models.manager import ModelManager

    return SimpleNamespace(device="cpu", models=ModelManager(device="cpu"),
                           paths=ModelPaths([models], use_env=False, use_config=False))


def test_comfyui_names_are_offered_while_their_files_are_there(models):
    paths = ModelPaths([models], use_env=False, use_config=False)
    names = paths.list("vae")
    assert {"taesd", "taef1"} <= set(names) and not {"taesdxl", "taesd3"} & set(names)
    assert paths.resolve("vae", "taesd") == models / "vae_approx" / "taesd_decoder.pth"
    assert paths.resolve("vae", "taesdxl") is None


def test_sd1_taesd_decodes_and_encodes_as_diffusers_does(models, tinies):
    ctx = ctx_for(models)
    vae = run("VAELoader", ctx, vae_name="taesd")["vae"]
    assert vae.parts == ("encoder", "decoder") and vae.variant == "taesd"
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))  # SD1's scaled latents
    ours = run("VAEDecode", ctx, samples={"samples": latent}, vae=vae)["image"]
    ref = tinies["taesd"]
    with torch.no_grad():  # the pipelines' decode: latents / vae.config.scaling_factor (1.0)
        theirs = ref.decode(latent / ref.config.scaling_factor).sample
    theirs = (theirs / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)
    assert float((ours - theirs).abs().max()) < 1e-5
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(4))
    encoded = run("VAEEncode", ctx, pixels=image, vae=vae)["latent"]["samples"]
    with torch.no_grad():  # the pipelines' encode: retrieve_latents(...) * scaling_factor (1.0)
        want = ref.encode(image.permute(0, 3, 1, 2) * 2 - 1).latents * ref.config.scaling_factor
    assert float((encoded - want).abs().max()) < 1e-5


def test_flux_taef1_takes_raw_latents_as_comfyui_scales_them(models, tinies):
    ctx = ctx_for(models)
    vae = run("VAELoader", ctx, vae_name="taef1")["vae"]
    assert vae.parts == ("decoder",) and vae.latent_channels == 16
    raw = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(5))  # Flux LATENTs are raw
    ours = run("VAEDecode", ctx, samples={"samples": raw}, vae=vae)["image"]
    scale, shift = FLUX
    with torch.no_grad():  # ComfyUI's TAESD.decode: taesd_decoder((x - vae_shift) * vae_scale)
        theirs = tinies["taef1"].decode((raw - shift) * scale).sample
    assert float((ours - (theirs / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)).abs().max()) < 1e-5
    with pytest.raises(ValueError, match="holds only the decoder: put the matching taef1_encoder"):
        run("VAEEncode", ctx, pixels=torch.rand(1, 64, 64, 3), vae=vae)


def test_combined_and_diffusers_layouts_load_the_same(tmp_path, tinies):
    ref = tinies["taesd"]
    vae_dir = tmp_path / "models" / "vae"
    vae_dir.mkdir(parents=True)
    combined = {f"taesd_{part}.{k}": v for part in ("encoder", "decoder") for k, v in madebyollin(ref, part).items()}
    save_file(combined, str(vae_dir / "my_taesd.safetensors"))
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(vae_dir / "tiny-diffusers.safetensors"))
    ctx = ctx_for(tmp_path / "models")
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(6))
    images = [run("VAEDecode", ctx, samples={"samples": latent},
                  vae=run("VAELoader", ctx, vae_name=name)["vae"])["image"]
              for name in ("my_taesd.safetensors", "tiny-diffusers.safetensors")]
    with torch.no_grad():
        want = (ref.decode(latent).sample / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)
    for image in images:
        assert float((image - want).abs().max()) < 1e-5
    xl = run("VAELoader", ctx, vae_name="my_taesd.safetensors", latent_format="sdxl")["vae"]
    assert xl.variant == "taesdxl" and xl.scaling_factor == 0.13025


def test_a_16_channel_file_must_say_its_family(tmp_path, tinies):
    vae_dir = tmp_path / "models" / "vae"
    vae_dir.mkdir(parents=True)
    save_file(madebyollin(tinies["taef1"], "decoder"), str(vae_dir / "tiny16.safetensors"))
    with pytest.raises(ValueError, match="name it taesd3_decoder.* .* or taef1_decoder"):
        run("VAELoader", ctx_for(tmp_path / "models"), vae_name="tiny16.safetensors")


def test_a_comfyui_workflow_with_vaeloader_taesd_runs(models, tmp_path):
    api = {"1": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
           "2": {"class_type": "VAELoader", "inputs": {"vae_name": "taesd"}},
           "3": {"class_type": "VAEDecode", "inputs": {"samples": ["1", 0], "vae": ["2", 0]}},
           "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "tiny"}}}
    result = run_api(api, models, tmp_path)
    assert [p.rsplit("/", 1)[-1] for p in result.paths] == ["tiny_00001.png"]
    missing = run_api({**api, "2": {"class_type": "VAELoader", "inputs": {"vae_name": "taesd3"}}}, models,
                      tmp_path, check=False)
    assert not missing.ok and "vae_name" in " ".join(str(p) for p in missing.problems + missing.failures)
