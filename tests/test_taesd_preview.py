"""Live sampling previews (ComfyUI's --preview-method): with a TAESD in the model folders the
progress previews are its decode of the denoised latents (the oracle: diffusers' AutoencoderTiny on
the same latents), ``auto`` falls back to latent2rgb without the file, ``taesd`` says so once,
``none`` gives no images, TAESD previews are throttled on the CPU but the last step always shows, and
the method comes from the engine (``preview=``, NODEGEN_PREVIEW, the editor's ``--preview``)."""

from __future__ import annotations

import logging
import os
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from nodegen.diffusion import previewer
from nodegen.diffusion.conditioning import CondItem
from nodegen.diffusion.preview import latent_preview
from nodegen.diffusion.sample import Steps, sample
from nodegen.models.manager import ModelManager
from nodegen.models.objects import DiffusionModel
from nodegen.models.paths import ModelPaths
from nodegen.runtime.engine import Engine
from tests.support.fixtures import sd1_fixture
from tests.test_taesd import madebyollin, tiny

STEPS = 3


@pytest.fixture(scope="module")
def tinies():
    return {"taesd": tiny(4, 11), "taef1": tiny(16, 12)}


@pytest.fixture(scope="module")
def sd1_parts():
    fx = sd1_fixture()
    g = torch.Generator().manual_seed(5)
    return DiffusionModel.from_unet(fx.unet, "sd1"), [CondItem(torch.randn(1, 77, 64, generator=g))], \
        [CondItem(torch.randn(1, 77, 64, generator=g))]


@pytest.fixture
def models(tmp_path, tinies):
    approx = tmp_path / "models" / "vae_approx"
    approx.mkdir(parents=True)
    torch.save(madebyollin(tinies["taesd"], "decoder"), approx / "taesd_decoder.pth")
    torch.save(madebyollin(tinies["taef1"], "decoder"), approx / "taef1_decoder.pth")
    return tmp_path / "models"


@pytest.fixture
def no_throttle(monkeypatch):
    monkeypatch.setattr(previewer, "CPU_INTERVAL", 0.0)
    monkeypatch.setattr(previewer, "COST_RATIO", 0.0)


class Ctx:
    """A run context as the executor makes one: progress (with a listener), env, paths, models."""

    def __init__(self, models_dir, method: str, manager: ModelManager | None = None) -> None:
        self.env = SimpleNamespace(preview_method=method)
        self.paths = ModelPaths([models_dir], use_env=False, use_config=False)
        self.models = manager or ModelManager(device="cpu")
        self.device = torch.device("cpu")
        self.wants_preview = True
        self.seen: list[tuple[int, int, torch.Tensor | None]] = []

    def progress(self, step, total, preview=None):
        self.seen.append((step, total, preview))

    def check_cancelled(self):
        pass


def _sample(parts, ctx, batch: int = 2) -> list[torch.Tensor]:
    """Run the sampler; the denoised estimate of each step (as the sampler's callback sees it)."""
    model, pos, neg = parts
    denoised: list[torch.Tensor] = []
    sample(model, pos, neg, {"samples": torch.zeros(batch, 4, 8, 8)}, 7, Steps(STEPS, "karras"), 3.0, "euler",
           ctx=ctx, callback=lambda step, total, info: denoised.append(info["denoised"].clone()))
    assert [(s, t) for s, t, _ in ctx.seen] == [(i, STEPS) for i in range(1, STEPS + 1)]
    return denoised


def _diffusers_decode(vae, z: torch.Tensor) -> torch.Tensor:
    """The pipelines' decode of model-space latents (AutoencoderTiny's scaling_factor is 1.0)."""
    with torch.no_grad():
        img = vae.decode(z / vae.config.scaling_factor).sample
    return (img / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)


def test_previews_are_the_taesd_decode_of_the_denoised_latents(models, tinies, sd1_parts, no_throttle):
    ctx = Ctx(models, "auto")
    denoised = _sample(sd1_parts, ctx)
    for (_, _, image), z in zip(ctx.seen, denoised, strict=True):
        assert image.shape == (1, 64, 64, 3)  # the first batch item, at image resolution
        assert float((image - _diffusers_decode(tinies["taesd"], z[:1])).abs().max()) < 1e-5


def test_the_taesd_is_loaded_once_through_the_run_s_model_manager(models, sd1_parts, no_throttle, monkeypatch):
    from nodegen.models import loader

    calls = []
    real = loader.load_vae
    monkeypatch.setattr(loader, "load_vae", lambda *a, **kw: calls.append(a[0]) or real(*a, **kw))
    manager = ModelManager(device="cpu")
    for _ in range(2):
        _sample(sd1_parts, Ctx(models, "taesd", manager))
    assert [os.path.basename(p) for p in calls] == ["taesd_decoder.pth"]


