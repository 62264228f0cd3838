"""Quantized GGUF diffusion models keep their Linear weights as GGUF blocks (:mod:`nodegen.models.gguf_linear`)
and dequantize them per layer per call: the tiny Flux transformer from Q8_0 and Q4_0 files holds a
fraction of float32's parameter bytes, and computes (one forward, a sampling run, with a LoRA) exactly
what the same file dequantized at load computes."""

from __future__ import annotations

import pytest
import torch

from nodegen.models import flow_loader
from nodegen.models.gguf_file import GGUFStateDict
from nodegen.models.gguf_linear import dequantized, is_quantized, logical_shape, parameter_bytes
from nodegen.models.lora import apply_lora
from nodegen.models.objects import DiffusionModel
from nodegen.models.patching import patched
from tests.support.flow_fixtures import fixture, flux_probe_inputs, sample_flux
from tests.test_flow_lora import flux_lora
from tests.test_gguf import Q, write_gguf

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("ggufq")
    bfl = fixture("flux").original_transformer
    return {"Q8_0": write_gguf(root / "flux-Q8_0.gguf", bfl, "flux", Q.Q8_0),
            "Q4_0": write_gguf(root / "flux-Q4_0.gguf", {"model.diffusion_model." + k: v for k, v in bfl.items()},
                               None, Q.Q4_0)}


def _models(path) -> tuple[DiffusionModel, torch.nn.Module]:
    """(the loader's model: quantized Linear weights, the transformer built from the file dequantized at load)."""
    quant = flow_loader.load_diffusion_model(path)
    sd = dict(GGUFStateDict(path, torch.float32))
    sd = {k.removeprefix("model.diffusion_model."): v for k, v in sd.items()}
    return quant, flow_loader.build_transformer("flux", sd, path, torch.float32)




@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0"])
def test_quantized_linears_stay_blocks_and_compute_as_dequantized(files, qtype):
    model, ref = _models(files[qtype])
    t = model.unet
    linears = [m for m in t.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(is_quantized(m.weight) and m.weight.dtype == torch.uint8 for m in linears)
    # the same values as the at-load model, bit for bit; biases and norms dequantized (float32)
    want = ref.state_dict()
    for k, v in t.state_dict().items():
        assert torch.equal(dequantized(v), want[k]), k
        assert logical_shape(v) == tuple(want[k].shape)
    q_bytes, f_bytes = parameter_bytes(t), parameter_bytes(ref)
    print(f"\n{qtype}: parameter bytes {q_bytes} (quantized) vs {f_bytes} (float32 at load)")
    assert q_bytes < {"Q8_0": 0.35, "Q4_0": 0.2}[qtype] * f_bytes
    with torch.no_grad():
        got, exp = t(**flux_probe_inputs(t))[0], ref(**flux_probe_inputs(ref))[0]
    torch.testing.assert_close(got, exp, rtol=1e-5, atol=1e-6)


def test_sampling_and_lora_equal_the_dequantized_model(files):
    model, ref_t = _models(files["Q4_0"])
    ref = DiffusionModel(ref_t, "flux", "flow")
    torch.testing.assert_close(sample_flux(model), sample_flux(ref), rtol=1e-5, atol=1e-5)
    lora = flux_lora("kohya")  # hits the fused qkv and linear2 (split / whole quantized weights)
    with_lora = sample_flux(model, lora)
    torch.testing.assert_close(with_lora, sample_flux(ref, lora), rtol=1e-5, atol=1e-5)
    assert float((with_lora - sample_flux(model)).abs().max()) > 1e-3  # the LoRA changes the result
    # the stored blocks never change; after the run no patch is left on them
    assert all(getattr(p, "forward_patches", None) is None for p in model.unet.parameters())


def test_patched_quantized_weight_applies_deltas_in_forward_only(files):
    model, ref = _models(files["Q8_0"])
    t = model.unet
    name = "transformer_blocks.0.attn.to_q.weight"
    w = dict(t.named_parameters())[name]
    before = w.clone()
    delta = torch.randn(logical_shape(w), generator=torch.Generator().manual_seed(1)) * 0.1
    with torch.no_grad(), patched(t, [({name: delta}, 0.5)]), patched(ref, [({name: delta}, 0.5)]):
        assert torch.equal(w, before) and w.forward_patches
        torch.testing.assert_close(t(**flux_probe_inputs(t))[0], ref(**flux_probe_inputs(ref))[0], rtol=1e-5, atol=1e-6)
    assert w.forward_patches is None and torch.equal(w, before)
    # nested blocks add up, and each end restores what was there before it
    other = {name: delta.flip(0)}
    with torch.no_grad(), patched(t, [({name: delta}, 0.5)]):
        with patched(t, [(other, 1.0)]):
            assert len(w.forward_patches) == 2
            with patched(ref, [({name: delta}, 0.5), (other, 1.0)]):
                torch.testing.assert_close(t(**flux_probe_inputs(t))[0], ref(**flux_probe_inputs(ref))[0], rtol=1e-5, atol=1e-6)
        assert len(w.forward_patches) == 1
    assert w.forward_patches is None


def test_flux_control_lora_widens_a_quantized_input_layer_as_the_dequantized_one(files):
    """A control LoRA (Canny / Depth) widens ``x_embedder``: that weight is dequantized, patched and
    held for the run; the image equals the at-load model's and the blocks are left as they were."""
    from nodegen.models.lora import read_lora
    from tests.support.flow_fixtures import _save
    from tests.test_flux_control_lora import _ours, control_lora
    from tests.test_oracle_flow import flux_components

    fx = fixture("flux")
    _, te, vae = flux_components(fx)
    lora_path = _save(control_lora(fx), files["Q8_0"].parent / "flux1-canny-dev-lora.safetensors")
    model, ref_t = _models(files["Q8_0"])
    blocks = model.unet.x_embedder.weight.clone()
    control = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(12))
    images = []
    for m in (model, DiffusionModel(ref_t, "flux", "flow")):
        controlled, _ = apply_lora(m, None, read_lora(lora_path), 1.0, 0.0)
        images.append(_ours(fx, controlled, te, vae, control))
    torch.testing.assert_close(images[0], images[1], rtol=1e-5, atol=1e-5)
    w = model.unet.x_embedder.weight
    assert is_quantized(w) and torch.equal(w, blocks) and logical_shape(w) == (128, 64)


