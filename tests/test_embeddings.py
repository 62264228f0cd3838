"""Textual-inversion embeddings (``embedding:name``) against diffusers' ``load_textual_inversion``:
SD1 (A1111 safetensors, A1111 .pt, diffusers .bin), SD2, SDXL (one set per encoder); weighting;
errors naming the file; the embeddings model folder and the CLIPTextEncode node."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import save_file

from nodegen.models.embeddings import EmbeddingLookup, load_embedding
from nodegen.models.objects import TextEncoder
from tests.support.fixtures import fixture

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def sd1(tmp_path_factory):
    return fixture("sd1", tmp_path_factory.mktemp("sd1"))


def _folder(tmp_path, files: dict[str, object]) -> EmbeddingLookup:
    folder = tmp_path / "embeddings"
    folder.mkdir(exist_ok=True)
    for name, data in files.items():
        if name.endswith(".safetensors"):
            save_file(data, str(folder / name))
        else:
            torch.save(data, folder / name)
    return EmbeddingLookup(lambda n: folder / n if (folder / n).is_file() else None, str(folder))


def _fresh_tokenizer(tok):
    """A new tokenizer like ``tok`` for diffusers to add tokens to (quicker than a deep copy)."""
    from nodegen.models.clip_tokenizer import load_clip_tokenizer

    return load_clip_tokenizer(tok.model_max_length, tok.pad_token)


def _diffusers_embeds(ns, path, prompt: str, token: str = "<emb>"):
    from diffusers import StableDiffusionPipeline

    te, tok = copy.deepcopy(ns.text_encoder), _fresh_tokenizer(ns.tokenizer)
    pipe = StableDiffusionPipeline(vae=ns.vae, text_encoder=te, tokenizer=tok, unet=ns.unet, scheduler=ns.scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.load_textual_inversion(str(path), token=token)
    embeds, _ = pipe.encode_prompt(prompt.replace("embedding:style", token), "cpu", 1, False)
    return embeds


@pytest.mark.parametrize("kind", ["a1111.safetensors", "a1111.pt", "diffusers.bin"])
def test_sd1_embedding_equals_diffusers(sd1, tmp_path, kind):
    vecs = torch.randn(3, 64, generator=torch.Generator().manual_seed(1)) * 0.5
    data = {"a1111.safetensors": {"emb_params": vecs},
            "a1111.pt": {"string_to_param": {"*": vecs}, "name": "style", "step": 100},
            "diffusers.bin": {"<style>": vecs[0]}}[kind]
    ext = kind.split(".")[1]
    lookup = _folder(tmp_path, {f"style.{ext}": data})
    te = TextEncoder.from_components([sd1.tokenizer], [sd1.text_encoder], "sd1")
    prompt = "a photo of embedding:style, a cat"
    [item] = te.encode(prompt, device="cpu", embeddings=lookup)
    ref = _diffusers_embeds(sd1, tmp_path / "embeddings" / f"style.{ext}", prompt)
    assert item.embeds.shape == ref.shape
    assert torch.allclose(item.embeds, ref, atol=1e-5), float((item.embeds - ref).abs().max())
    plain = te.encode("a photo of embedding:style, a cat", device="cpu")[0]  # without a lookup: text
    assert not torch.allclose(plain.embeds, ref, atol=1e-3)


def test_weighted_embedding_and_errors(sd1, tmp_path):
    vecs = torch.randn(2, 64, generator=torch.Generator().manual_seed(2))
    lookup = _folder(tmp_path, {"style.safetensors": {"emb_params": vecs},
                                "wide.safetensors": {"emb_params": torch.zeros(1, 768)}})
    te = TextEncoder.from_components([sd1.tokenizer], [sd1.text_encoder], "sd1")
    [w] = te.encode("a cat, (embedding:style:1.3)", device="cpu", embeddings=lookup)
    [u] = te.encode("a cat, embedding:style", device="cpu", embeddings=lookup)
    [e] = te.encode("", device="cpu")
    # ComfyUI's rule on the embedding's two positions (after BOS and "a cat ,": positions 4 and 5)
    want = e.embeds + (u.embeds - e.embeds) * 1.3
    assert torch.allclose(w.embeds[0, 4:6], want[0, 4:6], atol=1e-5)
    assert torch.allclose(w.embeds[0, :4], u.embeds[0, :4], atol=1e-6)
    with pytest.raises(ValueError, match="embedding 'nope' was not found in the embeddings folder"):
        te.encode("embedding:nope", device="cpu", embeddings=lookup)
    with pytest.raises(ValueError, match="wide.*width 768.*needs 64"):
        te.encode("embedding:wide", device="cpu", embeddings=lookup)


def test_pickled_embedding_is_loaded_safely(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"string_to_param": {"*": torch.zeros(1, 4)}, "x": Evil()}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="bad.pt: cannot be loaded safely"):
        load_embedding(tmp_path / "bad.pt")


def test_sd2_embedding(tmp_path_factory, tmp_path):
    ns = fixture("sd2", tmp_path_factory.mktemp("sd2"))
    width = ns.text_encoder.config.hidden_size
    vecs = torch.randn(2, width, generator=torch.Generator().manual_seed(3))
    lookup = _folder(tmp_path, {"style.safetensors": {"emb_params": vecs}})
    te = TextEncoder.from_components([ns.tokenizer], [ns.text_encoder], "sd2")
    [item] = te.encode("embedding:style a house", device="cpu", embeddings=lookup)
    ref = _diffusers_embeds(ns, tmp_path / "embeddings" / "style.safetensors", "embedding:style a house")
    assert torch.allclose(item.embeds, ref, atol=1e-5)


def test_sdxl_embedding_both_encoders(tmp_path_factory, tmp_path):
    from diffusers import StableDiffusionXLPipeline

    ns = fixture("sdxl", tmp_path_factory.mktemp("sdxl"))
    g = torch.Generator().manual_seed(4)
    data = {"clip_l": torch.randn(2, 64, generator=g), "clip_g": torch.randn(2, 128, generator=g)}
    lookup = _folder(tmp_path, {"style.safetensors": data})
    te = TextEncoder.from_components([ns.tokenizer, ns.tokenizer_2], [ns.text_encoder, ns.text_encoder_2], "sdxl")
    [item] = te.encode("a embedding:style castle", device="cpu", embeddings=lookup)
    te1, te2 = copy.deepcopy(ns.text_encoder), copy.deepcopy(ns.text_encoder_2)
    tok1, tok2 = _fresh_tokenizer(ns.tokenizer), _fresh_tokenizer(ns.tokenizer_2)
    pipe = StableDiffusionXLPipeline(vae=ns.vae, text_encoder=te1, text_encoder_2=te2, tokenizer=tok1, tokenizer_2=tok2,
                                     unet=ns.unet, scheduler=ns.scheduler, force_zeros_for_empty_prompt=False)
    pipe.load_textual_inversion(data["clip_l"], token="<s>", text_encoder=te1, tokenizer=tok1)
    pipe.load_textual_inversion(data["clip_g"], token="<s>", text_encoder=te2, tokenizer=tok2)
    embeds, _, pooled, _ = pipe.encode_prompt("a <s> castle", device="cpu", num_images_per_prompt=1,
                                              do_classifier_free_guidance=False)
    assert torch.allclose(item.embeds, embeds, atol=1e-5) and torch.allclose(item.pooled, pooled, atol=1e-5)


def test_clip_text_encode_node_finds_embeddings_folder(sd1, tmp_path):
    from nodegen.runtime.engine import Engine

    vecs = torch.randn(1, 64, generator=torch.Generator().manual_seed(5))
    (tmp_path / "checkpoints").mkdir()
    import shutil

    shutil.copy(sd1.single_file, tmp_path / "checkpoints" / "m.safetensors")
    _folder(tmp_path, {"sub_style.safetensors": {"emb_params": vecs}})
    engine = Engine(models=tmp_path, output_dir=tmp_path / "out", device="cpu")
    assert "sub_style.safetensors" in engine.env.paths.list("embeddings")
    doc = {"format": "nodegen-workflow", "version": 1, "nodes": {
        "1": {"type": "CheckpointLoader", "inputs": {"ckpt_name": "m.safetensors"}},
        "2": {"type": "CLIPTextEncode", "inputs": {"clip": {"from": ["1", "clip"]}, "text": "embedding:sub_style dog"}},
    }}
    r = engine.run(doc, targets=["2"])
    assert r.ok, (r.problems, [str(f) for f in r.failures])
    te = TextEncoder.from_components([sd1.tokenizer], [sd1.text_encoder], "sd1")
    plain = te.encode("embedding:sub_style dog", device="cpu")[0].embeds
    assert not torch.allclose(r.outputs["2"]["conditioning"][0].embeds, plain, atol=1e-3)
    again = engine.run(doc, targets=["2"])
    assert again.cached == ["1", "2"]
    (tmp_path / "embeddings" / "sub_style.safetensors").unlink()  # the file is part of the signature
    save_file({"emb_params": vecs * 2}, str(tmp_path / "embeddings" / "sub_style.safetensors"))
    third = engine.run(doc, targets=["2"])
    assert "2" in third.executed
