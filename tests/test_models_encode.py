"""TextEncoder.encode: tokenizer, equality with diffusers' encode_prompt, weighting, chunking,
CLIP skip."""

from __future__ import annotations

import pytest
import torch

from nodegen.diffusion.prompt_weights import parse_weights
from nodegen.models.objects import TextEncoder
from tests.support.fixtures import fixture

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def sd1(tmp_path_factory):
    return fixture("sd1", tmp_path_factory.mktemp("sd1"))


@pytest.fixture(scope="session")
def sdxl(tmp_path_factory):
    return fixture("sdxl", tmp_path_factory.mktemp("sdxl"))


def _te(ns) -> TextEncoder:
    if ns.family == "sdxl":
        return TextEncoder.from_components([ns.tokenizer, ns.tokenizer_2],
                                           [ns.text_encoder, ns.text_encoder_2], "sdxl")
    return TextEncoder.from_components([ns.tokenizer], [ns.text_encoder], ns.family)


def test_tokenizer_ids():
    from nodegen.models.clip_tokenizer import load_clip_tokenizer

    tok = load_clip_tokenizer()
    assert tok("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]


@pytest.mark.parametrize("prompt", ["a photo of a cat", "", "a red car, (not weighted here"])
def test_sd1_equals_diffusers(sd1, prompt):
    te = _te(sd1)
    [item] = te.encode(prompt, device="cpu")
    ref, _ = sd1.pipeline().encode_prompt(prompt, "cpu", 1, False)
    assert item.pooled is None
    assert item.embeds.shape == (1, 77, 64)
    assert torch.equal(item.embeds, ref)


@pytest.mark.parametrize("clip_skip", [1])
def test_sd1_clip_skip_equals_diffusers(sd1, clip_skip):
    te = _te(sd1).set_layer(-(clip_skip + 1))
    [item] = te.encode("a photo of a cat", device="cpu")
    # diffusers' clip_skip path reaches for ``text_encoder.text_model``, which transformers 5
    # flattened away; its rule, written out: hidden_states[-(clip_skip + 1)] + final layer norm
    ids = sd1.tokenizer("a photo of a cat", padding="max_length", max_length=77,
                        return_tensors="pt").input_ids
    with torch.no_grad():
        out = sd1.text_encoder(ids, output_hidden_states=True)
        ref = sd1.text_encoder.final_layer_norm(out.hidden_states[-(clip_skip + 1)])
    assert torch.equal(item.embeds, ref)
    # -1 is the last layer: the default output
    [last] = _te(sd1).set_layer(-1).encode("a photo of a cat", device="cpu")
    [default] = _te(sd1).encode("a photo of a cat", device="cpu")
    assert torch.equal(last.embeds, default.embeds)
    assert not torch.equal(item.embeds, default.embeds)
    with pytest.raises(ValueError, match="out of range"):
        _te(sd1).set_layer(-3)


@pytest.mark.parametrize("prompt", ["a photo of a cat", ""])
def test_sdxl_equals_diffusers(sdxl, prompt):
    te = _te(sdxl)
    [item] = te.encode(prompt, device="cpu")
    embeds, _, pooled, _ = sdxl.pipeline().encode_prompt(prompt, device="cpu", num_images_per_prompt=1,
                                                         do_classifier_free_guidance=False)
    assert item.embeds.shape == (1, 77, 64 + 128)
    assert item.pooled.shape == (1, 128)
    assert torch.equal(item.embeds, embeds)
    assert torch.equal(item.pooled, pooled)


def test_sdxl_refiner_equals_diffusers(tmp_path_factory):
    ns = fixture("sdxl_refiner", tmp_path_factory.mktemp("refiner"))
    te = TextEncoder.from_components([ns.tokenizer_2], [ns.text_encoder_2], "sdxl_refiner")
    [item] = te.encode("a photo of a cat", device="cpu")
    embeds, _, pooled, _ = ns.pipeline().encode_prompt("a photo of a cat", device="cpu", num_images_per_prompt=1,
                                                       do_classifier_free_guidance=False)
    assert item.embeds.shape == (1, 77, 128)
    assert torch.equal(item.embeds, embeds) and torch.equal(item.pooled, pooled)


def test_weighting_moves_only_weighted_tokens(sd1):
    te = _te(sd1)
    [plain] = te.encode("a photo of a cat", device="cpu")
    [w1] = te.encode("a photo of a (cat:1.0)", device="cpu")
    assert torch.equal(plain.embeds, w1.embeds)  # weight 1 is no weighting
    [heavy] = te.encode("a photo of a (cat:1.5)", device="cpu")
    [empty] = te.encode("", device="cpu")
    # token 5 is "cat" (BOS a photo of a cat EOS): z' = z_empty + 1.5 (z - z_empty)
    expect = empty.embeds[0, 5] + 1.5 * (plain.embeds[0, 5] - empty.embeds[0, 5])
    torch.testing.assert_close(heavy.embeds[0, 5], expect, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(heavy.embeds[0, :5], plain.embeds[0, :5], rtol=0, atol=0)
    torch.testing.assert_close(heavy.embeds[0, 6:], plain.embeds[0, 6:], rtol=0, atol=0)


def test_long_prompt_is_chunked(sd1):
    te = _te(sd1)
    words = " ".join(["cat"] * 80)  # 80 tokens -> 2 chunks
    [item] = te.encode(words, device="cpu")
    assert item.embeds.shape == (1, 154, 64)
    # the first chunk is 75 "cat" tokens framed by BOS/EOS: equal to encoding 75 cats
    [first] = te.encode(" ".join(["cat"] * 75), device="cpu")
    torch.testing.assert_close(item.embeds[:, :77], first.embeds, rtol=1e-5, atol=1e-5)
    [second] = te.encode(" ".join(["cat"] * 5), device="cpu")
    torch.testing.assert_close(item.embeds[:, 77:], second.embeds, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(first.embeds, second.embeds)


def test_sdxl_long_prompt_pooled_from_first_chunk(sdxl):
    te = _te(sdxl)
    [item] = te.encode(" ".join(["dog"] * 100), device="cpu")
    assert item.embeds.shape == (1, 154, 192)
    [first] = te.encode(" ".join(["dog"] * 75), device="cpu")
    # (a batch of two chunks may round differently from a batch of one)
    torch.testing.assert_close(item.pooled, first.pooled, rtol=1e-5, atol=1e-5)


def test_parse_weights():
    assert parse_weights("a photo of a cat") == [("a photo of a cat", 1.0)]
    assert parse_weights("a (red:1.3) cat") == [("a ", 1.0), ("red", 1.3), (" cat", 1.0)]
    p = dict((t, w) for t, w in parse_weights("((big)) [small] dog"))
    assert p["big"] == pytest.approx(1.21) and p["small"] == pytest.approx(1 / 1.1)
    assert parse_weights(r"\(literal\) x") == [("(literal) x", 1.0)]
    assert parse_weights("((x):1.5)") == [("x", pytest.approx(1.65))]
    assert parse_weights("(a (b:2) c)") == [("a ", pytest.approx(1.1)), ("b", pytest.approx(2.2)),
                                             (" c", pytest.approx(1.1))]
    assert parse_weights("unmatched ( paren") == [("unmatched ( paren", 1.0)]