def test_merging_quantized_models_equals_merging_the_dequantized_ones(files):
    """ModelMergeSimple of a Q8_0 and a Q4_0 model (different blocks, same values' shapes) samples as
    the merge of the same models dequantized at load."""
    from nodegen.models.merge import merge_simple

    (q8, r8), (q4, r4) = _models(files["Q8_0"]), _models(files["Q4_0"])
    refs = [DiffusionModel(t, "flux", "flow") for t in (r8, r4)]
    got, want = sample_flux(merge_simple(q8, q4, 0.5)), sample_flux(merge_simple(*refs, 0.5))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert float((got - sample_flux(q8)).abs().max()) > 1e-4


def test_sd3_q8_0_keeps_its_linears_quantized_and_computes_as_dequantized(tmp_path):
    """SD3's conversion (qkv chunks, the scale/shift swap) is row-wise: exact on the blocks too."""
    from safetensors.torch import load_file

    path = write_gguf(tmp_path / "sd3-Q8_0.gguf", load_file(str(fixture("sd3").diffusion_model)), "sd3", Q.Q8_0)
    quant = flow_loader.load_diffusion_model(path).unet
    ref = flow_loader.build_transformer("sd3", dict(GGUFStateDict(path, torch.float32)), path, torch.float32)
    kept = [m for m in quant.modules() if isinstance(m, torch.nn.Linear) and is_quantized(m.weight)]
    assert len(kept) > 10 and parameter_bytes(quant) < 0.5 * parameter_bytes(ref)
    want = ref.state_dict()
    assert all(torch.equal(dequantized(v), want[k]) for k, v in quant.state_dict().items())
    c = quant.config
    g = torch.Generator().manual_seed(0)
    inputs = dict(hidden_states=torch.randn(1, c.in_channels, 8, 8, generator=g),
                  encoder_hidden_states=torch.randn(1, 5, c.joint_attention_dim, generator=g),
                  pooled_projections=torch.randn(1, c.pooled_projection_dim, generator=g),
                  timestep=torch.tensor([500.0]), return_dict=False)
    with torch.no_grad():
        torch.testing.assert_close(quant(**inputs)[0], ref(**inputs)[0], rtol=1e-5, atol=1e-6)
