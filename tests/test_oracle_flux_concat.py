"""Oracle: Flux.1 models that take an image beside the latent == diffusers' pipelines for them, on
tiny random-weight components (max abs pixel difference <= 1e-3, fp32 CPU):

* Kontext (ReferenceLatent): the reference's tokens after the latent's, against FluxKontextPipeline;

* Canny / Depth (128 input channels): InstructPixToPixConditioning's control image, against
  FluxControlPipeline (handed the same control latents: its own encode samples the distribution);
* Fill (384 input channels): InpaintModelConditioning's masked image and mask, against
  FluxFillPipeline.
"""

from __future__ import annotations

import pytest
import torch

from nodegen.diffusion.flow_forward import pack
from nodegen.diffusion.flow_sampling import flux_mu
from nodegen.diffusion.flux_reference import reference_ids
from nodegen.diffusion.sample import Steps, sample
from nodegen.models.flow_text import FlowTextEncoder
from nodegen.models.objects import DiffusionModel, VAEModel
from tests.support.comfy_run import flux_models, run_api
from tests.support.fixtures import _randomize_
from tests.support.flow_fixtures import _flux_transformer, fixture
from tests.support.nodes import run

torch.set_num_threads(1)
TOL = 1e-3


@pytest.fixture(scope="module")
def flux(tmp_path_factory):
    return fixture("flux", tmp_path_factory.mktemp("flux"))


def _model(in_channels: int, seed: int):
    transformer = _flux_transformer(seed, guidance=True, in_channels=in_channels)
    _randomize_(transformer, seed + 1)
    transformer.eval()
    model = DiffusionModel(transformer, "flux", "flow")
    model.options["model_sampling"] = {"kind": "flux", "shift": flux_mu(64, 64), "multiplier": 1.0}
    return transformer, model


def _parts(fx):
    te = FlowTextEncoder("flux", {"clip_l": (fx.tokenizer, fx.text_encoder), "t5": (fx.tokenizer_2, fx.text_encoder_2)})
    return te, VAEModel.from_vae(fx.vae)


def _pipe_parts(fx, transformer) -> dict:
    return dict(transformer=transformer, scheduler=fx.scheduler, vae=fx.vae, text_encoder=fx.text_encoder,
                tokenizer=fx.tokenizer, text_encoder_2=fx.text_encoder_2, tokenizer_2=fx.tokenizer_2)


def _in_model_space(fx, lat: torch.Tensor) -> torch.Tensor:
    return (lat - fx.vae.config.shift_factor) * fx.vae.config.scaling_factor


def test_flux_canny_depth_equals_flux_control_pipeline(flux):
    from diffusers import FluxControlPipeline

    transformer, model = _model(128, 70)
    te, vae = _parts(flux)
    control = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(12))
    out = run("InstructPixToPixConditioning", positive=te.encode("a house"), negative=te.encode(""),
              vae=vae, pixels=control)
    assert out["latent"]["samples"].shape == (1, 16, 8, 8) and not out["latent"]["samples"].any()
    ours = sample(model, out["positive"], None, out["latent"], 8, Steps(3, "simple"), 1.0, "euler", device="cpu")
    ours_img = vae.decode(ours.latent["samples"], device="cpu")
    pipe = FluxControlPipeline(**_pipe_parts(flux, transformer))
    pipe.set_progress_bar_config(disable=True)
    control_latents = pack(_in_model_space(flux, vae.encode(control, device="cpu")))
    theirs = pipe(prompt="a house", control_image=control_latents, height=64, width=64, num_inference_steps=3,
                  guidance_scale=3.5, generator=torch.Generator().manual_seed(8), output_type="pt").images
    assert float((ours_img - theirs.permute(0, 2, 3, 1)).abs().max()) <= TOL


def test_a_canny_depth_model_without_a_control_image_sees_empty_latents(flux):
    """Without InstructPixToPixConditioning, the control channels hold zero latents (moved into the
    model's space), as ComfyUI gives them."""
    from nodegen.diffusion.flux_concat import flux_concat

    like = torch.randn(2, 16, 4, 6)
    empty = flux_concat({}, like, 16)
    assert empty.shape == (2, 16, 4, 6) and torch.allclose(empty, torch.full_like(empty, (0 - 0.1159) * 0.3611))
    with pytest.raises(ValueError, match="takes 256 input channels"):
        flux_concat({}, like, 48)


