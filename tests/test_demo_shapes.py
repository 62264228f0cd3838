"""The demo data set generator, its scorer, and (when exported) the demo model's folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from tools.demo import shapes
from tools.demo.export import SINGLE_FILE
from tools.demo.scorer import score, score_image

torch.set_num_threads(1)


def test_generator_is_deterministic():
    a = [shapes.sample_attributes(np.random.default_rng(7)) for _ in range(2)]
    assert a[0] == a[1]
    rng1, rng2 = np.random.default_rng(3), np.random.default_rng(3)
    for _ in range(5):
        x, y = shapes.sample_attributes(rng1), shapes.sample_attributes(rng2)
        assert shapes.caption(x) == shapes.caption(y)
        assert np.array_equal(shapes.render_array(x), shapes.render_array(y))
    img = shapes.render(a[0], 64)
    assert img.size == (64, 64) and img.mode == "RGB"


def test_caption_parse_round_trip():
    rng = np.random.default_rng(11)
    for _ in range(300):
        attrs = shapes.sample_attributes(rng)
        parsed = shapes.parse_prompt(shapes.caption(attrs))
        assert parsed == {k: attrs[k] for k in shapes.KEYS}
    assert shapes.caption({"shape": "star", "color": "red", "size": "small", "position": "top left",
                           "background": "blue"}) == "a small red star on a blue background, top left"
    assert shapes.parse_prompt("A big purple circle") == {"shape": "circle", "color": "purple"}
    assert shapes.parse_prompt("green square, centre, on an orange background") == {
        "shape": "square", "color": "green", "position": "center", "background": "orange"}


def test_scorer_is_right_on_ground_truth():
    rng = np.random.default_rng(2026)
    n, keys = 500, ("color_ok", "shape_ok", "position_ok", "size_ok")
    ok = dict.fromkeys(keys, 0)
    for _ in range(n):
        attrs = shapes.sample_attributes(rng)
        res = score(shapes.render_array(attrs, 64), attrs)
        for k in keys:
            ok[k] += res[k]
    assert all(ok[k] / n >= 0.98 for k in keys), ok
    # a wrong answer is caught: the same picture scored against other attributes
    attrs = {"shape": "star", "color": "red", "size": "small", "position": "top left", "background": "blue"}
    res = score(shapes.render_array(attrs, 64), {**attrs, "position": "bottom right", "size": "large"})
    assert res["color_ok"] and res["shape_ok"] and not res["position_ok"] and not res["size_ok"]


def test_scorer_accepts_float_and_handles_blank():
    attrs = shapes.sample_attributes(np.random.default_rng(5))
    img = shapes.render_array(attrs).astype(np.float32) / 255.0
    assert score_image(img)["color"] == attrs["color"]
    blank = np.full((64, 64, 3), 128, np.uint8)
    assert score_image(blank)["shape"] is None


def test_eval_set_is_fixed_and_held_out():
    items = shapes.eval_prompts()
    prompts = [p for p, _ in items]
    assert len(prompts) == 200 == len(set(prompts))
    assert prompts == [p for p, _ in shapes.eval_prompts()]
    rng = np.random.default_rng(1234)
    train = {shapes.caption(shapes.sample_attributes(rng)) for _ in range(5000)}
    assert not train & set(prompts)


FOLDER = Path(__file__).resolve().parents[1] / "tools" / "out" / "export"


@pytest.mark.skipif(not SINGLE_FILE.exists(), reason="demo weights not exported")
def test_single_file_is_small_sd1_layout():
    from safetensors import safe_open

    assert SINGLE_FILE.stat().st_size <= 25 * 1024 * 1024
    with safe_open(str(SINGLE_FILE), "pt") as f:
        keys = set(f.keys())
        assert f.get_tensor(next(iter(keys))).dtype == torch.float16
    assert any(k.startswith("model.diffusion_model.") for k in keys)
    assert any(k.startswith("first_stage_model.") for k in keys)
    assert any(k.startswith("cond_stage_model.transformer.") for k in keys)


@pytest.mark.skipif(not (FOLDER / "unet" / "config.json").exists(), reason="diffusers folder not exported")
def test_exported_folder_loads_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from nodegen.compat import torchvision as torchvision_fix

    torchvision_fix.apply()
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    total = sum(f.stat().st_size for f in FOLDER.rglob("*") if f.is_file())
    assert total <= 25 * 1024 * 1024
    kw = {"local_files_only": True}
    unet = UNet2DConditionModel.from_pretrained(FOLDER / "unet", **kw)
    vae = AutoencoderKL.from_pretrained(FOLDER / "vae", **kw)
    text = CLIPTextModel.from_pretrained(FOLDER / "text_encoder", **kw)
    assert unet.config.cross_attention_dim == text.config.hidden_size
    assert text.config.vocab_size == 49408 and text.config.hidden_size % 64 == 0
    assert vae.config.latent_channels == 4 and len(vae.config.block_out_channels) == 4
    assert vae.config.scaling_factor == pytest.approx(0.18215)
    sched = json.loads((FOLDER / "scheduler" / "scheduler_config.json").read_text())
    assert sched["beta_schedule"] == "scaled_linear" and sched["num_train_timesteps"] == 1000
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_scorer_tells_outlines_from_filled_shapes():
    """The demo LoRA's trait: outline renders are hollow, filled ones are not, and the class of an
    outline is measured on the filled region (so it is still right)."""
    from tools.demo.outlines import render_outline_array
    from tools.demo.scorer import score_image as detect

    items = shapes.eval_prompts()[:40]
    filled = [detect(shapes.render_array(a)) for _, a in items]
    hollow = [detect(render_outline_array(a)) for _, a in items]
    assert not any(d["hollow"] for d in filled)
    assert all(d["hollow"] for d in hollow)
    assert np.mean([d["shape"] == a["shape"] for d, (_, a) in zip(hollow, items, strict=True)]) >= 0.9