def test_auto_falls_back_to_latent2rgb_without_the_file(tmp_path, sd1_parts, caplog, monkeypatch):
    monkeypatch.setattr(previewer, "_warned", set())
    (tmp_path / "empty").mkdir()
    ctx = Ctx(tmp_path / "empty", "auto")
    with caplog.at_level(logging.WARNING, logger=previewer.__name__):
        denoised = _sample(sd1_parts, ctx)
    assert not caplog.records  # auto falls back silently
    for (_, _, image), z in zip(ctx.seen, denoised, strict=True):
        assert torch.equal(image, latent_preview(z, "sd1")) and image.shape == (1, 8, 8, 3)


def test_taesd_without_the_file_says_so_once_and_shows_latent2rgb(tmp_path, sd1_parts, caplog, monkeypatch):
    monkeypatch.setattr(previewer, "_warned", set())
    (tmp_path / "empty").mkdir()
    with caplog.at_level(logging.WARNING, logger=previewer.__name__):
        for _ in range(2):
            ctx = Ctx(tmp_path / "empty", "taesd")
            denoised = _sample(sd1_parts, ctx)
    assert len(caplog.records) == 1 and "taesd_decoder not found" in caplog.records[0].getMessage()
    assert torch.equal(ctx.seen[-1][2], latent_preview(denoised[-1], "sd1"))


def test_a_broken_taesd_file_falls_back_and_the_run_goes_on(tmp_path, sd1_parts, caplog, monkeypatch):
    monkeypatch.setattr(previewer, "_warned", set())
    approx = tmp_path / "broken" / "vae_approx"
    approx.mkdir(parents=True)
    torch.save({"1.weight": torch.zeros(3)}, approx / "taesd_decoder.pth")
    ctx = Ctx(tmp_path / "broken", "auto")
    with caplog.at_level(logging.WARNING, logger=previewer.__name__):
        denoised = _sample(sd1_parts, ctx)
    assert "cannot use the sd1 TAESD" in caplog.text
    assert torch.equal(ctx.seen[-1][2], latent_preview(denoised[-1], "sd1"))


def test_latent2rgb_and_none(models, sd1_parts):
    ctx = Ctx(models, "latent2rgb")
    denoised = _sample(sd1_parts, ctx)
    assert all(torch.equal(img, latent_preview(z, "sd1")) for (_, _, img), z in zip(ctx.seen, denoised, strict=True))
    ctx = Ctx(models, "none")
    _sample(sd1_parts, ctx)
    assert [img for _, _, img in ctx.seen] == [None] * STEPS  # progress (and cancelling) goes on


def test_no_listener_no_decode(models, sd1_parts, monkeypatch):
    monkeypatch.setattr(previewer, "find_taesd", lambda *a: pytest.fail("looked for a TAESD nobody sees"))
    ctx = Ctx(models, "taesd")
    ctx.wants_preview = False
    _sample(sd1_parts, ctx)
    assert [img for _, _, img in ctx.seen] == [None] * STEPS


def test_taesd_previews_are_throttled_on_the_cpu_but_the_last_step_shows(models):
    times = iter([0.0, 0.0, 0.1, 0.2, 0.3, 0.3, 0.35, 0.35])  # the clock: before (and after) each decode
    p = previewer.Previewer(Ctx(models, "taesd"), "sd1", clock=lambda: next(times))
    assert p.interval == previewer.CPU_INTERVAL == 0.25 and p.max_side == previewer.CPU_MAX_LATENT_SIDE == 32
    z = torch.randn(1, 4, 8, 8)
    assert [p(step, 5, z) is not None for step in range(1, 6)] == [True, False, False, True, True]
    slow = iter([0.0, 0.5, 1.0, 2.4, 2.5, 2.5])  # a decode of 0.5 s: the next waits 4 x 0.5 s after it
    p = previewer.Previewer(Ctx(models, "taesd"), "sd1", clock=lambda: next(slow))
    assert [p(step, 9, z) is not None for step in range(1, 5)] == [True, False, False, True]
    gpu = SimpleNamespace(env=None, device=torch.device("cuda"), paths=None, models=None)
    on_gpu = previewer.Previewer(gpu, "sd1")  # a GPU decodes every step, as ComfyUI, up to 512 px
    assert (on_gpu.interval, on_gpu.cost_ratio, on_gpu.max_side) == (0.0, 0.0, 64)