def test_flux_fill_equals_flux_fill_pipeline(flux, monkeypatch):
    """The pipeline greys out and encodes the masked image itself; its encode is made to take the
    distribution's mode, as ours does, instead of a sample."""
    import diffusers.pipelines.flux.pipeline_flux_fill as fill
    from diffusers import FluxFillPipeline

    monkeypatch.setattr(fill, "retrieve_latents", lambda enc, generator=None, sample_mode="sample": enc.latent_dist.mode())
    transformer, model = _model(384, 72)
    te, vae = _parts(flux)
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(13))
    mask = torch.zeros(1, 64, 64)
    mask[:, 13:45, 6:37] = 1.0  # not on the 8-pixel grid: each latent pixel's 64 mask channels differ
    out = run("InpaintModelConditioning", positive=te.encode("a window"), negative=te.encode(""), vae=vae,
              pixels=image, mask=mask, noise_mask=False)
    empty = {"samples": torch.zeros(1, 16, 8, 8)}
    ours = sample(model, out["positive"], None, empty, 9, Steps(3, "simple"), 1.0, "euler", device="cpu")
    ours_img = vae.decode(ours.latent["samples"], device="cpu")
    pipe = FluxFillPipeline(**_pipe_parts(flux, transformer))
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(prompt="a window", image=image.permute(0, 3, 1, 2), mask_image=mask[:, None], height=64, width=64,
                  num_inference_steps=3, guidance_scale=3.5, generator=torch.Generator().manual_seed(9),
                  output_type="pt").images
    assert float((ours_img - theirs.permute(0, 2, 3, 1)).abs().max()) <= TOL


def test_comfyui_flux_canny_workflow_imports_and_runs(flux, tmp_path):
    """ComfyUI's Flux Canny example (API format: UNETLoader, Canny, InstructPixToPixConditioning,
    FluxGuidance, KSampler) runs on a 128-channel model file in BFL's layout."""
    from PIL import Image

    from tests.support.flow_convert import flux_to_original
    from tests.support.flow_fixtures import _save

    transformer, _ = _model(128, 74)
    canny = _save(flux_to_original({k: v.contiguous() for k, v in transformer.state_dict().items()}),
                  tmp_path / "flux1-canny-dev.safetensors")
    models = flux_models(flux, tmp_path, canny)
    Image.effect_mandelbrot((64, 64), (-2, -1.5, 1, 1.5), 40).convert("RGB").save(tmp_path / "in" / "robot.png")
    api = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-canny-dev.safetensors", "weight_dtype": "default"}},
        "2": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": "clip_l.safetensors",
                                                         "clip_name2": "t5xxl_fp16.safetensors", "type": "flux"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "a robot", "clip": ["2", 0]}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["2", 0]}},
        "5": {"class_type": "FluxGuidance", "inputs": {"guidance": 30.0, "conditioning": ["3", 0]}},
        "6": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "7": {"class_type": "LoadImage", "inputs": {"image": "robot.png"}},
        "8": {"class_type": "Canny", "inputs": {"low_threshold": 0.15, "high_threshold": 0.3, "image": ["7", 0]}},
        "9": {"class_type": "InstructPixToPixConditioning",
              "inputs": {"positive": ["5", 0], "negative": ["4", 0], "vae": ["6", 0], "pixels": ["8", 0]}},
        "10": {"class_type": "KSampler", "inputs": {"seed": 3, "steps": 2, "cfg": 1.0, "sampler_name": "euler",
                                                    "scheduler": "normal", "denoise": 1.0, "model": ["1", 0],
                                                    "positive": ["9", 0], "negative": ["9", 1], "latent_image": ["9", 2]}},
        "11": {"class_type": "VAEDecode", "inputs": {"samples": ["10", 0], "vae": ["6", 0]}},
        "12": {"class_type": "SaveImage", "inputs": {"filename_prefix": "canny", "images": ["11", 0]}},
    }
    result = run_api(api, models, tmp_path)
    assert result.images[0].size == (64, 64) and result.images[0].getextrema() != ((0, 0), (0, 0), (0, 0))


