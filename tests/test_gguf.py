"""GGUF files (city96's ComfyUI-GGUF nodes): the tiny Flux transformer and T5 written with the ``gguf``
package's GGUFWriter (F16, Q8_0, Q4_0, raw K-quant blocks), read back exactly (F16) or within the
quantization error (quantized Flux / SD3 Linear weights stay blocks: tests/test_gguf_quantized.py); K-quants checked against diffusers' own (torch) dequantizers; the nodes load the
same models as the safetensors loaders, and a ComfyUI API workflow with UnetLoaderGGUF +
DualCLIPLoaderGGUF gives the same image as its UNETLoader + DualCLIPLoader twin; bad files fail
naming the node, the input and the file."""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from nodegen.formats import open_any
from nodegen.models.gguf_file import GGUFError, GGUFStateDict
from nodegen.models.gguf_linear import dequantized
from nodegen.nodes import gguf_loaders as gl
from nodegen.runtime.engine import Engine
from tests.support.flow_fixtures import fixture, t5_state
from tests.support.nodes import models_ctx, run_def

torch.set_num_threads(1)
Q = gguf.GGMLQuantizationType
DATA = Path(__file__).parent / "data" / "comfy"


def t5_llama_name(key: str) -> str:
    """transformers' T5 encoder key -> llama.cpp's (what city96's T5 GGUF files hold)."""
    parts = {"layer.0.SelfAttention.q": "attn_q", "layer.0.SelfAttention.k": "attn_k",
             "layer.0.SelfAttention.v": "attn_v", "layer.0.SelfAttention.o": "attn_o",
             "layer.0.layer_norm": "attn_norm", "layer.0.SelfAttention.relative_attention_bias": "attn_rel_b",
             "layer.1.DenseReluDense.wi_0": "ffn_gate", "layer.1.DenseReluDense.wi_1": "ffn_up",
             "layer.1.DenseReluDense.wo": "ffn_down", "layer.1.layer_norm": "ffn_norm"}
    if key == "shared.weight":
        return "token_embd.weight"
    if key == "encoder.final_layer_norm.weight":
        return "enc.output_norm.weight"
    m = re.fullmatch(r"encoder\.block\.(\d+)\.(.+)\.weight", key)
    assert m and m.group(2) in parts, key
    return f"enc.blk.{m.group(1)}.{parts[m.group(2)]}.weight"


