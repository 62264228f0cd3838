"""Every example graph works on a fresh install with no model of the user's: an empty models
root (NODEGEN_MODELS points at an empty folder, no config file), only the models the package
ships. Each output is checked for what it should be; graphs whose metadata ``requires`` a model
the package cannot ship are instead checked to fail validation naming the file and the need
(tests/test_graphs.py runs them with fixture models)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nodegen import Engine
from nodegen.models.paths import ModelPaths
from tools.demo.scorer import score_image

ROOT = Path(__file__).resolve().parents[1]
GRAPHS = ROOT / "graphs"
ASSETS = ROOT / "nodegen" / "assets" / "models"
ALL = sorted(GRAPHS.glob("*.json"))
REQUIRES = [p for p in ALL if json.loads(p.read_text())["metadata"].get("requires")]
RUNNABLE = [p for p in ALL if p not in REQUIRES]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    empty = tmp_path_factory.mktemp("no_models")
    mp = pytest.MonkeyPatch()
    mp.setenv("NODEGEN_MODELS", str(empty))  # conftest already points NODEGEN_CONFIG at no file
    tmp = tmp_path_factory.mktemp("fresh")
    eng = Engine(output_dir=tmp / "out", input_dir=tmp / "in", device="cpu")
    assert eng.env.paths.roots == [empty]
    yield eng
    mp.undo()


def _array(result, i: int = 0) -> np.ndarray:
    return np.asarray(result.images[i].convert("RGB"), dtype=np.float32) / 255.0


def test_shipped_weights_stay_small_and_are_offered():
    total = sum(p.stat().st_size for p in ASSETS.rglob("*") if p.suffix == ".safetensors")
    assert total < 45 * 2**20, total
    paths = ModelPaths([], use_env=False, use_config=False)
    assert "nodegen-demo-outlines.safetensors" in paths.list("loras")
    assert "nodegen-demo-esrgan-x4.safetensors" in paths.list("upscale_models")
    assert {"auto", "nodegen-demo-vgg.safetensors"} <= set(paths.list("style_models"))
    for weights in ("lora/nodegen-demo-outlines", "upscale_models/nodegen-demo-esrgan-x4",
                    "style_models/nodegen-demo-vgg"):
        assert (ASSETS / f"{weights}.md").is_file(), f"{weights} has a model card"


def test_auto_style_model_prefers_the_users_vgg19(tmp_path):
    builtin = ASSETS / "style_models" / "nodegen-demo-vgg.safetensors"
    assert ModelPaths([tmp_path], use_env=False, use_config=False).resolve("style_models", "auto") == builtin
    (tmp_path / "style_models").mkdir()
    (tmp_path / "style_models" / "vgg19-dcbb9e9d.pth").write_bytes(b"x")
    found = ModelPaths([tmp_path], use_env=False, use_config=False).resolve("style_models", "auto")
    assert found == tmp_path / "style_models" / "vgg19-dcbb9e9d.pth"


@pytest.mark.parametrize("path", REQUIRES, ids=[p.stem for p in REQUIRES])
def test_graph_that_needs_a_model_says_which(path, engine):
    wf = engine.prepare(path)
    need = wf.metadata["requires"]
    problems = engine.validate(wf).problems
    missing = [p for p in problems if p.code == "missing_file"]
    assert missing, "a graph that requires a model the package cannot ship fails validation here"
    for p in missing:
        assert all(n in p.message for n in need), p.message
        assert "not found" in p.message and "--models" in p.message


@pytest.mark.parametrize("path", RUNNABLE, ids=[p.stem for p in RUNNABLE])
def test_example_runs_out_of_the_box(path, engine):
    result = engine.run(engine.prepare(path))
    assert result.ok, [str(p) for p in result.problems] + [str(f) + f.traceback for f in result.failures]
    assert result.images
    img = _array(result)
    assert img.std() > 0.02, "not a blank picture"
    check = CHECKS.get(path.stem)
    if check is not None:
        check(engine, result, img)


def _upscale(engine, result, img):
    src = Image.open(GRAPHS / "images" / "shapes.png")
    assert img.shape[:2] == (src.height * 4, src.width * 4)
    # closer to a reference than bicubic: a held-out picture, degraded as in training
    from tools.demo import sr_data, sr_metrics

    rng = np.random.default_rng(99)
    lrs, hrs = [], []
    for _ in range(6):
        hr = sr_data.render_hr(rng, 128)
        hrs.append(hr)
        lrs.append(sr_data.degrade(hr, rng))
    lr = np.concatenate(lrs, 1)  # one 32 x 192 strip
    hr = torch.from_numpy(np.concatenate(hrs, 1)).permute(2, 0, 1)[None].float() / 255
    Path(engine.env.input_dir).mkdir(parents=True, exist_ok=True)
    Image.fromarray(lr).save(Path(engine.env.input_dir) / "lr.png")
    r = engine.run(GRAPHS / "upscale_esrgan.json", set={"Source.image": "lr.png"})
    assert r.ok, r.failures
    out = torch.from_numpy(_array(r)).permute(2, 0, 1)[None]
    bic = sr_metrics.bicubic(torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255)
    assert out.shape == hr.shape
    assert sr_metrics.psnr(out, hr) > sr_metrics.psnr(bic, hr) + 0.3
    assert sr_metrics.ssim(out, hr) > sr_metrics.ssim(bic, hr)


def _hires(engine, result, img):
    assert img.shape[:2] == (128, 128)
    det = score_image(img)
    assert det["color"] == "red", det


def _style(engine, result, img):
    """The styled picture's Gram matrices are nearer the style's than the content's were, in the
    built-in network (which the graph used) and in an independent random VGG-19."""
    from nodegen.style.gatys import gram
    from nodegen.style.vgg import VGGFeatures, load_vgg19, random_vgg19_state_dict

    def load(name):
        return torch.from_numpy(np.asarray(Image.open(GRAPHS / "images" / name).convert("RGB"),
                                           np.float32) / 255).permute(2, 0, 1)[None]

    content, style = load("shapes.png"), load("style_bands.png")
    style = torch.nn.functional.interpolate(style, size=content.shape[-2:], mode="bilinear", antialias=True)
    out = torch.from_numpy(img).permute(2, 0, 1)[None]
    layers = {"relu1_1", "relu2_1", "relu3_1", "relu4_1"}
    for net in (load_vgg19(ASSETS / "style_models" / "nodegen-demo-vgg.safetensors"),
                VGGFeatures(random_vgg19_state_dict(seed=1, width_div=4))):
        with torch.no_grad():
            g = {k: {n: gram(f) for n, f in net(x, layers).items()} for k, x in
                 (("content", content), ("style", style), ("out", out))}
        before = sum(((g["content"][n] - g["style"][n]) ** 2).sum().item() for n in layers)
        after = sum(((g["out"][n] - g["style"][n]) ** 2).sum().item() for n in layers)
        assert after < 0.7 * before, (net.source, before, after)


def _style_img2img(engine, result, img):
    assert img.shape[:2] == (64, 64)


def _lora(engine, result, img):
    """Strength controls the trait: the share of hollow (outlined) shapes grows with it."""
    share = {}
    for s in (0.0, 0.5, 1.0):
        r = engine.run(GRAPHS / "lora.json", set={"LoRA.strength_model": s, "LoRA.strength_clip": s,
                                                  "Latent.batch_size": 8})
        assert r.ok, r.failures
        share[s] = np.mean([score_image(_array(r, i))["hollow"] for i in range(8)])
    assert share[0.0] <= share[0.5] <= share[1.0], share
    assert share[1.0] >= share[0.0] + 0.4, share


CHECKS = {"upscale_esrgan": _upscale, "hires_fix_esrgan": _hires, "style_transfer": _style,
          "style_to_img2img": _style_img2img, "lora": _lora}


def test_demo_lora_is_kohya_and_fits_the_demo_model_entirely():
    from nodegen.models.loader import load_checkpoint
    from nodegen.models.lora import lora_patch_dicts, read_lora

    lora = read_lora(ASSETS / "lora" / "nodegen-demo-outlines.safetensors")
    assert lora.layout == "kohya" and {ly.component for ly in lora.layers} == {"unet", "text_encoder"}
    assert all(ly.alpha == 4.0 and ly.rank == 8 for ly in lora.layers)
    model, text, _vae = load_checkpoint(ASSETS / "nodegen-demo-shapes.safetensors")
    unet_p, clip_p, unmatched = lora_patch_dicts(lora, model.unet, dict(zip(text.encoder_names, text.encoders,
                                                                             strict=True)))
    assert not unmatched and len(unet_p) + len(clip_p) == len(lora.layers) == 76
