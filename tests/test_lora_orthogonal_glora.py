"""LyCORIS OFT (``oft_blocks``; the older ``oft_diag``), BOFT, GLoRA and norm-layer changes
(``w_norm`` / ``b_norm``) in kohya-named files.

The oracle is ComfyUI's ``calculate_weight`` rule of each weight adapter (comfy/weight_adapter/
oft.py, boft.py, glora.py; comfy/lora.py's "diff" patch for norms), written out below as it reads;
``oft_diag``, which ComfyUI does not read, follows LyCORIS' ``DiagOFTModule.make_weight``."""

from __future__ import annotations

import pytest
import torch

from nodegen.models.lora import apply_lora, parse_lora
from nodegen.models.objects import DiffusionModel, TextEncoder
from tests.support.fixtures import fixture

torch.set_num_threads(1)
LINEAR = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"
CONV = "down_blocks.0.resnets.0.conv1.weight"


@pytest.fixture(scope="module")
def sd1(tmp_path_factory):
    return fixture("sd1", tmp_path_factory.mktemp("sd1"))


def _key(param: str) -> str:
    return "lora_unet_" + param[: -len(".weight")].replace(".", "_")


# ---- ComfyUI's rules, as its calculate_weight methods compute them ----------------------------

def comfy_oft(weight, blocks, alpha, strength):
    weight = weight.clone()
    if alpha is None:
        alpha = 0
    block_num, block_size, *_ = blocks.shape
    eye = torch.eye(block_size)
    q = blocks - blocks.transpose(1, 2)
    normed_q = q
    if alpha > 0:
        q_norm = torch.norm(q) + 1e-8
        if q_norm > alpha:
            normed_q = q * alpha / q_norm
    r = (eye + normed_q) @ (eye - normed_q).float().inverse()
    _, *shape = weight.shape
    lora_diff = torch.einsum("k n m, k n ... -> k m ...", (r * strength) - strength * eye,
                             weight.view(block_num, block_size, *shape)).view(-1, *shape)
    weight += strength * lora_diff
    return weight


def comfy_boft(weight, blocks, rescale, alpha, strength):
    weight = weight.clone()
    boft_m, block_num, boft_b, *_ = blocks.shape
    eye = torch.eye(boft_b)
    q = blocks - blocks.transpose(-1, -2)
    normed_q = q
    if alpha > 0:
        q_norm = torch.norm(q) + 1e-8
        if q_norm > alpha:
            normed_q = q * alpha / q_norm
    r = (eye + normed_q) @ (eye - normed_q).float().inverse()
    inp = org = weight
    r_b = boft_b // 2
    for i in range(boft_m):
        bi = r[i]
        g = 2
        k = 2**i * r_b
        if strength != 1:
            bi = bi * strength + (1 - strength) * eye
        inp = inp.unflatten(0, (-1, g, k)).transpose(1, 2).flatten(0, 2).unflatten(0, (-1, boft_b))
        inp = torch.einsum("b i j, b j ...-> b i ...", bi, inp)
        inp = inp.flatten(0, 1).unflatten(0, (-1, k, g)).transpose(1, 2).flatten(0, 2)
    if rescale is not None:
        inp = inp * rescale
    lora_diff = inp - org
    return weight + strength * lora_diff


def comfy_glora(weight, v, alpha, strength):
    old_glora = False
    if v[3].shape[1] == v[2].shape[0] == v[0].shape[0] == v[1].shape[1]:
        rank = v[0].shape[0]
        old_glora = True
    if v[3].shape[0] == v[2].shape[1] == v[0].shape[1] == v[1].shape[0]:
        if old_glora and v[1].shape[0] == weight.shape[0] and weight.shape[0] == weight.shape[1]:
            pass
        else:
            old_glora = False
            rank = v[1].shape[0]
    a1, a2, b1, b2 = (t.flatten(start_dim=1) for t in v)
    alpha = alpha / rank if alpha is not None else 1.0
    if old_glora:
        lora_diff = (torch.mm(b2, b1) + torch.mm(torch.mm(weight.flatten(start_dim=1), a2), a1)).reshape(weight.shape)
    else:
        if weight.dim() > 2:
            lora_diff = torch.einsum("o i ..., i j -> o j ...",
                                     torch.einsum("o i ..., i j -> o j ...", weight, a1), a2).reshape(weight.shape)
        else:
            lora_diff = torch.mm(torch.mm(weight, a1), a2).reshape(weight.shape)
        lora_diff += torch.mm(b1, b2).reshape(weight.shape)
    return weight + (strength * alpha) * lora_diff