def test_flux_kontext_reference_equals_flux_kontext_pipeline(flux):
    """ReferenceLatent on a Flux model == FluxKontextPipeline given the same image latents (a Kontext
    model is a Flux dev model that learned to read the reference tokens: the fixture's weights do)."""
    from diffusers import FluxKontextPipeline

    te, vae = _parts(flux)
    model = DiffusionModel(flux.transformer, "flux", "flow")
    model.options["model_sampling"] = {"kind": "flux", "shift": flux_mu(64, 64), "multiplier": 1.0}
    image = torch.rand(1, 48, 80, 3, generator=torch.Generator().manual_seed(14))  # another size than the output
    ref = vae.encode(image, device="cpu")
    pos = run("ReferenceLatent", conditioning=te.encode("make it red"), latent={"samples": ref})["conditioning"]
    assert len(pos[0].extras["reference_latents"]) == 1
    ours = sample(model, pos, None, {"samples": torch.zeros(1, 16, 8, 8)}, 10, Steps(3, "simple"), 1.0, "euler",
                  device="cpu")
    ours_img = vae.decode(ours.latent["samples"], device="cpu")
    pipe = FluxKontextPipeline(**_pipe_parts(flux, flux.transformer))
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(prompt="make it red", image=_in_model_space(flux, ref), height=64, width=64, max_area=64 * 64,
                  num_inference_steps=3, guidance_scale=3.5, generator=torch.Generator().manual_seed(10),
                  output_type="pt").images
    assert float((ours_img - theirs.permute(0, 2, 3, 1)).abs().max()) <= TOL
    # the reference's positions (a small effect on this tiny model's images): the pipeline's own ids
    want = FluxKontextPipeline._prepare_latent_image_ids(1, 6 // 2, 10 // 2, "cpu", torch.float32)
    want[..., 0] = 1
    assert torch.equal(reference_ids([ref], "offset", "cpu", torch.float32), want)
    plain = sample(model, te.encode("make it red"), None, {"samples": torch.zeros(1, 16, 8, 8)}, 10, Steps(3, "simple"),
                   1.0, "euler", device="cpu")
    assert float((plain.latent["samples"] - ours.latent["samples"]).abs().max()) > 1e-3  # the reference is read


def test_several_references_are_placed_as_comfyui_places_them():
    a, b = torch.zeros(1, 16, 8, 12), torch.zeros(1, 16, 6, 4)
    offset = reference_ids([a, b], "offset", "cpu", torch.float32)
    # a at the origin (index 1); b below it (ComfyUI: beside only when below would be taller, 6 + 8 > 4 + 12)
    assert offset.shape == (4 * 6 + 3 * 2, 3) and set(offset[:, 0].tolist()) == {1.0}
    assert offset[:24, 1].max() == 3 and offset[:24, 2].max() == 5
    assert offset[24:, 1].min() == 4 and offset[24:, 2].min() == 0  # h offset 8 latent px = 4 tokens
    tall = reference_ids([torch.zeros(1, 16, 12, 4), b], "offset", "cpu", torch.float32)
    assert tall[12:, 1].min() == 0 and tall[12:, 2].min() == 2  # beside: 6 + 12 > 4 + 4
    index = reference_ids([a, b], "index", "cpu", torch.float32)
    assert index[:24, 0].unique().tolist() == [1.0] and index[24:, 0].unique().tolist() == [2.0]
    assert index[24:, 1].min() == 0 and index[24:, 2].min() == 0
    with pytest.raises(ValueError, match="'uso' is not supported"):
        reference_ids([a], "uso", "cpu", torch.float32)


def _comfy_ids(shape, index, h_offset, w_offset):
    """ComfyUI's Flux ``process_img`` ids for a latent of ``shape`` (2x2 patches), transcribed."""
    h_len, w_len = (shape[0] + 1) // 2, (shape[1] + 1) // 2
    h_offset, w_offset = (h_offset + 1) // 2, (w_offset + 1) // 2
    ids = torch.zeros(h_len, w_len, 3)
    ids[:, :, 0] = ids[:, :, 1] + index
    ids[:, :, 1] = ids[:, :, 1] + torch.linspace(h_offset, h_len - 1 + h_offset, steps=h_len)[:, None]
    ids[:, :, 2] = ids[:, :, 2] + torch.linspace(w_offset, w_len - 1 + w_offset, steps=w_len)[None, :]
    return ids.reshape(-1, 3)


def test_uxo_uno_places_references_past_the_latent_as_comfyui_does():
    """ComfyUI's "uxo" branch: index 0, each reference past the latent's corner and the previous ones."""
    a, b = torch.zeros(1, 16, 8, 12), torch.zeros(1, 16, 6, 4)
    latent = (10, 14)  # a latent of 9 x 13 padded to whole patches
    want, h, w = [], 0, 0
    for ref in (a, b):
        want.append(_comfy_ids(ref.shape[-2:], 0, latent[0] + h, latent[1] + w))
        h, w = h + ref.shape[-2], w + ref.shape[-1]
    assert torch.equal(reference_ids([a, b], "uxo/uno", "cpu", torch.float32, latent), torch.cat(want))


def test_uxo_uno_samples_with_the_latents_size(flux, monkeypatch):
    from nodegen.diffusion import flow_forward

    sizes = []

    def spy(refs, method, device, dtype, latent_size=(0, 0)):
        sizes.append(latent_size)
        return reference_ids(refs, method, device, dtype, latent_size)

    monkeypatch.setattr(flow_forward, "reference_ids", spy)
    te, vae = _parts(flux)
    model = DiffusionModel(flux.transformer, "flux", "flow")
    model.options["model_sampling"] = {"kind": "flux", "shift": flux_mu(64, 64), "multiplier": 1.0}
    ref = vae.encode(torch.rand(1, 48, 80, 3, generator=torch.Generator().manual_seed(14)), device="cpu")
    pos = run("ReferenceLatent", conditioning=te.encode("make it red"), latent={"samples": ref})["conditioning"]
    out = {}
    for method in ("offset", "uxo/uno"):
        cond = run("FluxKontextMultiReferenceLatentMethod", conditioning=pos,
                   reference_latents_method=method)["conditioning"]
        out[method] = sample(model, cond, None, {"samples": torch.zeros(1, 16, 8, 8)}, 10, Steps(2, "simple"), 1.0,
                             "euler", device="cpu").latent["samples"]
    assert out["uxo/uno"].shape == (1, 16, 8, 8) and torch.isfinite(out["uxo/uno"]).all()
    assert float((out["uxo/uno"] - out["offset"]).abs().max()) > 1e-4  # the placement reaches the model
    assert set(sizes) == {(8, 8)}  # the latent's size, for uxo's offsets


def test_flux_kontext_image_scale_picks_the_nearest_training_size():
    wide = run("FluxKontextImageScale", image=torch.rand(1, 90, 160, 3))["image"]
    assert wide.shape == (1, 752, 1392, 3)  # 16:9 -> 1392 x 752
    assert run("FluxKontextImageScale", image=torch.rand(1, 50, 50, 3))["image"].shape == (1, 1024, 1024, 3)


def test_comfyui_flux_kontext_workflow_imports_and_runs(flux, tmp_path):
    """ComfyUI's Flux Kontext example's shape (API format): the input image encoded, given to
    ReferenceLatent and used as the sampler's latent, ConditioningZeroOut as the negative."""
    from PIL import Image

    models = flux_models(flux, tmp_path, name="flux1-dev-kontext.safetensors")
    Image.effect_mandelbrot((64, 48), (-2, -1.5, 1, 1.5), 30).convert("RGB").save(tmp_path / "in" / "photo.png")
    api = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev-kontext.safetensors", "weight_dtype": "default"}},
        "2": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": "clip_l.safetensors",
                                                         "clip_name2": "t5xxl_fp16.safetensors", "type": "flux"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "make it night", "clip": ["2", 0]}},
        "4": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "5": {"class_type": "LoadImage", "inputs": {"image": "photo.png"}},
        "6": {"class_type": "VAEEncode", "inputs": {"pixels": ["5", 0], "vae": ["4", 0]}},
        "7": {"class_type": "ReferenceLatent", "inputs": {"conditioning": ["3", 0], "latent": ["6", 0]}},
        "8": {"class_type": "FluxGuidance", "inputs": {"guidance": 2.5, "conditioning": ["7", 0]}},
        "9": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["3", 0]}},
        "10": {"class_type": "KSampler", "inputs": {"seed": 4, "steps": 2, "cfg": 1.0, "sampler_name": "euler",
                                                    "scheduler": "simple", "denoise": 1.0, "model": ["1", 0],
                                                    "positive": ["8", 0], "negative": ["9", 0], "latent_image": ["6", 0]}},
        "11": {"class_type": "VAEDecode", "inputs": {"samples": ["10", 0], "vae": ["4", 0]}},
        "12": {"class_type": "SaveImage", "inputs": {"filename_prefix": "kontext", "images": ["11", 0]}},
    }
    result = run_api(api, models, tmp_path)
    assert result.images[0].size == (64, 48) and result.images[0].getextrema() != ((0, 0), (0, 0), (0, 0))