def write_gguf(path: Path, sd: dict[str, torch.Tensor], arch: str | None, qtype=Q.F16,
               rename=lambda k: k) -> Path:
    """``sd`` as a GGUF file: 2-D+ tensors whose rows fit ``qtype``'s blocks quantized, the rest F32
    (as city96's converter keeps small tensors)."""
    w = gguf.GGUFWriter(str(path), arch or "unused")
    if arch is None:  # stable-diffusion.cpp style: no general.architecture field
        w.kv_data[0].pop("general.architecture")
    for k, v in sd.items():
        a = v.detach().float().numpy()
        block = gguf.GGML_QUANT_SIZES[qtype][0]
        if qtype == Q.F16:
            w.add_tensor(rename(k), a.astype(np.float16))
        elif a.ndim >= 2 and a.shape[-1] % block == 0:
            q = gguf.quants.quantize(a, qtype)
            w.add_tensor(rename(k), q, raw_shape=q.shape, raw_dtype=qtype)
        else:
            w.add_tensor(rename(k), a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    flux = fixture("flux")
    root = tmp_path_factory.mktemp("gguf")
    (root / "diffusion_models").mkdir()
    (root / "text_encoders").mkdir()
    dm, te = root / "diffusion_models", root / "text_encoders"
    bfl = flux.original_transformer
    t5 = t5_state(flux.text_encoder_2)
    write_gguf(dm / "flux1-dev-F16.gguf", bfl, "flux")
    write_gguf(dm / "flux1-dev-Q8_0.gguf", bfl, "flux", Q.Q8_0)
    write_gguf(dm / "flux1-dev-Q4_0.gguf", {"model.diffusion_model." + k: v for k, v in bfl.items()}, None, Q.Q4_0)
    write_gguf(te / "t5-v1_1-xxl-encoder-F16.gguf", t5, "t5encoder", rename=t5_llama_name)
    write_gguf(te / "t5-v1_1-xxl-encoder-Q8_0.gguf", t5, "t5encoder", Q.Q8_0, rename=t5_llama_name)
    # the same weights in fp16 safetensors: what the F16 GGUF files must load exactly as
    save_file({k: v.half().contiguous() for k, v in bfl.items()}, dm / "flux1-dev-fp16.safetensors")
    save_file({k: v.half().contiguous() for k, v in t5.items()}, te / "t5xxl_fp16.safetensors")
    os.symlink(flux.clip_l, te / "clip_l.safetensors")
    (root / "vae").mkdir()
    os.symlink(flux.vae_file, root / "vae" / "ae.safetensors")
    return root


@pytest.fixture(scope="module")
def ctx(files):
    return models_ctx(files)



def _close(got: torch.Tensor, want: torch.Tensor, rel: float) -> None:
    assert got.shape == want.shape
    assert (got.float() - want.float()).abs().max() <= rel * want.abs().max() + 1e-7


def test_f16_reads_exactly_and_quantized_within_their_error(files):
    bfl = fixture("flux").original_transformer
    f16 = GGUFStateDict(files / "diffusion_models" / "flux1-dev-F16.gguf")
    assert f16.arch == "flux" and set(f16) == set(bfl) and f16.qtypes() == {"F16": len(bfl)}
    for k, v in bfl.items():
        assert torch.equal(f16[k], v.half()), k
    q8 = GGUFStateDict(files / "diffusion_models" / "flux1-dev-Q8_0.gguf", dtype=torch.float32)
    q4 = GGUFStateDict(files / "diffusion_models" / "flux1-dev-Q4_0.gguf")  # sd.cpp style: prefix, no arch
    assert q8.qtypes()["Q8_0"] > 10 and q4.arch is None and set(q4) == set(bfl)
    for k, v in bfl.items():
        assert q8[k].dtype == torch.float32
        _close(q8[k], v, 0.01)
        _close(q4[k], v, 0.15)
    assert not torch.equal(q8["img_in.weight"], bfl["img_in.weight"])  # really quantized


@pytest.mark.parametrize("qtype", ["Q4_K", "Q5_K", "Q6_K"])
def test_k_quants_match_diffusers_dequantizers(tmp_path, qtype):
    """Random K-quant blocks (scales made finite) read as diffusers' torch dequantizers read them."""
    from diffusers.quantizers.gguf.utils import dequantize_functions

    qt = Q[qtype]
    block, size = gguf.GGML_QUANT_SIZES[qt]
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, (4, 2 * size), dtype=np.uint8)
    blocks = raw.reshape(-1, size)
    scales = rng.uniform(0.01, 1, (blocks.shape[0], 2)).astype(np.float16).view(np.uint8)
    if qt == Q.Q6_K:
        blocks[:, -2:] = scales[:, :2]  # d at the end
    else:
        blocks[:, :4] = scales  # d, dmin first
    path = tmp_path / "k.gguf"
    w = gguf.GGUFWriter(str(path), "flux")
    w.add_tensor("w.weight", raw, raw_shape=raw.shape, raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    got = GGUFStateDict(path)["w.weight"]
    want = dequantize_functions[qt](torch.from_numpy(blocks.copy()), block, size, torch.float32).reshape(4, 2 * block)
    assert got.shape == (4, 2 * block)
    torch.testing.assert_close(got, want.float(), rtol=1e-3, atol=1e-3)


def test_unet_loader_gguf_loads_the_same_model_as_unet_loader(ctx):
    from nodegen.nodes import flow as fl

    listed = [n for n in gl.unet_loader_gguf.inputs[0].choices(ctx) if n.startswith("flux1-dev")]
    assert listed == ["flux1-dev-F16.gguf", "flux1-dev-Q4_0.gguf", "flux1-dev-Q8_0.gguf"]  # GGUF files only
    assert "t5-v1_1-xxl-encoder-F16.gguf" in gl.dual_clip_loader_gguf.inputs[0].choices(ctx)
    assert "clip_l.safetensors" in gl.dual_clip_loader_gguf.inputs[0].choices(ctx)
    ref = run_def(fl.unet_loader, ctx, unet_name="flux1-dev-fp16.safetensors")["model"]
    got = run_def(gl.unet_loader_gguf, ctx, unet_name="flux1-dev-F16.gguf")["model"]
    assert got.family == "flux" and got.unet.config.guidance_embeds
    want = ref.unet.state_dict()
    assert {k: torch.equal(v, want[k]) for k, v in got.unet.state_dict().items()} == dict.fromkeys(want, True)
    q8 = run_def(gl.unet_loader_gguf, ctx, unet_name="flux1-dev-Q8_0.gguf")["model"]
    for k, v in q8.unet.state_dict().items():  # Linear weights kept as Q8_0 blocks (tests/test_gguf_quantized.py)
        _close(dequantized(v), want[k], 0.01)


def test_gguf_t5_loads_with_llama_cpp_names(ctx):
    t5 = t5_state(fixture("flux").text_encoder_2)
    clip = run_def(gl.dual_clip_loader_gguf, ctx, clip_name1="t5-v1_1-xxl-encoder-F16.gguf",
               clip_name2="clip_l.safetensors", type="flux")["clip"]
    got = clip.parts["t5"][1].state_dict()
    for k, v in t5.items():
        assert torch.equal(got[k].float(), v.half().float()), k
    q8 = run_def(gl.clip_loader_gguf, ctx, clip_name="t5-v1_1-xxl-encoder-Q8_0.gguf", type="sd3")["clip"]
    assert q8.family == "sd3"


def _api(unet: str, t5: str, gguf_nodes: bool) -> dict:
    api = copy.deepcopy(json.loads((DATA / "flux_dev.api.json").read_text("utf-8")))
    if gguf_nodes:
        api["12"] = {"class_type": "UnetLoaderGGUF", "inputs": {"unet_name": unet}}
        api["11"] = {"class_type": "DualCLIPLoaderGGUF",
                     "inputs": {"clip_name1": t5, "clip_name2": "clip_l.safetensors", "type": "flux"}}
    else:
        api["12"]["inputs"] = {"unet_name": unet, "weight_dtype": "default"}
        api["11"]["inputs"].update(clip_name1=t5)
    small = {"EmptySD3LatentImage": {"width": 32, "height": 32}, "ModelSamplingFlux": {"width": 32, "height": 32},
             "BasicScheduler": {"steps": 2}}
    for n in api.values():
        n["inputs"].update(small.get(n["class_type"], {}))
    return api


def test_comfy_gguf_workflow_imports_and_runs_as_its_safetensors_twin(files, tmp_path):
    engine = Engine(models=files, output_dir=tmp_path, device="cpu")
    path = tmp_path / "wf.json"
    results = []
    for args in (("flux1-dev-F16.gguf", "t5-v1_1-xxl-encoder-F16.gguf", True),
                 ("flux1-dev-fp16.safetensors", "t5xxl_fp16.safetensors", False)):
        path.write_text(json.dumps(_api(*args)), "utf-8")
        wf = open_any(path)
        assert ("UnetLoaderGGUF" in {n["type"] for n in wf.nodes.values()}) == args[2]
        res = engine.run(wf)
        assert res.ok, (res.problems, [str(f) + getattr(f, "traceback", "") for f in res.failures])
        results.append(res.images[0])
    assert results[0].size == (32, 32)
    assert list(results[0].getdata()) == list(results[1].getdata())


def _fails(nd, ctx, match: str, **kw):
    with pytest.raises(ValueError, match=match):
        run_def(nd, ctx, **kw)


def test_bad_files_fail_naming_node_input_and_file(ctx, files):
    dm, te = files / "diffusion_models", files / "text_encoders"
    (dm / "not-gguf.gguf").write_bytes(b"\x00" * 64)
    _fails(gl.unet_loader_gguf, ctx, r"UnetLoaderGGUF: unet_name 'not-gguf.gguf' .*not-gguf.gguf.*not a GGUF file",
           unet_name="not-gguf.gguf")
    write_gguf(dm / "wan.gguf", {"x.weight": torch.ones(4, 32)}, "wan")
    _fails(gl.unet_loader_gguf, ctx, r"UnetLoaderGGUF: unet_name 'wan.gguf' .*architecture 'wan'.*does not run",
           unet_name="wan.gguf")
    os.symlink(te / "t5-v1_1-xxl-encoder-F16.gguf", dm / "t5.gguf")
    _fails(gl.unet_loader_gguf, ctx, r"UnetLoaderGGUF: unet_name 't5.gguf' .*text encoder.*'t5encoder'",
           unet_name="t5.gguf")
    w = gguf.GGUFWriter(str(dm / "q81.gguf"), "flux")
    w.add_tensor("img_in.weight", np.zeros((2, 40), np.uint8), raw_shape=(2, 40), raw_dtype=Q.Q8_1)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    _fails(gl.unet_loader_gguf, ctx, r"UnetLoaderGGUF: unet_name 'q81.gguf': .*q81.gguf.*'img_in.weight' is stored "
           r"as Q8_1, a quantization type nodegen cannot dequantize", unet_name="q81.gguf")
    with pytest.raises(GGUFError, match="not a GGUF file"):
        GGUFStateDict(dm / "not-gguf.gguf")
    (dm / "truncated.gguf").write_bytes((dm / "flux1-dev-F16.gguf").read_bytes()[:200])
    _fails(gl.unet_loader_gguf, ctx, r"UnetLoaderGGUF: unet_name 'truncated.gguf': .*truncated.gguf: not a readable "
           r"GGUF file", unet_name="truncated.gguf")
    os.symlink(dm / "wan.gguf", te / "wan.gguf")
    _fails(gl.dual_clip_loader_gguf, ctx, r"DualCLIPLoaderGGUF: clip_name2 'wan.gguf' .*architecture 'wan'",
           clip_name1="clip_l.safetensors", clip_name2="wan.gguf", type="flux")


def test_sd1_unet_gguf_loads_as_unet_loader_loads_it(ctx, files, tmp_path):
    """An SD1 UNet in GGUF (LDM keys without ``model.diffusion_model.``, as city96's converter writes
    them) gives the same UNet as the same weights in fp16 safetensors through UNETLoader."""
    from nodegen.nodes import flow as fl
    from tests.support.fixtures import fixture as sd_fixture

    prefix = "model.diffusion_model."
    unet = {k[len(prefix):]: v for k, v in sd_fixture("sd1").ldm_state_dict.items() if k.startswith(prefix)}
    write_gguf(files / "diffusion_models" / "sd1-unet-F16.gguf", unet, "sd1")
    save_file({k: v.half().contiguous() for k, v in unet.items()}, files / "diffusion_models" / "sd1-unet.safetensors")
    got = run_def(gl.unet_loader_gguf, ctx, unet_name="sd1-unet-F16.gguf")["model"]
    ref = run_def(fl.unet_loader, ctx, unet_name="sd1-unet.safetensors")["model"]
    assert got.family == ref.family == "sd1"
    want = ref.unet.state_dict()
    assert {k: torch.equal(v, want[k]) for k, v in got.unet.state_dict().items()} == dict.fromkeys(want, True)


def test_sd3_gguf_loads_as_unet_loader_loads_it(ctx, files):
    """SD3's MMDiT in GGUF (original keys, Q8_0) is the same model as its safetensors file, within Q8_0's error."""
    from safetensors.torch import load_file

    from nodegen.nodes import flow as fl

    sd = load_file(str(fixture("sd3").diffusion_model))
    write_gguf(files / "diffusion_models" / "sd3-Q8_0.gguf", sd, "sd3", Q.Q8_0)
    save_file({k: v.contiguous() for k, v in sd.items()}, files / "diffusion_models" / "sd3.safetensors")
    got = run_def(gl.unet_loader_gguf, ctx, unet_name="sd3-Q8_0.gguf")["model"]
    ref = run_def(fl.unet_loader, ctx, unet_name="sd3.safetensors")["model"]
    assert got.family == ref.family == "sd3" and type(got.unet) is type(ref.unet)
    want = ref.unet.state_dict()
    assert set(got.unet.state_dict()) == set(want)
    for k, v in got.unet.state_dict().items():
        _close(dequantized(v), want[k], 0.01)
