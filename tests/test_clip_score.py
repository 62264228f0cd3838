"""CLIP scores and ranking with a tiny random CLIP: the scores are transformers' CLIPModel logits
(100 x cosine similarity), the nodes show them and pass them on, ranking keeps the best in order."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

from nodegen.clip.load import load_clip
from nodegen.clip.preprocess import pixels
from nodegen.clip.score import clip_scores, rank
from nodegen.models.clip_tokenizer import load_clip_tokenizer
from nodegen.nodes import clip as clip_nodes
from tests.support.clip_fixtures import tiny_clip


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("clipscore")
    model = tiny_clip(seed=2)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(root / "tiny.safetensors"))
    return model, load_clip(root / "tiny.safetensors")


IMAGES = torch.rand(4, 32, 32, 3, generator=torch.Generator().manual_seed(3))
TEXTS = ["a red circle", "a blue star on a white background", "a cat"]


def _logits(model, images, texts):
    tok = load_clip_tokenizer()
    ids = tok(texts, padding="max_length", max_length=77, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model(input_ids=ids, pixel_values=pixels(images, 32)).logits_per_image


def test_score_equals_transformers_clip_logits(tiny):
    model, clip = tiny
    torch.testing.assert_close(clip_scores(clip, IMAGES, TEXTS), _logits(model, IMAGES, TEXTS), rtol=0, atol=1e-4)


def test_score_against_reference_images_is_image_cosine(tiny):
    model, clip = tiny
    s = clip_scores(clip, IMAGES, references=IMAGES[:2])
    assert s.shape == (4, 2)
    torch.testing.assert_close(s.diagonal(), torch.full((2,), 100.0), rtol=0, atol=1e-3)  # an image matches itself
    with pytest.raises(ValueError, match="either texts or reference"):
        clip_scores(clip, IMAGES)


def test_rank_orders_best_first_and_keeps_k():
    assert rank(torch.tensor([1.0, 5.0, 3.0, 5.0])) == [1, 3, 2, 0]
    assert rank(torch.tensor([1.0, 5.0, 3.0]), 2) == [1, 2]


def _ctx():
    ui = {}
    return SimpleNamespace(device="cpu", models=None, paths=None, ui=lambda **kw: ui.update(kw), ui_data=ui)


def test_score_and_rank_nodes(tiny):
    model, clip = tiny
    ctx = _ctx()
    mean, best, best_index, summary = clip_nodes.clip_score.run(ctx, clip, IMAGES, "\n".join(TEXTS) + "\n\n")
    ref = _logits(model, IMAGES, TEXTS)
    assert mean == pytest.approx(float(ref.mean()), abs=1e-3) and best == pytest.approx(float(ref.max()), abs=1e-3)
    assert best_index == int(ref.max(1).values.argmax())
    assert summary.count("\n") == 3 and "a cat:" in summary and ctx.ui_data["text"] == [summary]

    ctx = _ctx()
    kept, top, summary, labels = clip_nodes.clip_rank_images.run(ctx, clip, IMAGES, "a cat", None, "center", 2)
    col = ref[:, 2]
    order = rank(col, 2)
    assert torch.equal(kept, IMAGES[order]) and top == pytest.approx(float(col[order[0]]), abs=1e-3)
    assert ctx.ui_data["order"] == order and summary.startswith(f"1. image {order[0]}:")
    assert labels == "\n".join(f"image {i}" for i in order)
    names = "\n".join(f"seed={s}" for s in (10, 11, 12, 13))
    *_, labels = clip_nodes.clip_rank_images.run(_ctx(), clip, IMAGES, "a cat", None, "center", 2, names)
    assert labels == "\n".join(f"seed={10 + i}" for i in order)
    with pytest.raises(ValueError, match="CLIPRankImages: input 'labels' has 2 line"):
        clip_nodes.clip_rank_images.run(_ctx(), clip, IMAGES, "a cat", None, "center", 2, "a\nb")
    with pytest.raises(ValueError, match="CLIPRankImages: text is empty"):
        clip_nodes.clip_rank_images.run(_ctx(), clip, IMAGES, "  ", None, "center", 2)


def test_loader_nodes_read_the_model_folders_and_cache(tiny, tmp_path):
    from nodegen.models.manager import ModelManager
    from nodegen.models.paths import ModelPaths

    model, clip = tiny
    for kind in ("clip", "clip_vision"):
        (tmp_path / kind).mkdir()
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / kind / "tiny.safetensors"))
    ctx = SimpleNamespace(device="cpu", models=ModelManager(device="cpu"),
                          paths=ModelPaths([tmp_path], use_env=False, use_config=False))
    full = clip_nodes.clip_model_loader.run(ctx, "tiny.safetensors")
    assert clip_nodes.clip_model_loader.run(ctx, "tiny.safetensors") is full  # kept by the model manager
    vision = clip_nodes.clip_vision_loader.run(ctx, "tiny.safetensors")
    out = clip_nodes.clip_vision_encode.run(ctx, vision, IMAGES, "center")
    torch.testing.assert_close(out.image_embeds, clip.embed_images(IMAGES), rtol=0, atol=1e-5)
    assert out.last_hidden_state.shape == (4, 17, 64) and out.penultimate_hidden_states.shape == (4, 17, 64)
    with pytest.raises(ValueError, match="CLIPModelLoader: clip_name 'missing.safetensors' was not found"):
        clip_nodes.clip_model_loader.run(ctx, "missing.safetensors")
