"""The shipped demo model through the real graphs: what random weights cannot show.

A prompt controls the picture (checked by the generator-aware scorer), img2img at low denoise
keeps the composition, inpainting changes only the masked region.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nodegen.models.paths import ModelPaths
from nodegen.runtime.engine import Engine
from tools.demo import shapes
from tools.demo.scorer import score, score_image

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "nodegen" / "assets" / "models" / "nodegen-demo-shapes.safetensors"
GRAPHS = ROOT / "graphs"


def test_demo_model_ships_and_is_offered():
    assert DEMO.is_file(), "the demo model is part of the package"
    assert DEMO.stat().st_size <= 25 * 2**20
    names = ModelPaths([], use_env=False, use_config=False).list("checkpoints")
    assert "nodegen-demo-shapes.safetensors" in names
    card = DEMO.with_suffix(".md")
    assert card.is_file() and "cfg 5" in card.read_text().lower()


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo")
    return Engine(output_dir=tmp / "out", input_dir=tmp / "in", device="cpu")


def _array(result) -> np.ndarray:
    return np.asarray(result.images[0].convert("RGB"), dtype=np.float32) / 255.0


def test_prompt_controls_the_picture(engine):
    cases = [("a large red circle on a white background, in the center", "red", "circle"),
             ("a large blue square on a white background, in the center", "blue", "square")]
    for prompt, color, shape in cases:
        colors, shapes_seen = [], []
        for seed in range(4):
            r = engine.run(GRAPHS / "txt2img.json", set={"Prompt.text": prompt, "Sampler.seed": seed})
            assert r.ok, r.failures
            det = score_image(_array(r))
            colors.append(det["color"])
            shapes_seen.append(det["shape"])
        assert colors.count(color) >= 3, (prompt, colors)
        assert shapes_seen.count(shape) >= 2, (prompt, shapes_seen)


def _save_input(engine, attrs, name) -> np.ndarray:
    img = shapes.render(attrs, 64)
    Path(engine.env.input_dir).mkdir(parents=True, exist_ok=True)
    img.save(Path(engine.env.input_dir) / name)
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def test_img2img_keeps_the_composition_at_low_denoise(engine):
    attrs = {"shape": "circle", "color": "red", "size": "large", "position": "top left",
             "background": "yellow"}
    src = _save_input(engine, attrs, "src.png")
    prompt = shapes.caption(attrs)
    r = engine.run(GRAPHS / "img2img.json", set={"Source image.image": "src.png", "Prompt.text": prompt,
                                                 "Sampler.denoise": 0.3, "Sampler.seed": 3})
    assert r.ok, r.failures
    out = _array(r)
    det = score(out, attrs)
    assert det["color_ok"] and det["background"] == "yellow", det
    assert np.abs(out - src).mean() < 0.08
    # at full denoise the same prompt makes a different picture: the input is what was kept
    full = engine.run(GRAPHS / "img2img.json", set={"Source image.image": "src.png", "Prompt.text": prompt,
                                                    "Sampler.denoise": 1.0, "Sampler.seed": 3})
    assert np.abs(_array(full) - src).mean() > np.abs(out - src).mean()


def test_inpainting_changes_only_the_masked_region(engine):
    attrs = {"shape": "circle", "color": "red", "size": "large", "position": "center",
             "background": "white"}
    src = _save_input(engine, attrs, "base.png")
    rgba = Image.open(Path(engine.env.input_dir) / "base.png").convert("RGBA")
    a = np.array(rgba)
    a[16:48, 16:48, 3] = 0  # transparent = repaint (the centre, where the red circle is)
    Image.fromarray(a).save(Path(engine.env.input_dir) / "hole.png")
    r = engine.run(GRAPHS / "inpaint.json", set={
        "Image with hole.image": "hole.png", "Sampler.seed": 1, "Sampler.denoise": 1.0,
        "Prompt.text": "a large blue square on a white background, in the center"})
    assert r.ok, r.failures
    out = _array(r)
    inside = np.zeros((64, 64), bool)
    inside[16:48, 16:48] = True
    outside = np.ones((64, 64), bool)
    outside[8:56, 8:56] = False  # one latent cell of margin around the mask
    change_in = np.abs(out - src)[inside].mean()
    change_out = np.abs(out - src)[outside].mean()
    assert change_out < 0.05, change_out
    assert change_in > 4 * change_out, (change_in, change_out)


def test_demo_model_loads_as_a_diffusers_folder_too(tmp_path, monkeypatch):
    """The shipped single file, written out as a diffusers folder, loads through the folder
    loader (diffusers' own from_pretrained, offline) and computes the same thing."""
    import torch

    from nodegen.models.loader import load_checkpoint
    from tools.demo.export import export_folder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, text, vae = load_checkpoint(DEMO)
    folder = export_folder(vae.vae, text.encoders[0], model.unet, tmp_path / "nodegen-demo-shapes")
    model2, text2, vae2 = load_checkpoint(folder)
    assert (model2.family, model2.prediction_type) == (model.family, model.prediction_type) == ("sd1", "epsilon")
    ids = text.tokenizers[0](["a small red star"], padding="max_length", max_length=77,
                             return_tensors="pt").input_ids
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([500])
    with torch.no_grad():
        torch.testing.assert_close(text.encoders[0](ids).last_hidden_state, text2.encoders[0](ids).last_hidden_state)
        cond = text.encoders[0](ids).last_hidden_state
        torch.testing.assert_close(model.unet(z, t, cond).sample, model2.unet(z, t, cond).sample)
        torch.testing.assert_close(vae.vae.decode(z).sample, vae2.vae.decode(z).sample)


CANNY = ROOT / "nodegen" / "assets" / "models" / "controlnet" / "nodegen-demo-canny.safetensors"


def _shape_mask(img: np.ndarray) -> np.ndarray:
    """Pixels far from the border's median colour (the shape), for an image in [0, 1]."""
    border = np.concatenate([img[:2].reshape(-1, 3), img[-2:].reshape(-1, 3),
                             img[:, :2].reshape(-1, 3), img[:, -2:].reshape(-1, 3)])
    return np.sqrt(((img - np.median(border, 0)) ** 2).sum(-1)) > 0.25


def test_demo_controlnet_puts_the_shape_where_the_edges_are(engine):
    """graphs/controlnet.json as shipped (demo model + demo Canny ControlNet, both built in): the
    prompt names no position, the layout's edges decide where the shape goes."""
    assert CANNY.is_file() and CANNY.stat().st_size <= 25 * 2**20
    assert "nodegen-demo-canny.safetensors" in ModelPaths([], use_env=False, use_config=False).list("controlnet")
    ious = {1.0: [], 0.0: []}
    for k, position in enumerate(("top left", "bottom right", "top right")):
        attrs = {"shape": "square", "color": "yellow", "size": "large", "position": position,
                 "background": "green"}
        gt = _shape_mask(_save_input(engine, attrs, f"layout{k}.png"))
        for strength in ious:
            r = engine.run(GRAPHS / "controlnet.json", set={
                "Layout.image": f"layout{k}.png", "Apply ControlNet.strength": strength, "Sample.seed": k,
                "Positive.text": "a large yellow square on a green background"})
            assert r.ok, r.failures
            m = _shape_mask(np.asarray(r.ui["13"]["images"][0].convert("RGB"), dtype=np.float32) / 255.0)
            ious[strength].append((m & gt).sum() / max((m | gt).sum(), 1))
    with_cn, without = np.mean(ious[1.0]), np.mean(ious[0.0])
    assert with_cn > 0.5, ious
    assert with_cn > without + 0.25, ious
