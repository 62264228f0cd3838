"""CLIP loading: transformers and open_clip layouts, files and folders, full CLIP and CLIP vision,
all recognised from the tensors and giving the same embeddings as transformers' own CLIPModel."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from nodegen.clip import layout
from nodegen.clip.load import load_clip, load_clip_vision
from nodegen.clip.preprocess import pixels
from tests.support.clip_fixtures import tiny_clip, to_open_clip, vision_only


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory):
    """One tiny CLIP saved in every supported form."""
    root = tmp_path_factory.mktemp("clip")
    model = tiny_clip(seed=1)
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(sd, str(root / "hf.safetensors"))
    save_file({k: v.half() for k, v in sd.items()}, str(root / "hf-fp16.safetensors"))
    save_file(to_open_clip(model), str(root / "open_clip.safetensors"))
    torch.save(to_open_clip(model), str(root / "open_clip_pytorch_model.bin"))
    save_file(vision_only(model), str(root / "vision.safetensors"))
    model.save_pretrained(str(root / "folder"))
    save_file({k: v for k, v in sd.items() if k.startswith("text_model.")}, str(root / "text_only.safetensors"))
    return model, root


def _reference(model, image, texts):
    from nodegen.models.clip_tokenizer import load_clip_tokenizer

    ids = load_clip_tokenizer()(texts, padding="max_length", max_length=77, return_tensors="pt")["input_ids"]
    px = pixels(image, model.config.vision_config.image_size)
    with torch.no_grad():  # projected, not normalised (CLIPModel's outputs are normalised)
        img = model.visual_projection(model.vision_model(pixel_values=px).pooler_output)
        txt = model.text_projection(model.text_model(input_ids=ids).pooler_output)
    return img, txt


IMAGE = torch.rand(2, 40, 36, 3, generator=torch.Generator().manual_seed(0))
TEXTS = ["a blue star", "a photo of a cat on a mat"]


@pytest.mark.parametrize("name", ["hf.safetensors", "open_clip.safetensors", "open_clip_pytorch_model.bin", "folder"])
def test_full_clip_layouts_give_transformers_embeddings(clip_files, name):
    model, root = clip_files
    clip = load_clip(root / name)
    img_ref, txt_ref = _reference(model, IMAGE, TEXTS)
    torch.testing.assert_close(clip.embed_images(IMAGE), img_ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(clip.embed_texts(TEXTS), txt_ref, rtol=0, atol=1e-5)
    assert clip.logit_scale == pytest.approx(100.0)


def test_fp16_file_loads_as_float32(clip_files):
    model, root = clip_files
    clip = load_clip(root / "hf-fp16.safetensors")
    assert next(clip.text.parameters()).dtype == torch.float32
    img_ref, _ = _reference(model, IMAGE, TEXTS)
    torch.testing.assert_close(clip.embed_images(IMAGE), img_ref, rtol=0, atol=5e-2)


@pytest.mark.parametrize("name", ["vision.safetensors", "hf.safetensors", "open_clip.safetensors"])
def test_clip_vision_output_matches_transformers(clip_files, name):
    from transformers import CLIPVisionModelWithProjection

    model, root = clip_files
    vision = load_clip_vision(root / name)
    ref_model = CLIPVisionModelWithProjection(model.config.vision_config).eval()
    ref_model.load_state_dict(vision_only(model))
    with torch.no_grad():
        ref = ref_model(pixel_values=pixels(IMAGE, 32), output_hidden_states=True)
    out = vision.encode(IMAGE)
    torch.testing.assert_close(out.image_embeds, ref.image_embeds, rtol=0, atol=1e-5)
    torch.testing.assert_close(out.last_hidden_state, ref.last_hidden_state, rtol=0, atol=1e-5)
    torch.testing.assert_close(out.penultimate_hidden_states, ref.hidden_states[-2], rtol=0, atol=1e-5)
    assert out["image_embeds"] is out.image_embeds


def test_open_clip_layout_converts_back_to_the_same_tensors(clip_files):
    model, _ = clip_files
    sd = {k: v for k, v in model.state_dict().items() if not k.endswith("position_ids")}
    back = layout.to_transformers({"module." + k: v for k, v in to_open_clip(model).items()})
    assert set(back) == set(sd)
    for k, v in sd.items():
        assert torch.equal(back[k], v), k


def _shapes(width: int, layers: int, patch: int, grid: int, dim: int, text_width: int | None) -> dict:
    """A meta-device open_clip state dict with real shapes (no memory), for config derivation."""
    e = lambda *s: torch.empty(*s, device="meta")  # noqa: E731
    sd = {"visual.conv1.weight": e(width, 3, patch, patch), "visual.class_embedding": e(width),
          "visual.positional_embedding": e(grid * grid + 1, width), "visual.proj": e(width, dim),
          "visual.ln_pre.weight": e(width), "visual.ln_pre.bias": e(width),
          "visual.ln_post.weight": e(width), "visual.ln_post.bias": e(width)}
    blocks = {"ln_1.weight": (width,), "ln_1.bias": (width,), "attn.in_proj_weight": (3 * width, width),
              "attn.in_proj_bias": (3 * width,), "attn.out_proj.weight": (width, width),
              "attn.out_proj.bias": (width,), "ln_2.weight": (width,), "ln_2.bias": (width,),
              "mlp.c_fc.weight": (4 * width, width), "mlp.c_fc.bias": (4 * width,),
              "mlp.c_proj.weight": (width, 4 * width), "mlp.c_proj.bias": (width,)}
    for i in range(layers):
        sd.update({f"visual.transformer.resblocks.{i}.{k}": e(*s) for k, s in blocks.items()})
    if text_width:
        sd.update({"token_embedding.weight": e(49408, text_width), "positional_embedding": e(77, text_width),
                   "ln_final.weight": e(text_width), "ln_final.bias": e(text_width),
                   "text_projection": e(text_width, dim), "transformer.resblocks.0.mlp.c_fc.weight": e(4 * text_width, text_width),
                   "transformer.resblocks.0.ln_1.weight": e(text_width)})
    return sd


@pytest.mark.parametrize("case", [
    # (name, width, layers, patch, grid, dim, text width) -> heads, act, text heads
    ("ViT-B/32 (OpenAI)", 768, 12, 32, 7, 512, 512, 12, "quick_gelu", 8),
    ("ViT-L/14 (OpenAI)", 1024, 24, 14, 16, 768, 768, 16, "quick_gelu", 12),
    ("ViT-H/14 (LAION)", 1280, 32, 14, 16, 1024, 1024, 16, "gelu", 16),
    ("ViT-bigG/14 (LAION)", 1664, 48, 14, 16, 1280, 1280, 16, "gelu", 20),
], ids=lambda c: c[0])
def test_configs_of_published_clips_from_tensor_shapes(case):
    _, width, layers, patch, grid, dim, tw, heads, act, text_heads = case
    sd = layout.to_transformers(_shapes(width, layers, patch, grid, dim, tw))
    v = layout.vision_config(sd)
    t = layout.text_config(sd, v)
    assert (v["hidden_size"], v["num_hidden_layers"], v["patch_size"], v["image_size"]) == (width, layers, patch, grid * patch)
    assert (v["num_attention_heads"], v["hidden_act"], v["projection_dim"]) == (heads, act, dim)
    assert (t["hidden_size"], t["num_attention_heads"], t["hidden_act"], t["vocab_size"]) == (tw, text_heads, act, 49408)


def test_open_clip_shapes_convert_to_the_transformers_layout():
    sd = layout.to_transformers(_shapes(1280, 2, 14, 16, 1024, None))
    assert sd["vision_model.encoder.layers.1.self_attn.q_proj.weight"].shape == (1280, 1280)
    assert sd["visual_projection.weight"].shape == (1024, 1280)
    assert layout.vision_config(sd)["num_attention_heads"] == 16


def test_wrong_files_fail_clearly(clip_files, tmp_path):
    _, root = clip_files
    with pytest.raises(ValueError, match="image tower only"):
        load_clip(root / "vision.safetensors")
    with pytest.raises(ValueError, match="no CLIP image tower"):
        load_clip_vision(root / "text_only.safetensors")
    save_file({"unet.conv_in.weight": torch.zeros(2, 2)}, str(tmp_path / "unet.safetensors"))
    with pytest.raises(ValueError, match="not a CLIP state dict"):
        load_clip(tmp_path / "unet.safetensors")
