"""The built-in demo CLIP with the built-in demo diffusion model: what random weights cannot show.

Numbers measured by tools/eval_demo_clip.py (one torch thread, so bit-reproducible) and reported
in the model card (nodegen/assets/models/clip/nodegen-demo-clip.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodegen.models.paths import ModelPaths
from tools import eval_demo_clip as ev

CARD = Path(ev.CLIP_FILE).with_suffix(".md")
#: Measured: 100% / 100% (the card); a margin for other torch builds.
ZERO_SHOT_SHAPE, ZERO_SHOT_COLOUR = 0.95, 0.95


def test_demo_clip_ships_with_its_card_and_is_offered():
    assert ev.CLIP_FILE.is_file() and ev.CLIP_FILE.stat().st_size <= 8 * 2**20
    text = CARD.read_text(encoding="utf-8")
    assert "zero-shot" in text and "tools/train_demo_clip.py" in text
    paths = ModelPaths([], use_env=False, use_config=False)
    assert ev.CLIP_FILE.name in paths.list("clip") and ev.CLIP_FILE.name in paths.list("clip_vision")


@pytest.fixture(scope="module")
def models():
    return ev.load_models()


def test_zero_shot_accuracy_on_held_out_pictures(models):
    acc = ev.zero_shot(models[0])
    assert acc["shape"] >= ZERO_SHOT_SHAPE and acc["colour"] >= ZERO_SHOT_COLOUR, acc


def test_ranking_16_seeds_puts_blue_stars_first(models):
    res = ev.ranking(*models, n=16)  # the batch of the card: 3 blue stars among 16
    hits = res["blue_star_in_rank_order"]
    assert any(hits) and not all(hits), "the batch holds both blue stars and misses (else ranking proves nothing)"
    first_miss = hits.index(False)
    assert all(hits[:first_miss]) and not any(hits[first_miss:]), hits


def test_guidance_raises_shape_accuracy_at_the_example_settings(models):
    """The example graph's settings (the published step through the model, gradient normalised,
    scale 0.05, from 30% of the schedule) on the first 8 held-out prompts: shape accuracy 87.5% ->
    100%, colour 100% -> 100% (the card). On all 200 the shape change is within noise (84.5% ->
    85.0%: 13 pictures fixed, 12 broken) while the CLIP score rises 51.22 -> 52.37: this pins the
    measured direction at these seeds; the tiny-model tests prove that guidance raises the CLIP score."""
    res = ev.guidance_effect(*models, n=8, scale=0.05, cutouts=4, steps=10, start=0.3, normalise=True)
    assert res["guided"]["shape"] > res["plain"]["shape"], res
    assert res["guided"]["colour"] >= res["plain"]["colour"], res