def lycoris_oft_diag(weight, oft_diag, scale):
    """LyCORIS' DiagOFTModule.make_weight (its multiplier as the scale)."""
    k, n = oft_diag.shape[0], oft_diag.shape[1]
    w = torch.einsum("k n m, k n ... -> k m ...", oft_diag * scale + torch.eye(n), weight.reshape(k, n, *weight.shape[1:]))
    return w.reshape(weight.shape)


# ---- files ---------------------------------------------------------------------------------------

def _files(unet) -> dict[str, tuple[dict, dict]]:
    """type -> (state dict, {param: oracle(weight, strength)})"""
    g = torch.Generator().manual_seed(0)
    p = dict(unet.named_parameters())
    lin, conv = p[LINEAR].detach(), p[CONV].detach()
    files: dict[str, tuple[dict, dict]] = {}

    # OFT: the linear layer's blocks exceed the constraint (scaled down), the conv's do not
    oft_l, oft_c = torch.randn(lin.shape[0] // 4, 4, 4, generator=g), torch.randn(conv.shape[0] // 8, 8, 8, generator=g) * 0.01
    files["oft"] = ({f"{_key(LINEAR)}.oft_blocks": oft_l, f"{_key(LINEAR)}.alpha": torch.tensor(0.5),
                     f"{_key(CONV)}.oft_blocks": oft_c, f"{_key(CONV)}.alpha": torch.tensor(10.0),
                     f"{_key(CONV)}.rescale": torch.ones(conv.shape[0], 1, 1, 1) * 2},  # read, unused (as ComfyUI)
                    {LINEAR: lambda w, s: comfy_oft(w, oft_l, 0.5, s), CONV: lambda w, s: comfy_oft(w, oft_c, 10.0, s)})
    d_l, d_c = torch.randn(lin.shape[0] // 4, 4, 4, generator=g) * 0.1, torch.randn(conv.shape[0] // 8, 8, 8, generator=g) * 0.1
    files["oft_diag"] = ({f"{_key(LINEAR)}.oft_diag": d_l, f"{_key(CONV)}.oft_diag": d_c},
                         {LINEAR: lambda w, s: lycoris_oft_diag(w, d_l, s), CONV: lambda w, s: lycoris_oft_diag(w, d_c, s)})
    # BOFT: 2 butterfly stages of 4x4 blocks; the conv one rescaled, no constraint
    b_l, b_c = torch.randn(2, lin.shape[0] // 4, 4, 4, generator=g), torch.randn(2, conv.shape[0] // 4, 4, 4, generator=g) * 0.1
    resc = torch.rand(conv.shape[0], 1, 1, 1, generator=g) + 0.5
    files["boft"] = ({f"{_key(LINEAR)}.oft_blocks": b_l, f"{_key(LINEAR)}.alpha": torch.tensor(0.3),
                      f"{_key(CONV)}.oft_blocks": b_c, f"{_key(CONV)}.rescale": resc, f"{_key(CONV)}.alpha": torch.tensor(0.0)},
                     {LINEAR: lambda w, s: comfy_boft(w, b_l, None, 0.3, s), CONV: lambda w, s: comfy_boft(w, b_c, resc, 0.0, s)})
    # GLoRA (current LyCORIS layout), rank 3, with and without alpha
    r = 3

    def glora(w):
        out_c, in_c = w.shape[0], w.shape[1]
        return [torch.randn(in_c, r, generator=g) * 0.1, torch.randn(r, in_c, generator=g) * 0.1,
                torch.randn(out_c, r, generator=g) * 0.1, torch.randn(r, w[0].numel(), generator=g) * 0.1]
    g_l, g_c = glora(lin), glora(conv)
    sd = {f"{_key(LINEAR)}.{n}.weight": t for n, t in zip(("a1", "a2", "b1", "b2"), g_l, strict=True)}
    sd |= {f"{_key(CONV)}.{n}.weight": t for n, t in zip(("a1", "a2", "b1", "b2"), g_c, strict=True)}
    sd[f"{_key(LINEAR)}.alpha"] = torch.tensor(1.5)
    files["glora"] = (sd, {LINEAR: lambda w, s: comfy_glora(w, g_l, 1.5, s), CONV: lambda w, s: comfy_glora(w, g_c, None, s)})
    # norm layers: a GroupNorm's weight and bias, and a LayerNorm's weight
    gn, ln = "down_blocks.0.resnets.0.norm1", "mid_block.attentions.0.transformer_blocks.0.norm1"
    wn, bn, wn2 = (torch.randn(p[f"{gn}.weight"].shape, generator=g), torch.randn(p[f"{gn}.bias"].shape, generator=g),
                   torch.randn(p[f"{ln}.weight"].shape, generator=g))
    files["norm"] = ({f"{_key(gn + '.weight')}.w_norm": wn, f"{_key(gn + '.weight')}.b_norm": bn,
                      f"{_key(ln + '.weight')}.w_norm": wn2},
                     {f"{gn}.weight": lambda w, s: w + s * wn, f"{gn}.bias": lambda w, s: w + s * bn,
                      f"{ln}.weight": lambda w, s: w + s * wn2})
    return files


@pytest.mark.parametrize("kind", ["oft", "oft_diag", "boft", "glora", "norm"])
def test_patched_weights_equal_comfyui(sd1, kind):
    files = _files(sd1.unet)
    sd, want = files[kind]
    model = DiffusionModel.from_unet(sd1.unet, "sd1")
    base = {k: v.detach().clone() for k, v in sd1.unet.named_parameters()}
    lora = parse_lora(sd)
    assert not lora.unknown
    for strength in (1.0, 0.5):
        patched, _ = apply_lora(model, None, lora, strength, 1.0)
        with patched.use("cpu") as u:
            got = {k: v.detach().clone() for k, v in u.named_parameters()}
        for name, rule in want.items():
            expect = rule(base[name].clone(), strength)
            assert not torch.allclose(expect, base[name])
            torch.testing.assert_close(got[name], expect, rtol=1e-4, atol=1e-5, msg=f"{kind} {name} s={strength}")
        assert {k for k in got if not torch.equal(got[k], base[k])} == set(want)


def test_oft_strength_is_squared_as_comfyui(sd1):
    """ComfyUI scales OFT's change by the strength twice: at 0.5 it is a quarter of the full change."""
    sd, want = _files(sd1.unet)["oft"]
    w = dict(sd1.unet.named_parameters())[LINEAR].detach()
    full = want[LINEAR](w.clone(), 1.0) - w
    half = want[LINEAR](w.clone(), 0.5) - w
    torch.testing.assert_close(half, 0.25 * full)


def test_text_encoder_oft_and_norm(sd1):
    """``lora_te_`` keys: OFT on a linear layer and w_norm/b_norm on a LayerNorm of the text encoder."""
    te = {k: v.detach().clone() for k, v in sd1.text_encoder.named_parameters()}  # patched in place below
    q, ln = "encoder.layers.0.self_attn.q_proj", "encoder.layers.0.layer_norm1"  # kohya: text_model_encoder_...
    g = torch.Generator().manual_seed(1)
    blocks = torch.randn(te[q + ".weight"].shape[0] // 8, 8, 8, generator=g) * 0.05
    wn, bn = torch.randn(te[ln + ".weight"].shape, generator=g), torch.randn(te[ln + ".bias"].shape, generator=g)
    key = "lora_te_text_model_" + q.replace(".", "_")
    nkey = "lora_te_text_model_" + ln.replace(".", "_")
    sd = {f"{key}.oft_blocks": blocks, f"{key}.alpha": torch.tensor(0.0), f"{nkey}.w_norm": wn, f"{nkey}.b_norm": bn}
    clip = TextEncoder.from_components([sd1.tokenizer], [sd1.text_encoder], "sd1")
    _, patched = apply_lora(None, clip, parse_lora(sd), 1.0, 0.5)
    with patched.use("cpu") as [enc]:
        got = dict(enc.named_parameters())
        torch.testing.assert_close(got[q + ".weight"], comfy_oft(te[q + ".weight"].clone(), blocks, 0.0, 0.5))
        torch.testing.assert_close(got[ln + ".weight"], te[ln + ".weight"] + 0.5 * wn)
        torch.testing.assert_close(got[ln + ".bias"], te[ln + ".bias"] + 0.5 * bn)


# ---- LoraLoader ----------------------------------------------------------------------------------

def _workflow(lora: str | None) -> dict:
    nodes = {"1": {"type": "CheckpointLoader", "inputs": {"ckpt_name": "tiny-sd1.safetensors", "prediction": "auto"}}}
    src = ["1", "model"], ["1", "clip"]
    if lora:
        nodes["2"] = {"type": "LoraLoader", "inputs": {"model": {"from": src[0]}, "clip": {"from": src[1]},
                                                       "lora_name": lora, "strength_model": 1.0, "strength_clip": 1.0}}
        src = ["2", "model"], ["2", "clip"]
    nodes |= {
        "3": {"type": "CLIPTextEncode", "inputs": {"clip": {"from": src[1]}, "text": "a red circle"}},
        "4": {"type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "5": {"type": "KSampler", "inputs": {"model": {"from": src[0]}, "positive": {"from": ["3", "conditioning"]},
                                             "negative": {"from": ["3", "conditioning"]},
                                             "latent_image": {"from": ["4", "latent"]}, "seed": 3, "steps": 2,
                                             "cfg": 1.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}},
    }
    return {"format": "nodegen-workflow", "version": 1, "nodes": nodes}


def test_loraloader_applies_each_type_and_refuses_unknown(sd1, tmp_path):
    import os

    from safetensors.torch import save_file

    from nodegen.runtime.engine import Engine

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "loras").mkdir()
    os.symlink(sd1.single_file, tmp_path / "checkpoints" / "tiny-sd1.safetensors")
    for kind, (sd, _) in _files(sd1.unet).items():
        save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "loras" / f"{kind}.safetensors"))
    # (IA)^3, which nodegen does not read
    save_file({f"{_key(LINEAR)}.weight": torch.ones(4), f"{_key(LINEAR)}.on_input": torch.tensor(True)},
              str(tmp_path / "loras" / "ia3.safetensors"))
    engine = Engine(models=tmp_path, output_dir=tmp_path, device="cpu")
    base = engine.run(_workflow(None), targets=["5"])
    assert base.ok, base.failures
    base_latent = base.output("5", "latent")["samples"]
    for kind in ("oft", "oft_diag", "boft", "glora", "norm"):
        res = engine.run(_workflow(f"{kind}.safetensors"), targets=["5"])
        assert res.ok, (kind, [str(f) for f in res.failures])
        assert (res.output("5", "latent")["samples"] - base_latent).abs().max() > 1e-4, kind
    res = engine.run(_workflow("ia3.safetensors"), targets=["5"])
    assert not res.ok
    text = " ".join(str(f) for f in res.failures)
    assert "LoraLoader" in text and "lora_name" in text and "ia3.safetensors" in text, text
    assert "(IA)^3" in text and "does not read" in text, text


def test_dora_on_oft_is_refused_naming_the_file():
    sd = {f"{_key(LINEAR)}.oft_blocks": torch.zeros(8, 4, 4), f"{_key(LINEAR)}.dora_scale": torch.ones(32, 1)}
    with pytest.raises(ValueError, match=r"oft\.safetensors: layer lora_unet_.*DoRA \(dora_scale\) combined with OFT is not read"):
        parse_lora(sd, "oft.safetensors")
