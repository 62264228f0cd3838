"""FluxDisableGuidance (ComfyUI: the conditioning's guidance set to None, so Flux adds no guidance
embedding: ``vec = time_in(t) + vector_in(y)``) == diffusers' FluxPipeline whose time embedding
follows that rule, on the tiny Flux fixture; ComfyUI's node imports and runs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from nodegen.diffusion.sample import Steps, sample
from nodegen.models.flow_text import FlowTextEncoder
from nodegen.models.objects import DiffusionModel, VAEModel
from tests.support.flow_fixtures import fixture
from tests.support.nodes import run

torch.set_num_threads(1)
TOL = 1e-3
CTX = SimpleNamespace(device="cpu", models=None)


@pytest.fixture(scope="module")
def flux(tmp_path_factory):
    return fixture("flux", tmp_path_factory.mktemp("flux"))


def _parts(fx):
    from nodegen.diffusion.flow_sampling import flux_mu

    te = FlowTextEncoder("flux", {"clip_l": (fx.tokenizer, fx.text_encoder), "t5": (fx.tokenizer_2, fx.text_encoder_2)})
    model = DiffusionModel(fx.transformer, "flux", "flow")
    model.options["model_sampling"] = {"kind": "flux", "shift": flux_mu(64, 64), "multiplier": 1.0}
    return model, te, VAEModel.from_vae(fx.vae)


def test_disabled_guidance_equals_the_pipeline_without_the_guidance_embedding(flux, monkeypatch):
    from diffusers import FluxPipeline

    model, te, vae = _parts(flux)
    cond = te.encode("a lighthouse")
    off = run("FluxDisableGuidance", CTX, conditioning=cond)["conditioning"]
    assert all(c.extras["guidance"] is None for c in off)
    empty = {"samples": torch.zeros(1, 16, 8, 8)}

    def image(c):
        out = sample(model, c, None, empty, 7, Steps(3, "simple"), 1.0, "euler", device="cpu")
        return vae.decode(out.latent["samples"], device="cpu")

    ours = image(off)
    embed = flux.transformer.time_text_embed

    def comfy_rule(timestep, guidance, pooled_projection):  # ComfyUI's Flux with guidance None
        t = embed.timestep_embedder(embed.time_proj(timestep).to(dtype=pooled_projection.dtype))
        return t + embed.text_embedder(pooled_projection)

    monkeypatch.setattr(embed, "forward", comfy_rule)
    pipe = FluxPipeline(transformer=flux.transformer, scheduler=flux.scheduler, vae=flux.vae,
                        text_encoder=flux.text_encoder, tokenizer=flux.tokenizer, text_encoder_2=flux.text_encoder_2,
                        tokenizer_2=flux.tokenizer_2)
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(prompt="a lighthouse", height=64, width=64, num_inference_steps=3, guidance_scale=3.5,
                  generator=torch.Generator().manual_seed(7), output_type="pt").images
    monkeypatch.undo()
    assert float((ours - theirs.permute(0, 2, 3, 1)).abs().max()) <= TOL
    # not the same as any guidance value: 3.5 (the default) and 0 both add an embedding
    for g in (3.5, 0.0):
        guided = run("FluxGuidance", CTX, conditioning=cond, guidance=g)["conditioning"]
        assert float((image(guided) - ours).abs().max()) > 1e-3
    # in one batch with a guided item (CFG > 1), each row keeps its own rule
    guided = run("FluxGuidance", CTX, conditioning=te.encode(""), guidance=3.5)["conditioning"]
    a = sample(model, off, guided, empty, 7, Steps(2, "simple"), 2.0, "euler", device="cpu").latent["samples"]
    off_neg = run("FluxDisableGuidance", CTX, conditioning=guided)["conditioning"]
    b = sample(model, off, off_neg, empty, 7, Steps(2, "simple"), 2.0, "euler", device="cpu").latent["samples"]
    assert not torch.allclose(a, b, atol=1e-4)


def test_refuses_what_is_not_conditioning():
    with pytest.raises(TypeError, match="FluxDisableGuidance: input 'conditioning' must be a CONDITIONING"):
        run("FluxDisableGuidance", CTX, conditioning=torch.zeros(1, 4))


def test_comfyui_workflow_with_flux_disable_guidance_imports_and_runs(flux, tmp_path):
    from tests.support.comfy_run import flux_models, run_api

    models = flux_models(flux, tmp_path, name="flux1-dev.safetensors")
    api = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"}},
        "2": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": "clip_l.safetensors",
                                                         "clip_name2": "t5xxl_fp16.safetensors", "type": "flux"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse", "clip": ["2", 0]}},
        "4": {"class_type": "FluxDisableGuidance", "inputs": {"conditioning": ["3", 0]}},
        "5": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "6": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "7": {"class_type": "KSampler", "inputs": {"seed": 3, "steps": 2, "cfg": 1.0, "sampler_name": "euler",
                                                   "scheduler": "simple", "denoise": 1.0, "model": ["1", 0],
                                                   "positive": ["4", 0], "negative": ["3", 0], "latent_image": ["6", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": ["5", 0]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "noguide", "images": ["8", 0]}},
    }
    result = run_api(api, models, tmp_path)
    assert result.images[0].size == (64, 64)
