"""Hypernetworks (HypernetworkLoader), against ComfyUI's reading of the file and its rule for the
attention inputs: ``key = to_k(c + mlp_k(c) * s)``, ``value = to_v(c + mlp_v(c) * s)`` for every
attention whose context width has networks."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F

from nodegen.models.hypernetwork import installed, load_hypernetwork
from nodegen.models.objects import DiffusionModel, TextEncoder
from tests.support.fixtures import fixture
from tests.support.sampling import sample

torch.set_num_threads(1)


def _net(dim: int, seed: int, layer_norm: bool) -> OrderedDict:
    """An A1111 module's state dict, layer structure [1, 2, 1]: Linear, (act), (LayerNorm), Linear, (LayerNorm)."""
    g = torch.Generator().manual_seed(seed)
    sd = OrderedDict()
    sd["linear.0.weight"], sd["linear.0.bias"] = torch.randn(2 * dim, dim, generator=g) * 0.2, torch.randn(2 * dim, generator=g) * 0.1
    if layer_norm:
        sd["linear.2.weight"], sd["linear.2.bias"] = 1 + 0.1 * torch.randn(2 * dim, generator=g), 0.1 * torch.randn(2 * dim, generator=g)
    sd["linear.3.weight"], sd["linear.3.bias"] = torch.randn(dim, 2 * dim, generator=g) * 0.2, torch.randn(dim, generator=g) * 0.1
    if layer_norm:
        sd["linear.4.weight"], sd["linear.4.bias"] = 1 + 0.1 * torch.randn(dim, generator=g), 0.1 * torch.randn(dim, generator=g)
    return sd


def _file(path, dims=(32, 64), layer_norm=False, activation="relu"):
    data = {"activation_func": activation, "is_layer_norm": layer_norm, "use_dropout": True, "activate_output": False,
            "last_layer_dropout": False, "name": "test", "layer_structure": [1, 2, 1]}
    for k, dim in enumerate(dims):
        data[dim] = [_net(dim, 10 * k, layer_norm), _net(dim, 10 * k + 1, layer_norm)]
    torch.save(data, path)
    return path


def test_the_networks_are_read_as_comfyui_reads_them(tmp_path):
    plain = load_hypernetwork(_file(tmp_path / "a.pt"))
    assert set(plain.nets) == {32, 64}
    assert [type(m).__name__ for m in plain.nets[32][0]] == ["Linear", "ReLU", "Linear"]  # no dropout before the last
    normed = load_hypernetwork(_file(tmp_path / "b.pt", layer_norm=True))
    # the LayerNorm counts as a layer when ComfyUI looks for the last Linear: an activation follows it too
    assert [type(m).__name__ for m in normed.nets[64][1]] == ["Linear", "ReLU", "LayerNorm", "Dropout", "Linear",
                                                            "ReLU", "LayerNorm"]
    with pytest.raises(ValueError, match="unknown activation_func 'gelu2'"):
        load_hypernetwork(_file(tmp_path / "c.pt", activation="gelu2"))
    torch.save({"activation_func": "relu"}, tmp_path / "d.pt")
    with pytest.raises(ValueError, match="no hypernetwork layers"):
        load_hypernetwork(tmp_path / "d.pt")
    (tmp_path / "e.pt").write_bytes(b"not a pickle at all")
    with pytest.raises(ValueError, match=r"e\.pt is not a readable hypernetwork file"):
        load_hypernetwork(tmp_path / "e.pt")


@pytest.fixture(scope="module")
def sd1(tmp_path_factory):
    return fixture("sd1", tmp_path_factory.mktemp("sd1"))


def test_attention_keys_and_values_take_the_networks(sd1, tmp_path):
    hn = load_hypernetwork(_file(tmp_path / "a.pt", layer_norm=True))
    attn = sd1.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2  # cross-attention: context 64 wide
    g = torch.Generator().manual_seed(3)
    x, ctx = torch.randn(1, 16, 32, generator=g), torch.randn(1, 7, 64, generator=g)
    mlp_k, mlp_v = hn.nets[64]
    with torch.no_grad():
        q, k = attn.to_q(x), attn.to_k(ctx + mlp_k(ctx) * 0.7)
        v = attn.to_v(ctx + mlp_v(ctx) * 0.7)
        heads = attn.heads
        split = (lambda t: t.view(1, -1, heads, t.shape[-1] // heads).transpose(1, 2))  # noqa: E731
        want = F.scaled_dot_product_attention(split(q), split(k), split(v)).transpose(1, 2).reshape(1, 16, -1)
        want = attn.to_out[0](want)
        with installed(sd1.unet, [(hn, 0.7)]):
            got = attn(x, encoder_hidden_states=ctx)
        plain = attn(x, encoder_hidden_states=ctx)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(plain, got, atol=1e-3)
    assert type(attn.to_k).__name__ == "Linear" and type(attn.to_v).__name__ == "Linear"  # restored


def test_hypernetwork_loader_node_in_a_run(sd1, tmp_path):
    from nodegen.kernel.context import CancelToken, RunContext
    from nodegen.models.paths import ModelPaths
    from tests.support.nodes import run

    (tmp_path / "hypernetworks").mkdir()
    _file(tmp_path / "hypernetworks" / "style.pt", layer_norm=True)
    ctx = RunContext(node_id="1", node_title="t", device=torch.device("cpu"), models=None,
                     paths=ModelPaths([tmp_path]), output_dir=".", input_dir=".", temp_dir=".", workflow=None,
                     cancel=CancelToken())
    model = DiffusionModel.from_unet(sd1.unet, "sd1", "epsilon")
    te = TextEncoder.from_components([sd1.tokenizer], [sd1.text_encoder], "sd1")
    pos, neg = te.encode("a cat"), te.encode("")
    args = (pos, neg, {"samples": torch.zeros(1, 4, 8, 8)})
    kw = dict(seed=5, steps=3, cfg=5.0, sampler="euler", scheduler="normal", device="cpu")
    plain = sample(model, *args, **kw)["samples"]
    styled = run("HypernetworkLoader", ctx, model=model, hypernetwork_name="style.pt", strength=1.0)["model"]
    off = run("HypernetworkLoader", ctx, model=model, hypernetwork_name="style.pt", strength=0.0)["model"]
    assert not model.options.get("hypernetworks")
    assert (sample(styled, *args, **kw)["samples"] - plain).abs().max() > 1e-3
    torch.testing.assert_close(sample(off, *args, **kw)["samples"], plain)
    assert all(type(m.to_k).__name__ == "Linear" for m in sd1.unet.modules() if hasattr(m, "to_k"))
    with pytest.raises(ValueError, match="HypernetworkLoader: hypernetwork_name 'nope.pt' was not found"):
        run("HypernetworkLoader", ctx, model=model, hypernetwork_name="nope.pt", strength=1.0)
