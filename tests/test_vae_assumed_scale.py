"""A standalone VAE file without metadata, loaded with latent_format "auto" (every imported ComfyUI
workflow), has an assumed scale (0.18215): the VAE nodes and samplers then use the scale of the
latent's model family, so an SDXL graph with such a VAE gives the same images as with the
checkpoint's own VAE or latent_format "sdxl" (nodegen.diffusion.latent_scale)."""

from __future__ import annotations

import os

import pytest
import torch

from nodegen.clip.guidance import ClipGuidance
from nodegen.kernel.registry import default_registry
from nodegen.models.loader import load_vae
from nodegen.runtime.engine import Engine
from tests.support.fixtures import fixture

torch.set_num_threads(1)
REG = default_registry()
VAE_FILE = "sdxl_vae.safetensors"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    from safetensors.torch import save_file

    xl = fixture("sdxl", tmp_path_factory.mktemp("sdxl"))
    sd1 = fixture("sd1", tmp_path_factory.mktemp("sd1"))
    r = tmp_path_factory.mktemp("models")
    for kind in ("checkpoints", "vae"):
        (r / kind).mkdir()
    os.symlink(xl.single_file, r / "checkpoints" / "tiny-sdxl.safetensors")
    os.symlink(sd1.single_file, r / "checkpoints" / "tiny-sd1.safetensors")
    vae = {k.removeprefix("first_stage_model."): v for k, v in xl.ldm_state_dict.items()
           if k.startswith("first_stage_model.")}
    save_file(vae, str(r / "vae" / VAE_FILE))  # no metadata, like sdxl_vae.safetensors
    save_file(vae, str(r / "vae" / "with-metadata.safetensors"), metadata={"scaling_factor": "0.18215"})
    return r


def _graph(ckpt: str, formats: dict[str, str], img2img: tuple[str, ...] = ()) -> dict:
    """CheckpointLoader -> KSampler -> VAEDecode with the checkpoint's VAE ("ckpt") and one
    VAELoader per entry of ``formats`` (name -> latent_format); the VAEs named in ``img2img`` also
    encode the txt2img picture for a second KSampler (denoise 0.5) and decodes that."""
    nodes: dict = {
        "ckpt": {"type": "CheckpointLoader", "inputs": {"ckpt_name": ckpt}},
        "pos": {"type": "CLIPTextEncode", "inputs": {"clip": {"from": ["ckpt", "clip"]}, "text": "a cat"}},
        "neg": {"type": "CLIPTextEncode", "inputs": {"clip": {"from": ["ckpt", "clip"]}, "text": ""}},
        "empty": {"type": "EmptyLatentImage", "inputs": {"width": 32, "height": 32, "batch_size": 1}},
    }

    def ksampler(latent, denoise):
        return {"type": "KSampler", "inputs": {
            "model": {"from": ["ckpt", "model"]}, "seed": 3, "steps": 2, "cfg": 4.0, "sampler_name": "euler",
            "scheduler": "normal", "positive": {"from": ["pos", "conditioning"]},
            "negative": {"from": ["neg", "conditioning"]}, "latent_image": latent, "denoise": denoise}}

    nodes["t2i"] = ksampler({"from": ["empty", "latent"]}, 1.0)
    nodes["dec_ckpt"] = {"type": "VAEDecode", "inputs": {"samples": {"from": ["t2i", "latent"]},
                                                          "vae": {"from": ["ckpt", "vae"]}}}
    for name, fmt in formats.items():
        nodes[f"vae_{name}"] = {"type": "VAELoader", "inputs": {"vae_name": VAE_FILE, "latent_format": fmt}}
        vae = {"from": [f"vae_{name}", "vae"]}
        nodes[f"dec_{name}"] = {"type": "VAEDecode", "inputs": {"samples": {"from": ["t2i", "latent"]}, "vae": vae}}
        if name in img2img:
            nodes[f"enc_{name}"] = {"type": "VAEEncode", "inputs": {"pixels": {"from": ["dec_ckpt", "image"]},
                                                                     "vae": vae}}
            nodes[f"i2i_{name}"] = ksampler({"from": [f"enc_{name}", "latent"]}, 0.5)
            nodes[f"i2i_dec_{name}"] = {"type": "VAEDecode", "inputs": {
                "samples": {"from": [f"i2i_{name}", "latent"]}, "vae": vae}}
    return {"format": "nodegen-workflow", "version": 1, "nodes": nodes}


