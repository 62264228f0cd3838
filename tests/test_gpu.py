"""The GPU path, on a real CUDA device (``pytest -m gpu``; every test here is skipped where CUDA is
absent, so CI on CPU stays green).

Tolerances (stated here, and in bench/RESULTS.md with the device they were measured on):

* CPU fp32 vs GPU fp32, same seed (noise is drawn on the CPU): pixels within 2e-2 (the test
  turns cuDNN's TF32 convolutions off; with them, the default on Ampere and later, expect ~1e-2).
* GPU fp16 vs CPU fp32: mean absolute pixel difference <= 2e-2, max <= 0.15.
* Oracle tests in fp16 (nodegen vs diffusers' pipeline on the same modules, both fp16 on the
  GPU): pixels within 5e-2 max, 1e-2 mean; nodegen keeps its latents in fp32 between steps where
  diffusers keeps them in fp16, which is most of the difference.

The CPU-side logic of these paths (dtype policy, placement, the NaN fallback) is also tested on
the CPU: tests/test_vae_precision.py, tests/test_models_manager.py.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from nodegen.kernel import cache as cache_mod
from nodegen.kernel.cache import OutputCache
from nodegen.kernel.context import CancelToken
from tests.support.fixtures import fixture

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

ROOT = Path(__file__).resolve().parents[1]
TXT2IMG = ROOT / "graphs" / "txt2img.json"
MiB = 1 << 20


@pytest.fixture(scope="module")
def sd1(tmp_path_factory):
    return fixture("sd1", tmp_path_factory.mktemp("sd1"))


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    return fixture("sdxl", tmp_path_factory.mktemp("sdxl"))


def _tensors(value, out: list) -> list:
    if isinstance(value, torch.Tensor):
        out.append(value)
    elif isinstance(value, dict):
        for v in value.values():
            _tensors(v, out)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _tensors(v, out)
    elif hasattr(value, "__dataclass_fields__"):
        for name in value.__dataclass_fields__:
            _tensors(getattr(value, name, None), out)
    return out


# -- the output cache on the device ----------------------------------------------------------------

def test_cached_outputs_stay_on_the_gpu_and_a_seed_only_rerun_moves_nothing_to_the_host(tmp_path, monkeypatch):
    from nodegen.runtime.engine import Engine

    engine = Engine(device="cuda", output_dir=tmp_path)
    first = engine.run(TXT2IMG, set={"Sampler.steps": 4})
    assert first.ok, first.failures
    sampler_id = engine.load(TXT2IMG).resolve_node("Sampler")
    latents = _tensors(engine.cache.get(engine.executor._history[sampler_id].sig).outputs, [])
    assert latents and all(t.device.type == "cuda" for t in latents)
    assert engine.cache.usage.get("cuda:0", 0) > 0

    spills: list = []
    real_to_host = cache_mod.to_host
    monkeypatch.setattr(cache_mod, "to_host", lambda v, *a: spills.append(v) or real_to_host(v, *a))
    unet = next(iter(engine.models._files.values()))[0].unet
    again = engine.run(TXT2IMG, set={"Sampler.steps": 4, "Sampler.seed": 99})
    assert again.ok and sampler_id in again.executed
    assert set(again.cached) >= {engine.load(TXT2IMG).resolve_node("Model")}
    assert spills == [] and engine.cache.spills == 0
    assert next(unet.parameters()).device.type == "cuda"  # the model was not offloaded
    for entry in engine.cache._entries.values():
        for t in _tensors(entry.outputs, []):
            assert t.device.type in ("cuda", "cpu")  # conditioning is made on the CPU by design
    latents = _tensors(engine.cache.get(engine.executor._history[sampler_id].sig).outputs, [])
    assert all(t.device.type == "cuda" for t in latents)


def test_cache_budgets_spill_to_host_then_drop_with_cuda_memory():
    cache = OutputCache({"cuda": 5 * MiB, "cpu": 5 * MiB})
    base = torch.cuda.memory_allocated()
    for name in "abc":
        cache.put(name, {"x": torch.full((MiB // 2,), float(ord(name)), device="cuda")})  # 2 MiB each
    assert cache.spills == 1 and cache.get("a").outputs["x"].device.type == "cpu"
    assert torch.equal(cache.get("a").outputs["x"], torch.full((MiB // 2,), float(ord("a"))))
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() - base <= 4 * MiB + MiB  # a's device copy was freed
    cache.put("d", {"x": torch.zeros(MiB // 2, device="cuda")})  # b spills: host holds a and b
    cache.put("e", {"x": torch.zeros(MiB // 2, device="cuda")})  # host full: c is dropped
    assert cache.spills == 2 and cache.evictions >= 1 and "c" not in cache
    assert cache.usage["cuda:0"] <= 5 * MiB and cache.usage["cpu"] <= 5 * MiB


# -- models on the device ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_models_load_straight_to_the_gpu_in_half_precision(sd1, dtype, monkeypatch):
    from nodegen.models import loader
    from nodegen.models.manager import ModelManager

    host_fp32: list = []
    real_cast = loader._cast

    def watch(sd, dt, device=None):
        out = real_cast(sd, dt, device)
        host_fp32.extend(k for k, v in out.items() if v.device.type == "cpu" and v.dtype == torch.float32)
        return out

    monkeypatch.setattr(loader, "_cast", watch)
    mgr = ModelManager(device="cuda", gpu_dtype=dtype)
    model, text, vae = loader.load_checkpoint(sd1.single_file_fp16, manager=mgr)
    assert host_fp32 == []
    for module in (model.unet, vae.vae, *text.encoders):
        params = list(module.parameters())
        assert all(p.device.type == "cuda" and p.dtype == dtype for p in params)
        assert all(b.device.type == "cuda" for b in module.buffers())
    cpu_model, _, _ = loader.load_checkpoint(sd1.single_file, manager=ModelManager(device="cpu"))
    x = torch.randn(1, 4, 8, 8)
    t = torch.tensor([500])
    ctx = torch.randn(1, 77, 64)
    with torch.no_grad():
        ref = cpu_model.unet(x, t, ctx).sample
        got = model.unet(x.cuda().to(dtype), t.cuda(), ctx.cuda().to(dtype)).sample.float().cpu()
    tol = 2e-2 if dtype == torch.float16 else 8e-2
    assert (got - ref).abs().max() <= tol * ref.abs().max()


def test_vae_falls_back_to_float32_when_fp16_decodes_to_nan():
    from tests.test_vae_precision import test_a_half_precision_nan_decode_falls_back_to_float32

    test_a_half_precision_nan_decode_falls_back_to_float32(device="cuda")


def test_least_recently_used_models_are_offloaded_and_come_back_correct():
    from nodegen.models.manager import ModelManager
    from nodegen.models.placement import module_bytes

    torch.manual_seed(0)
    mods = [torch.nn.Linear(1024, 1024) for _ in range(3)]  # 4 MiB each in fp32
    mgr = ModelManager(device="cuda", gpu_dtype=torch.float32, budgets={"cuda": int(2.5 * module_bytes(mods[0]))})
    x = torch.randn(2, 1024)
    refs = [m(x) for m in mods]
    for m in mods:
        with mgr.use(m) as on_gpu:
            assert next(on_gpu.parameters()).device.type == "cuda"
    assert next(mods[0].parameters()).device.type == "cpu"  # the least recently used went back
    assert [next(m.parameters()).device.type for m in mods[1:]] == ["cuda", "cuda"]
    with mgr.use(mods[0]) as m0:
        out = m0(x.cuda()).cpu()
    assert torch.allclose(out, refs[0], atol=1e-4)
    assert next(mods[1].parameters()).device.type == "cpu"


# -- same seed, same image ----------------------------------------------------------------------------

def _txt2img(fx, device, dtype, steps=6, sampler="dpmpp_2m", scheduler="karras", ctx=None):
    from nodegen.diffusion.sample import sample
    from nodegen.models.manager import ModelManager
    from nodegen.models.objects import DiffusionModel, TextEncoder, VAEModel

    mgr = ModelManager(device=device, gpu_dtype=dtype)
    unet, te, vae = (copy.deepcopy(m) for m in (fx.unet, fx.text_encoder, fx.vae))
    model = DiffusionModel.from_unet(unet, fx.family, fx.prediction, manager=mgr)
    text = TextEncoder.from_components([fx.tokenizer], [te], fx.family, manager=mgr)
    pos, neg = text.encode("a photo of a cat"), text.encode("blurry")
    out = sample(model, pos, neg, {"samples": torch.zeros(1, 4, 8, 8)}, seed=1234, steps=steps, cfg=6.0,
                 sampler=sampler, scheduler=scheduler, device=device, dtype=dtype, ctx=ctx)
    image = VAEModel.from_vae(vae, manager=mgr).decode(out["samples"], device=device)
    return image.float().cpu(), pos, neg


def test_the_same_seed_gives_the_same_image_on_cpu_and_gpu(sd1, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # fp32 means fp32 here
    cpu, _, _ = _txt2img(sd1, "cpu", torch.float32)
    gpu32, _, _ = _txt2img(sd1, "cuda", torch.float32)
    gpu16, _, _ = _txt2img(sd1, "cuda", torch.float16)
    assert (gpu32 - cpu).abs().max() <= 2e-2
    assert (gpu16 - cpu).abs().mean() <= 2e-2 and (gpu16 - cpu).abs().max() <= 0.15


def test_cancellation_inside_a_cuda_sampling_loop(sd1):
    from nodegen.kernel.context import Cancelled, RunContext

    token = CancelToken()
    steps_seen: list[int] = []

    def progress(_node, step, _total, _preview):
        steps_seen.append(step)
        if step == 2:
            token.cancel()

    ctx = RunContext(node_id="s", node_title="Sampler", device=torch.device("cuda"), models=None,
                     paths=None, output_dir="", input_dir="", temp_dir="", workflow=None, cancel=token,
                     _progress=progress)
    with pytest.raises(Cancelled):
        _txt2img(sd1, "cuda", torch.float16, steps=20, ctx=ctx)
    assert steps_seen == [1, 2]


def test_an_engine_run_on_the_gpu_is_cancelled_between_sampler_steps(tmp_path):
    from nodegen.runtime.engine import Engine

    engine = Engine(device="cuda", output_dir=tmp_path)
    token = CancelToken()
    seen: list[int] = []

    def on_event(ev):
        if ev.kind == "node_progress":
            seen.append(ev.data["step"])
            if ev.data["step"] == 3:
                token.cancel()

    engine.subscribe(on_event)
    result = engine.run(TXT2IMG, set={"Sampler.steps": 30}, cancel=token)
    assert result.status == "cancelled" and max(seen) == 3


# -- oracles in fp16 -------------------------------------------------------------------------------------

def _fp16_pipeline(fx, cls, **parts):
    from diffusers import DPMSolverMultistepScheduler

    sched = DPMSolverMultistepScheduler.from_config(fx.scheduler.config, use_karras_sigmas=True)
    pipe = cls(scheduler=sched, **parts).to("cuda", torch.float16)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _oracle_compare(ours, ref):
    assert torch.isfinite(ref).all() and torch.isfinite(ours).all()
    diff = (ours - ref).abs()
    assert diff.max() <= 5e-2 and diff.mean() <= 1e-2, (float(diff.max()), float(diff.mean()))


def test_sd1_oracle_in_fp16_on_the_gpu(sd1):
    from diffusers import StableDiffusionPipeline

    ours, pos, neg = _txt2img(sd1, "cuda", torch.float16, steps=7)
    unet, te, vae = (copy.deepcopy(m) for m in (sd1.unet, sd1.text_encoder, sd1.vae))
    pipe = _fp16_pipeline(sd1, StableDiffusionPipeline, vae=vae, text_encoder=te, tokenizer=sd1.tokenizer,
                          unet=unet, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    gen = torch.Generator().manual_seed(1234)
    latents = torch.randn((1, 4, 8, 8), generator=gen)
    ref = pipe(prompt_embeds=pos[0].embeds.to("cuda", torch.float16),
               negative_prompt_embeds=neg[0].embeds.to("cuda", torch.float16), num_inference_steps=7,
               guidance_scale=6.0, height=64, width=64, latents=latents.to("cuda", torch.float16),
               output_type="pt").images.float().cpu()
    _oracle_compare(ours.permute(0, 3, 1, 2), ref)


def test_sdxl_oracle_in_fp16_on_the_gpu(sdxl):
    from diffusers import StableDiffusionXLPipeline

    from nodegen.diffusion.sample import sample
    from nodegen.models.manager import ModelManager
    from nodegen.models.objects import DiffusionModel, TextEncoder, VAEModel

    mgr = ModelManager(device="cuda", gpu_dtype=torch.float16)
    unet, te, te2, vae = (copy.deepcopy(m) for m in (sdxl.unet, sdxl.text_encoder, sdxl.text_encoder_2, sdxl.vae))
    model = DiffusionModel.from_unet(unet, "sdxl", "epsilon", manager=mgr)
    text = TextEncoder.from_components([sdxl.tokenizer, sdxl.tokenizer_2], [te, te2], "sdxl", manager=mgr)
    pos, neg = text.encode("a castle on a hill"), text.encode("low quality")
    out = sample(model, pos, neg, {"samples": torch.zeros(1, 4, 8, 8)}, seed=3, steps=7, cfg=5.0,
                 sampler="dpmpp_2m", scheduler="karras", device="cuda", dtype=torch.float16)
    ours = VAEModel.from_vae(vae, manager=mgr).decode(out["samples"], device="cuda").float().cpu()
    pipe = _fp16_pipeline(sdxl, StableDiffusionXLPipeline, vae=copy.deepcopy(sdxl.vae), text_encoder=te,
                          text_encoder_2=te2, tokenizer=sdxl.tokenizer, tokenizer_2=sdxl.tokenizer_2,
                          unet=copy.deepcopy(sdxl.unet), force_zeros_for_empty_prompt=False)
    gen = torch.Generator().manual_seed(3)
    latents = torch.randn((1, 4, 8, 8), generator=gen)
    h = lambda t: t.to("cuda", torch.float16)  # noqa: E731
    ref = pipe(prompt_embeds=h(pos[0].embeds), pooled_prompt_embeds=h(pos[0].pooled),
               negative_prompt_embeds=h(neg[0].embeds), negative_pooled_prompt_embeds=h(neg[0].pooled),
               num_inference_steps=7, guidance_scale=5.0, height=64, width=64, latents=h(latents),
               output_type="pt").images.float().cpu()
    _oracle_compare(ours.permute(0, 3, 1, 2), ref)
