"""nodegen's own CLIP text encoder and tokenizer against transformers' (the oracle): the same weights
give the same hidden states, pooled and projected outputs; the loaders build it from every layout;
a half-precision file stays half precision on the CPU with unchanged outputs; the tokenizer gives
transformers' ids."""

from __future__ import annotations

import json
import random

import pytest
import torch

from nodegen.models import clip_text_model as ctm
from nodegen.models.clip_tokenizer import ClipTokenizer, load_clip_tokenizer

torch.set_num_threads(1)

#: Tiny text encoders shaped like each family's (head size 64, the real vocabulary, 77 positions).
CASES = {
    "sd1_clip_l": dict(hidden_size=128, num_hidden_layers=3, hidden_act="quick_gelu", projection=False),
    "sd2_open_clip_h": dict(hidden_size=128, num_hidden_layers=3, hidden_act="gelu", projection=False),
    "sdxl_clip_l": dict(hidden_size=64, num_hidden_layers=3, hidden_act="quick_gelu", projection=False),
    "sdxl_big_g": dict(hidden_size=128, num_hidden_layers=3, hidden_act="gelu", projection=True, projection_dim=96),
    "old_config_eos_2": dict(hidden_size=64, num_hidden_layers=2, hidden_act="quick_gelu", projection=True,
                             eos_token_id=2),
}


def _config(case: dict) -> dict:
    width = case["hidden_size"]
    return dict(vocab_size=49408, hidden_size=width, intermediate_size=4 * width,
                num_hidden_layers=case["num_hidden_layers"], num_attention_heads=width // 64,
                max_position_embeddings=77, hidden_act=case["hidden_act"],
                projection_dim=case.get("projection_dim", width), bos_token_id=49406,
                eos_token_id=case.get("eos_token_id", 49407), pad_token_id=1)


def _transformers_model(case: dict, seed: int):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    cls = CLIPTextModelWithProjection if case["projection"] else CLIPTextModel
    model = cls(CLIPTextConfig(**_config(case))).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # layer norms and biases away from their initial 1 / 0
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model


def _ids(pad: int) -> torch.Tensor:
    """Three prompts as the encoders see them: short, long, and one with an EOS mid-way."""
    tok = ClipTokenizer.standard()
    rows = []
    for text in ("a photo of a cat", "(masterpiece:1.2), " * 20, "red <|endoftext|> blue"):
        ids = tok(text, add_special_tokens=False)["input_ids"][:75]
        rows.append([49406, *ids, 49407] + [pad] * (75 - len(ids)))
    return torch.tensor(rows)