@pytest.fixture(scope="module")
def runs(root, tmp_path_factory):
    engine = Engine(models=root, output_dir=tmp_path_factory.mktemp("out"), device="cpu")
    out = {}
    for ckpt, fmt in (("tiny-sdxl.safetensors", "sdxl"), ("tiny-sd1.safetensors", "sd1/sd2")):
        wf = _graph(ckpt, {"auto": "auto", "explicit": fmt, "wrong": "sdxl" if fmt != "sdxl" else "sd1/sd2"},
                    img2img=("auto", "explicit", "wrong") if fmt == "sdxl" else ("auto", "explicit"))
        res = engine.run(wf, targets=list(wf["nodes"]))
        assert res.ok, (res.failures, res.plan.problems)
        out[ckpt] = res
    return out


def test_sdxl_txt2img_with_an_auto_vae_file_decodes_at_the_sdxl_scale(runs):
    res = runs["tiny-sdxl.safetensors"]
    assert res.output("vae_auto", "vae").scale_assumed
    assert res.output("t2i", "latent")["family"] == "sdxl"
    own, auto, explicit = (res.output(f"dec_{n}", "image") for n in ("ckpt", "auto", "explicit"))
    assert torch.equal(auto, own)
    assert torch.equal(auto, explicit)
    # an explicit (wrong) choice is never overridden: latent_format "sd1/sd2" decodes at 0.18215
    wrong = res.output("dec_wrong", "image")
    vae = res.output("vae_wrong", "vae")
    assert not vae.scale_assumed and vae.scaling_factor == 0.18215
    assert torch.equal(wrong, vae.decode(res.output("t2i", "latent")["samples"]))
    assert (wrong - auto).abs().max() > 1e-3


