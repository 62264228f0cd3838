"""Oracle through a real graph: CheckpointLoader -> CLIPTextEncode x2 -> EmptyLatentImage ->
KSampler -> VAEDecode, run by the engine from a workflow document, equals diffusers'
StableDiffusionPipeline over the same (fixture) components. Also SamplerCustom and the
KSamplerAdvanced two-pass graph, and progress events per step."""

from __future__ import annotations

import shutil

import pytest
import torch

from nodegen.runtime.engine import Engine
from tests.support.fixtures import fixture

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def sd1(tmp_path_factory):
    return fixture("sd1", tmp_path_factory.mktemp("sd1"))


@pytest.fixture(scope="module")
def engine(sd1, tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    (root / "checkpoints").mkdir()
    shutil.copy(sd1.single_file, root / "checkpoints" / "tiny-sd1.safetensors")
    out = tmp_path_factory.mktemp("out")
    return Engine(models=str(root), output_dir=str(out), input_dir=str(out), device="cpu")


def ln(node, output):
    return {"from": [node, output]}


def base_nodes(prompt="a photo of a cat", negative="blurry"):
    return {
        "1": {"type": "CheckpointLoader", "inputs": {"ckpt_name": "tiny-sd1.safetensors"}},
        "2": {"type": "CLIPTextEncode", "inputs": {"clip": ln("1", "clip"), "text": prompt}},
        "3": {"type": "CLIPTextEncode", "inputs": {"clip": ln("1", "clip"), "text": negative}},
        "4": {"type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
    }


def doc(nodes):
    return {"format": "nodegen-workflow", "version": 1, "nodes": nodes}


def pipeline_reference(sd1, scheduler_cls, steps, cfg, seed, **sched_kw):
    import diffusers

    pipe = sd1.pipeline()
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = getattr(diffusers, scheduler_cls).from_config(sd1.scheduler.config, **sched_kw)
    return pipe(prompt="a photo of a cat", negative_prompt="blurry", num_inference_steps=steps,
                guidance_scale=cfg, height=64, width=64, generator=torch.Generator().manual_seed(seed),
                output_type="pt").images


def test_txt2img_graph_matches_pipeline(engine, sd1):
    nodes = base_nodes()
    nodes["5"] = {"type": "KSampler", "inputs": {
        "model": ln("1", "model"), "seed": 31, "steps": 6, "cfg": 7.5, "sampler_name": "dpmpp_2m",
        "scheduler": "karras", "positive": ln("2", "conditioning"), "negative": ln("3", "conditioning"),
        "latent_image": ln("4", "latent"), "denoise": 1.0}}
    nodes["6"] = {"type": "VAEDecode", "inputs": {"samples": ln("5", "latent"), "vae": ln("1", "vae")}}
    events = []
    unsubscribe = engine.subscribe(events.append)
    try:
        r = engine.run(doc(nodes), targets=["6"])
    finally:
        unsubscribe()
    assert r.ok, r.problems
    ours = r.output("6", "image").permute(0, 3, 1, 2)
    ref = pipeline_reference(sd1, "DPMSolverMultistepScheduler", 6, 7.5, 31, use_karras_sigmas=True)
    assert ours.shape == ref.shape == (1, 3, 64, 64)
    assert (ours - ref).abs().max() <= 1e-3
    progress = [e.data for e in events if e.kind == "node_progress" and e.node_id == "5"]
    assert [(p["step"], p["total"]) for p in progress] == [(i, 6) for i in range(1, 7)]
    assert all(p["preview"].shape == (1, 8, 8, 3) for p in progress)


def test_sampler_custom_graph_equals_ksampler(engine):
    nodes = base_nodes()
    common = {"model": ln("1", "model"), "positive": ln("2", "conditioning"), "negative": ln("3", "conditioning"),
              "latent_image": ln("4", "latent"), "cfg": 6.0}
    nodes["5"] = {"type": "KSampler", "inputs": dict(common, seed=5, steps=5, sampler_name="euler_ancestral",
                                                      scheduler="normal", denoise=1.0)}
    nodes["7"] = {"type": "KSamplerSelect", "inputs": {"sampler_name": "euler_ancestral"}}
    nodes["8"] = {"type": "BasicScheduler", "inputs": {"model": ln("1", "model"), "scheduler": "normal",
                                                        "steps": 5, "denoise": 1.0}}
    nodes["9"] = {"type": "SamplerCustom", "inputs": dict(common, add_noise=True, noise_seed=5,
                                                           sampler=ln("7", "sampler"), sigmas=ln("8", "sigmas"))}
    # two passes with SplitSigmas / KSamplerAdvanced
    nodes["10"] = {"type": "SplitSigmas", "inputs": {"sigmas": ln("8", "sigmas"), "step": 2}}
    r = engine.run(doc(nodes), targets=["5", "9", "10"])
    assert r.ok, r.problems
    a = r.output("5", "latent")["samples"]
    b = r.output("9", "output")["samples"]
    assert torch.allclose(a, b, atol=1e-6)
    den = r.output("9", "denoised_output")["samples"]
    assert den.shape == b.shape
    high, low = r.output("10", "high_sigmas"), r.output("10", "low_sigmas")
    assert len(high) == 3 and len(low) == 4 and high[-1] == low[0]


def test_advanced_two_pass_graph(engine):
    nodes = base_nodes()
    common = {"model": ln("1", "model"), "positive": ln("2", "conditioning"), "negative": ln("3", "conditioning"),
              "noise_seed": 9, "steps": 6, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal"}
    nodes["5"] = {"type": "KSamplerAdvanced", "inputs": dict(common, add_noise=True, latent_image=ln("4", "latent"),
                                                              start_at_step=0, end_at_step=3,
                                                              return_with_leftover_noise=True)}
    nodes["6"] = {"type": "KSamplerAdvanced", "inputs": dict(common, add_noise=False, latent_image=ln("5", "latent"),
                                                              start_at_step=3, end_at_step=10000,
                                                              return_with_leftover_noise=False)}
    nodes["7"] = {"type": "KSampler", "inputs": {
        "model": ln("1", "model"), "positive": ln("2", "conditioning"), "negative": ln("3", "conditioning"),
        "seed": 9, "steps": 6, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal",
        "latent_image": ln("4", "latent"), "denoise": 1.0}}
    r = engine.run(doc(nodes), targets=["6", "7"])
    assert r.ok, r.problems
    assert torch.allclose(r.output("6", "latent")["samples"], r.output("7", "latent")["samples"], atol=1e-5)