@pytest.mark.parametrize("name", sorted(CASES))
def test_outputs_equal_transformers_with_the_same_weights(name):
    case = CASES[name]
    ref = _transformers_model(case, seed=len(name))
    ours = ctm.build(_config(case), case["projection"], {k: v.clone() for k, v in ref.state_dict().items()})
    assert sorted(ours.state_dict()) == sorted(ref.state_dict())  # the same keys, nothing renamed
    ids = _ids(pad=0 if case["hidden_act"] == "gelu" else 49407)
    with torch.no_grad():
        a = ref(ids, output_hidden_states=True)
        b = ours(ids, output_hidden_states=True)
        plain = ours(ids)
    assert len(b.hidden_states) == len(a.hidden_states) == case["num_hidden_layers"] + 1
    for x, y in zip(a.hidden_states, b.hidden_states, strict=True):
        torch.testing.assert_close(y, x, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(b.last_hidden_state, a.last_hidden_state, atol=1e-6, rtol=1e-6)
    if case["projection"]:
        torch.testing.assert_close(b.text_embeds, a.text_embeds, atol=1e-6, rtol=1e-6)
        assert b.text_embeds.shape[-1] == case.get("projection_dim", case["hidden_size"])
    else:
        torch.testing.assert_close(b.pooler_output, a.pooler_output, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(b[0], a[0], atol=1e-6, rtol=1e-6)  # positional access as ModelOutput's
    assert plain.hidden_states is None and torch.equal(plain.last_hidden_state, b.last_hidden_state)


def test_conversions_to_and_from_transformers(tmp_path):
    from transformers import CLIPTextModelWithProjection

    from nodegen.models.clip_text_load import load_folder

    case = CASES["sdxl_big_g"]
    ref = _transformers_model(case, seed=3)
    ours = ctm.build(_config(case), True, {k: v.clone() for k, v in ref.state_dict().items()})
    ids = _ids(pad=0)
    with torch.no_grad():
        want = ref(ids, output_hidden_states=True).hidden_states[-2]
        # as_transformers: the same weights in transformers' class (for diffusers pipelines)
        back = ctm.as_transformers(ours)
        assert isinstance(back, CLIPTextModelWithProjection)
        assert torch.equal(back(ids, output_hidden_states=True).hidden_states[-2], want)
        # our save_pretrained is read by transformers; transformers' folders by our loader
        ours.save_pretrained(tmp_path / "ours")
        theirs = CLIPTextModelWithProjection.from_pretrained(tmp_path / "ours", local_files_only=True)
        assert torch.equal(theirs(ids, output_hidden_states=True).hidden_states[-2], want)
        ref.to(torch.float16).save_pretrained(tmp_path / "theirs")
        ref.float()
        loaded = load_folder(tmp_path / "theirs", True, torch.float32)
        assert isinstance(loaded, ctm.ClipTextModelWithProjection)
        assert loaded.dtype == torch.float16  # the file's dtype on the CPU ...
        half = {k: v.half().float() for k, v in ref.state_dict().items()}
        expect = ctm.build(_config(case), True, half)(ids, output_hidden_states=True).hidden_states[-2]
        assert torch.equal(loaded(ids, output_hidden_states=True).hidden_states[-2], expect)  # ... same outputs
    with pytest.raises(ValueError, match="activation"):
        ctm.ClipTextConfig(hidden_act="relu6")
    with pytest.raises(ValueError, match="padding mask"):
        ours(ids, attention_mask=torch.zeros_like(ids))


def test_half_precision_storage_on_the_cpu_gives_the_float32_outputs(tmp_path_factory):
    """An fp16 checkpoint's text encoders stay fp16 on the CPU (half the memory), compute in float32,
    and encode exactly as the same weights upcast at load; LoRA-style patches are not rounded."""
    from nodegen.models.files import load_state_dict
    from nodegen.models.loader import load_single_file
    from nodegen.models.manager import ModelManager
    from tests.support.fixtures import fixture

    sdxl = fixture("sdxl", tmp_path_factory.mktemp("sdxl"))
    mgr = ModelManager(device="cpu")
    _, kept, _ = load_single_file(sdxl.single_file_fp16, manager=mgr)
    upcast = {k: v.float() if v.is_floating_point() else v for k, v in load_state_dict(sdxl.single_file_fp16).items()}
    _, wide, _ = load_single_file(sdxl.single_file_fp16, manager=mgr, state_dict=upcast)
    assert [e.dtype for e in kept.encoders] == [torch.float16, torch.float16]
    assert [e.dtype for e in wide.encoders] == [torch.float32, torch.float32]
    assert all(type(e).__module__ == ctm.__name__ for e in kept.encoders)
    prompt = "a (red:1.3) ball, embedding-free text"
    a, b = kept.encode(prompt)[0], wide.encode(prompt)[0]
    assert torch.equal(a.embeds, b.embeds) and torch.equal(a.pooled, b.pooled)
    assert [e.dtype for e in kept.encoders] == [torch.float16, torch.float16]  # the manager kept it
    name = "text_encoder_2.text_model.encoder.layers.0.mlp.fc1.weight"
    delta = torch.randn(kept.encoders[1].text_model.encoder.layers[0].mlp.fc1.weight.shape) * 1e-3
    pk, pw = kept.clone(), wide.clone()
    pk.add_patches({name: delta}, 0.7)
    pw.add_patches({name: delta}, 0.7)
    assert torch.equal(pk.encode(prompt)[0].embeds, pw.encode(prompt)[0].embeds)
    assert not torch.equal(pk.encode(prompt)[0].embeds, a.embeds)


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_loaded_text_encoders_encode_as_transformers_ones(family, tmp_path_factory, tmp_path):
    """The loader's CLIP (nodegen's encoders and tokenizers) against the same weights in transformers'
    encoders with transformers' tokenizers, through TextEncoder.encode: weights syntax, a prompt
    longer than 77 tokens, a textual-inversion embedding, CLIP skip, and SDXL's pooled output."""
    from safetensors.torch import save_file

    from nodegen.models.embeddings import EmbeddingLookup
    from nodegen.models.loader import load_single_file
    from nodegen.models.objects import TextEncoder
    from tests.support.fixtures import fixture

    fx = fixture(family, tmp_path_factory.mktemp(family))
    _, loaded, _ = load_single_file(fx.single_file)
    assert all(isinstance(t, ClipTokenizer) for t in loaded.tokenizers)
    assert all(type(e).__module__ == ctm.__name__ for e in loaded.encoders)
    pairs = [(fx.tokenizer, fx.text_encoder)] + ([(fx.tokenizer_2, fx.text_encoder_2)] if family == "sdxl" else [])
    ref = TextEncoder.from_components([t for t, _ in pairs], [e for _, e in pairs], family)
    g = torch.Generator().manual_seed(7)
    widths = [int(e.config.hidden_size) for _, e in pairs]
    vectors = ({"clip_l": torch.randn(2, widths[0], generator=g), "clip_g": torch.randn(2, widths[1], generator=g)}
               if family == "sdxl" else {"emb_params": torch.randn(2, widths[0], generator=g)})
    (tmp_path / "style.safetensors").parent.mkdir(exist_ok=True)
    save_file(vectors, str(tmp_path / "style.safetensors"))
    lookup = EmbeddingLookup(lambda n: tmp_path / n if (tmp_path / n).is_file() else None, str(tmp_path))
    prompt = "a (red:1.3) ball, embedding:style, [blue] sky, " + "and more words " * 30
    for clip_a, clip_b in ((loaded, ref), (loaded.set_layer(-2), ref.set_layer(-2))):
        [a] = clip_a.encode(prompt, device="cpu", embeddings=lookup)
        [b] = clip_b.encode(prompt, device="cpu", embeddings=lookup)
        assert a.embeds.shape == b.embeds.shape and a.embeds.shape[1] == 2 * 77
        torch.testing.assert_close(a.embeds, b.embeds, atol=1e-6, rtol=1e-6)
        if family == "sdxl":
            torch.testing.assert_close(a.pooled, b.pooled, atol=1e-6, rtol=1e-6)


PROMPTS = ["a photo of a cat", "", "  ", "(masterpiece:1.2), best quality, [bad hands], ((detailed))",
           "Ünïcödé café — “quotes” 日本語のテキスト 中文 한국어 😀🔥👍🏽", "it's don't we're they've I'm we'll he'd",
           "tabs\tand\nnewlines   and  spaces", "ＦＵＬＬ width １２３ and e\u0301 combining", "hello!! a!b?c...",
           "<|startoftext|>in<|endoftext|>side", "embedding:my_style, a dog", "x" * 300,
           " ".join(f"word{i}" for i in range(200)), "3.14159 -42 1e10 #hashtag @user ~tilde"]


def _random_prompts(n: int) -> list[str]:
    rng = random.Random(0)
    chars = "abcdefghijklmnopqrstuvwxyz ABCXYZ0123456789!?.,:;()[]{}<>|'\"-_+=*&^%$#@~`\\/ éüñçø日本😀\t\n"
    return ["".join(rng.choice(chars) for _ in range(rng.randint(1, 100))) for _ in range(n)]


@pytest.mark.parametrize("pad", ["<|endoftext|>", "!"])
def test_tokenizer_ids_equal_transformers(pad):
    from nodegen.models.clip_encode import make_chunks, tokenize_weighted

    ref, ours = load_clip_tokenizer(pad_token=pad), ClipTokenizer.standard(pad_token=pad)
    assert (ours.bos_token_id, ours.eos_token_id, ours.pad_token_id) == (ref.bos_token_id, ref.eos_token_id,
                                                                         ref.pad_token_id)
    for text in PROMPTS + _random_prompts(150):
        assert ours(text, add_special_tokens=False)["input_ids"] == \
            ref(text, add_special_tokens=False, verbose=False)["input_ids"], text
        assert tokenize_weighted(ours, text) == tokenize_weighted(ref, text), text  # weights syntax
        assert torch.equal(make_chunks(ours, *tokenize_weighted(ours, text))[0],
                           make_chunks(ref, *tokenize_weighted(ref, text))[0]), text  # long prompts: chunks
    a = ref(PROMPTS, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    b = ours(PROMPTS, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.attention_mask, b.attention_mask)
    assert ours.decode(a.input_ids[0]) == ref.decode(a.input_ids[0])


def test_tokenizer_from_a_folder(tmp_path):
    """Both folder layouts: ``tokenizer.json`` (transformers 5 writes it) and ``vocab.json`` +
    ``merges.txt`` (the hub's SD folders)."""
    from transformers import CLIPTokenizer

    from nodegen.models.clip_tokenizer import clip_vocab_and_merges

    vocab, merges = clip_vocab_and_merges()
    for pad in ("<|endoftext|>", "!"):
        saved = tmp_path / f"saved{len(pad)}"
        load_clip_tokenizer(pad_token=pad).save_pretrained(saved)
        hub = tmp_path / f"hub{len(pad)}"
        hub.mkdir()
        (hub / "vocab.json").write_text(json.dumps(vocab), "utf-8")
        (hub / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", "utf-8")
        (hub / "special_tokens_map.json").write_text(json.dumps({"pad_token": pad}), "utf-8")
        (hub / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 77}), "utf-8")
        for folder in (saved, hub):
            ours, ref = ClipTokenizer.from_folder(folder), CLIPTokenizer.from_pretrained(folder)
            assert ours is not None and ours.pad_token_id == ref.pad_token_id
            for text in PROMPTS[:10]:
                assert ours(text)["input_ids"] == ref(text)["input_ids"], (folder.name, text)
    config = json.loads((saved / "tokenizer_config.json").read_text("utf-8"))
    config["added_tokens_decoder"] = {"49408": {"content": "<my-token>", "special": False}}
    (saved / "tokenizer_config.json").write_text(json.dumps(config), "utf-8")
    assert ClipTokenizer.from_folder(saved) is None  # added tokens: left to transformers
    assert ClipTokenizer.from_folder(tmp_path / "missing") is None