def test_sdxl_img2img_with_an_auto_vae_file_equals_latent_format_sdxl(runs):
    res = runs["tiny-sdxl.safetensors"]
    enc = res.output("enc_auto", "latent")
    assert enc["vae_scale"] == 0.18215  # the scale it assumed, recorded
    assert res.output("enc_explicit", "latent")["vae_scale"] == 0.13025  # the explicit scale, recorded
    assert "vae_scale" not in res.output("i2i_auto", "latent")  # rescaled once, then in the model's scale
    torch.testing.assert_close(res.output("i2i_auto", "latent")["samples"],
                               res.output("i2i_explicit", "latent")["samples"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(res.output("i2i_dec_auto", "image"), res.output("i2i_dec_explicit", "image"),
                               atol=1e-4, rtol=1e-4)
    assert (res.output("i2i_dec_wrong", "image") - res.output("i2i_dec_auto", "image")).abs().max() > 1e-3


def test_sd1_with_the_same_auto_vae_file_is_unchanged(runs):
    res = runs["tiny-sd1.safetensors"]
    assert res.output("t2i", "latent")["family"] == "sd1"
    vae = res.output("vae_auto", "vae")
    assert vae.scaling_factor == 0.18215
    auto, explicit = res.output("dec_auto", "image"), res.output("dec_explicit", "image")
    assert torch.equal(auto, explicit)
    assert torch.equal(auto, vae.decode(res.output("t2i", "latent")["samples"]))
    assert torch.equal(res.output("i2i_auto", "latent")["samples"], res.output("i2i_explicit", "latent")["samples"])
    assert torch.equal(res.output("i2i_dec_auto", "image"), res.output("i2i_dec_explicit", "image"))
    # latent_format "sdxl" on an SD1 model is the user's choice, kept
    assert res.output("vae_wrong", "vae").scaling_factor == 0.13025
    assert (res.output("dec_wrong", "image") - auto).abs().max() > 1e-3


def test_only_a_metadata_free_vae_file_without_a_format_has_an_assumed_scale(root):
    assert load_vae(root / "vae" / VAE_FILE).scale_assumed
    assert not load_vae(root / "vae" / VAE_FILE, scaling_factor=0.18215).scale_assumed
    assert not load_vae(root / "vae" / "with-metadata.safetensors").scale_assumed
    ckpt_vae = load_vae(root / "checkpoints" / "tiny-sdxl.safetensors")
    assert not ckpt_vae.scale_assumed and ckpt_vae.scaling_factor == 0.13025
    z = torch.randn(1, 4, 4, 4)
    # the tiled decode takes the family's scale too
    tiled = REG["VAEDecodeTiled"].run(None, samples={"samples": z, "family": "sdxl"},
                                      vae=load_vae(root / "vae" / VAE_FILE), tile_size=64, overlap=0)
    assert torch.equal(tiled, ckpt_vae.decode_tiled(z, tile=8, overlap=0))


def test_latent_nodes_keep_the_family_and_the_recorded_scale():
    lat = {"samples": torch.randn(2, 4, 8, 8), "family": "sdxl", "vae_scale": 0.18215}
    mask = torch.ones(1, 64, 64)
    calls = {
        "LatentUpscale": dict(samples=lat, upscale_method="nearest-exact", width=128, height=128, crop="disabled"),
        "LatentUpscaleBy": dict(samples=lat, upscale_method="bilinear", scale_by=1.5),
        "LatentFromBatch": dict(samples=lat, batch_index=1, length=1),
        "RepeatLatentBatch": dict(samples=lat, amount=2),
        "SetLatentNoiseMask": dict(samples=lat, mask=mask),
        "LatentComposite": dict(samples_to=lat, samples_from=lat, x=0, y=0, feather=0),
        "LatentCompositeMasked": dict(destination=lat, source=lat, x=0, y=0, resize_source=False),
        "LatentBlend": dict(samples1=lat, samples2=lat, blend_factor=0.5),
        "LatentStyleAdaIN": dict(content=lat, style=lat, strength=1.0),
    }
    for name, inputs in calls.items():
        nd = REG[name]
        [out] = nd.normalize_result(nd.run(None, **inputs)).values()
        assert (out["family"], out["vae_scale"]) == ("sdxl", 0.18215), name


def test_clip_guidance_decodes_at_the_model_family_scale(root):
    auto = load_vae(root / "vae" / VAE_FILE)
    xl = load_vae(root / "vae" / VAE_FILE, scaling_factor=0.13025)
    z = torch.randn(1, 4, 8, 8)
    g_auto = ClipGuidance(None, auto, torch.zeros(1, 8), 1.0)  # type: ignore[arg-type]
    g_xl = ClipGuidance(None, xl, torch.zeros(1, 8), 1.0)  # type: ignore[arg-type]
    assert torch.equal(g_auto.decode(z, "sdxl"), g_xl.decode(z, "sdxl"))
    assert torch.equal(g_auto.decode(z, "sd1"), g_auto.decode(z))
    assert not torch.equal(g_auto.decode(z, "sd1"), g_xl.decode(z, "sd1"))  # explicit: never overridden


def test_inpaint_model_conditioning_latents_reach_an_sdxl_model_at_its_scale(root):
    """InpaintModelConditioning with the assumed-scale VAE: the LATENT and the masked-image latents
    in the conditioning record the scale, and the denoiser's 9-channel input of an SDXL model is
    then what the same VAE at the SDXL scale gives (ComfyUI scales them with the model's format)."""
    from types import SimpleNamespace

    from nodegen.diffusion.conditioning import CondItem
    from nodegen.diffusion.denoiser import Denoiser
    from nodegen.diffusion.model_sampling import ModelSampling
    from nodegen.models.schedule import scaled_linear_alphas_cumprod

    auto = load_vae(root / "vae" / VAE_FILE)
    xl = load_vae(root / "vae" / VAE_FILE, scaling_factor=0.13025)
    pixels = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(1, 64, 64)
    mask[:, 16:48, 16:48] = 1
    cond = [CondItem(torch.zeros(1, 77, 8))]
    nd = REG["InpaintModelConditioning"]

    def inpaint(vae):
        return nd.normalize_result(nd.run(None, positive=cond, negative=cond, vae=vae, pixels=pixels, mask=mask,
                                          noise_mask=True))
    got, want = inpaint(auto), inpaint(xl)
    assert got["latent"]["vae_scale"] == 0.18215 and want["latent"]["vae_scale"] == 0.13025
    assert got["positive"][0].extras["concat_latent_scale"] == 0.18215
    assert "concat_latent_scale" not in want["positive"][0].extras

    def nine_channels(out, family):
        model = SimpleNamespace(family=family, options={})
        unet = SimpleNamespace(config=SimpleNamespace(in_channels=9))
        d = Denoiser(model, unet, out["positive"], out["negative"], 1.0, latent_image=out["latent"]["samples"],
                     model_sampling=ModelSampling(scaled_linear_alphas_cumprod()))
        return d._concat(out["positive"][0], 1, 8, 8, (8, 8, 0, 0))
    torch.testing.assert_close(nine_channels(got, "sdxl"), nine_channels(want, "sdxl"), rtol=1e-5, atol=1e-6)
    # an SD1 model takes the assumed scale as it is: it is SD1's
    torch.testing.assert_close(nine_channels(got, "sd1"), torch.cat([
        nine_channels(want, "sd1")[:, :1], nine_channels(want, "sd1")[:, 1:] * (0.18215 / 0.13025)], 1),
        rtol=1e-5, atol=1e-6)