def test_flux_uses_taef1_and_huge_latents_are_shrunk(models, tinies, monkeypatch):
    p = previewer.Previewer(Ctx(models, "auto"), "flux", interval=0.0)
    p.max_side = 8  # 32 on the CPU, 64 on a GPU; small here to stay fast
    assert p.kind == "taesd" and p.taesd.variant == "taef1"
    z = torch.randn(2, 16, 16, 10, generator=torch.Generator().manual_seed(3))  # the model's space
    image = p(1, 2, z)
    assert image.shape == (1, 64, 40, 3)  # the longest latent side shrunk to 8
    want = _diffusers_decode(tinies["taef1"], F.interpolate(z[:1], size=(8, 5), mode="area"))
    assert float((image - want).abs().max()) < 1e-5
    assert previewer.Previewer(Ctx(models, "auto"), "sdxl").kind == "latent2rgb"  # no taesdxl file here


def test_the_engine_holds_the_method(monkeypatch, tmp_path):
    monkeypatch.delenv("NODEGEN_PREVIEW", raising=False)
    assert Engine().env.preview_method == "auto" and Engine().env.preview_source == "default"
    monkeypatch.setenv("NODEGEN_PREVIEW", "None")
    engine = Engine()
    assert (engine.preview_method, engine.env.preview_source) == ("none", "NODEGEN_PREVIEW")
    assert Engine(preview="latent2rgb").preview_method == "latent2rgb"  # an option wins over the variable
    monkeypatch.setenv("NODEGEN_PREVIEW", "fancy")
    with pytest.raises(ValueError, match="NODEGEN_PREVIEW: unknown preview method 'fancy'; expected one of auto"):
        Engine()
    with pytest.raises(ValueError, match="unknown preview method 'x'"):
        Engine(preview="latent2rgb").set_preview_method("x")


def test_the_editor_s_preview_option(monkeypatch, capsys):
    from nodegen.gui.app import main, make_engine, parse_args

    monkeypatch.setenv("NODEGEN_PREVIEW", "latent2rgb")
    args = parse_args(["--preview", "none", "--device", "cpu"])
    assert make_engine(args).preview_method == "none"
    assert make_engine(parse_args(["--device", "cpu"])).preview_method == "latent2rgb"
    with pytest.raises(SystemExit):
        parse_args(["--preview", "fancy"])
    monkeypatch.setenv("NODEGEN_PREVIEW", "fancy")
    assert main(["--screenshot", "x.png"]) == 2
    assert "NODEGEN_PREVIEW: unknown preview method 'fancy'" in capsys.readouterr().err


def test_an_engine_run_sends_taesd_previews_to_its_listeners(models, tinies, tmp_path, no_throttle, monkeypatch):
    """The engine's setting reaches the sampler of a real run: its listeners (the editor, the
    server's event stream) get TAESD previews, then latent2rgb ones once the method changes."""
    monkeypatch.delenv("NODEGEN_PREVIEW", raising=False)
    (models / "checkpoints").mkdir()
    os.symlink(sd1_fixture().single_file, models / "checkpoints" / "sd1.safetensors")
    api = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd1.safetensors"}},
           "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["1", 1]}},
           "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
           "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
           "5": {"class_type": "KSampler", "inputs": {
               "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0],
               "seed": 3, "steps": 2, "cfg": 4.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}}}
    engine = Engine(models=models, input_dir=tmp_path, output_dir=tmp_path / "out", device="cpu")
    events = []
    engine.subscribe(events.append)
    result = engine.run(api, targets=["5"])
    assert result.ok, result.failures
    previews = [e.data["preview"] for e in events if e.kind == "node_progress"]
    assert len(previews) == 2 and previews[0].shape == (1, 64, 64, 3)
    out = result.outputs["5"]["latent"]["samples"]  # euler's last step lands on the denoised estimate
    assert float((previews[-1] - _diffusers_decode(tinies["taesd"], out)).abs().max()) < 1e-4
    engine.set_preview_method("latent2rgb", "settings")
    events.clear()
    engine.run(api, set={"5.seed": 4}, targets=["5"])
    assert [e.data["preview"].shape for e in events if e.kind == "node_progress"] == [(1, 8, 8, 3)] * 2


def test_a_failing_decode_falls_back_to_latent2rgb(models, monkeypatch):
    monkeypatch.setattr(previewer, "_warned", set())
    p = previewer.Previewer(Ctx(models, "taesd"), "sd1", interval=0.0)
    assert p.kind == "taesd"
    monkeypatch.setattr(p.taesd, "decode", lambda *a, **kw: (_ for _ in ()).throw(RuntimeError("out of memory")))
    z = torch.randn(1, 4, 8, 8)
    assert torch.equal(p(1, 2, z), latent_preview(z, "sd1")) and p.kind == "latent2rgb"
