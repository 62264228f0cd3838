"""ComfyUI's "fp8 scaled" files (:mod:`nodegen.models.fp8_scaled`), both layouts (legacy ``scaled_fp8`` +
``scale_weight``; mixed precision ``comfy_quant`` / ``_quantization_metadata`` + ``weight_scale``), against
the oracle: the same model saved with its dequantized weights (``fp8.float() * scale``, float32).

* Flux diffusion models (UNETLoader) keep their Linear weights fp8 with the scale and dequantize per
  layer; they compute what the dequantized file computes, with a LoRA and in a merge too;
* text encoders (T5, CLIP-L; DualCLIPLoader) and all-in-one checkpoints (Flux, SD1) equal the
  dequantized ones;
* a ComfyUI API workflow over a ComfyUI-style models folder with ``flux1-dev-fp8_scaled`` and
  ``t5xxl_fp8_e4m3fn_scaled`` gives the image its dequantized twin gives;
* formats nodegen cannot dequantize (nvfp4, int8, row-wise scales) fail naming node, input and file.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from nodegen.models.fp8_scaled import is_scaled
from nodegen.models.gguf_linear import dequantized, parameter_bytes
from nodegen.nodes import flow as fl
from tests.support.comfy_run import models_folder, run_api
from tests.support.flow_fixtures import _save, fixture, flux_probe_inputs, sample_flux, t5_state
from tests.support.fp8_scaled_files import CLIP_LINEAR, T5_LINEAR, flux_linear, write_scaled
from tests.support.nodes import models_ctx, run_def

torch.set_num_threads(1)
DATA = Path(__file__).parent / "data" / "comfy"


def _t5_linear(k, v):
    return bool(T5_LINEAR.match(k))


def _clip_linear(k, v):
    return bool(CLIP_LINEAR.match(k))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """models root: diffusion_models/ and text_encoders/ with scaled files and their dequantized twins."""
    fx = fixture("flux")
    root = tmp_path_factory.mktemp("fp8scaled")
    dm, te = root / "diffusion_models", root / "text_encoders"
    dm.mkdir()
    te.mkdir()
    bfl = fx.original_transformer
    plain = write_scaled(bfl, dm / "flux1-dev-fp8_scaled.safetensors", flux_linear)
    _save(plain, dm / "flux1-dev-dequantized.safetensors")
    assert write_scaled(bfl, dm / "flux1-dev-fp8_mixed.safetensors", flux_linear, "metadata").keys() == plain.keys()
    t5 = t5_state(fx.text_encoder_2)
    _save(write_scaled(t5, te / "t5xxl_fp8_e4m3fn_scaled.safetensors", _t5_linear), te / "t5xxl_dequantized.safetensors")
    write_scaled(t5, te / "t5xxl_fp8_mixed.safetensors", _t5_linear, "comfy_quant")
    clip_l = {k: v.contiguous() for k, v in fx.text_encoder.state_dict().items()}
    _save(write_scaled(clip_l, te / "clip_l_fp8_scaled.safetensors", _clip_linear), te / "clip_l_dequantized.safetensors")
    return root




@pytest.fixture(scope="module")
def ctx(files):
    return models_ctx(files)


def _forward(t: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return t(**flux_probe_inputs(t))[0]


@pytest.mark.parametrize("name", ["flux1-dev-fp8_scaled.safetensors", "flux1-dev-fp8_mixed.safetensors"])
def test_flux_unet_keeps_fp8_with_scales_and_computes_as_the_dequantized_file(ctx, name):
    model = run_def(fl.unet_loader, ctx, unet_name=name)["model"]
    ref = run_def(fl.unet_loader, ctx, unet_name="flux1-dev-dequantized.safetensors")["model"]
    t = model.unet
    linears = [m for m in t.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(is_scaled(m.weight) and m.weight.dtype == torch.float8_e4m3fn for m in linears)
    assert max(float(m.weight.scale) for m in linears) < 0.05  # far from 1: a loader ignoring them is wrong
    want = ref.unet.state_dict()
    assert sorted(t.state_dict()) == sorted(want)
    for k, v in t.state_dict().items():
        assert torch.equal(dequantized(v), want[k]), k
    assert parameter_bytes(t) < 0.4 * parameter_bytes(ref.unet)
    torch.testing.assert_close(_forward(t), _forward(ref.unet), rtol=1e-5, atol=1e-6)
    # weight_dtype fp8_*: the file is fp8 already; its weights stay fp8 with their scales
    as_fp8 = run_def(fl.unet_loader, ctx, unet_name=name, weight_dtype="fp8_e4m3fn")["model"].unet
    assert torch.equal(_forward(as_fp8), _forward(t))
    # a raw fp8 reading (scales dropped) would compute something else
    scales = [m.weight.scale for m in linears]
    for m in linears:
        m.weight.scale = torch.ones(())
    raw = _forward(t)
    for m, s in zip(linears, scales, strict=True):
        m.weight.scale = s
    assert not torch.allclose(raw, _forward(t), atol=1e-2)


@pytest.mark.parametrize("family", ["sd3", "chroma"])
def test_sd3_and_chroma_transformers_keep_scaled_weights(tmp_path, family):
    """SD3's and Chroma's key conversions (qkv splits, scale/shift swaps) keep every Linear weight
    fp8 with its scale, worth the dequantized file's weights."""
    from safetensors.torch import load_file

    from nodegen.models.flow_loader import load_diffusion_model
    from tests.support.chroma_fixtures import fixture as chroma_fixture

    fx = chroma_fixture() if family == "chroma" else fixture("sd3")
    plain = write_scaled(load_file(str(fx.diffusion_model)), tmp_path / "scaled.safetensors", flux_linear)
    _save(plain, tmp_path / "dequantized.safetensors")
    got = load_diffusion_model(tmp_path / "scaled.safetensors")
    want = load_diffusion_model(tmp_path / "dequantized.safetensors").unet.state_dict()
    assert got.family == family
    assert all(is_scaled(m.weight) for m in got.unet.modules() if isinstance(m, torch.nn.Linear))
    assert {k: torch.equal(dequantized(v), want[k]) for k, v in got.unet.state_dict().items()} \
        == dict.fromkeys(want, True)


def test_lora_and_merge_patch_the_dequantized_weights(ctx):
    from nodegen.models.merge import merge_simple
    from tests.test_flow_lora import flux_lora

    model = run_def(fl.unet_loader, ctx, unet_name="flux1-dev-fp8_scaled.safetensors")["model"]
    ref = run_def(fl.unet_loader, ctx, unet_name="flux1-dev-dequantized.safetensors")["model"]
    lora = flux_lora("kohya")  # the fused qkv and linear2: split and whole scaled weights
    with_lora = sample_flux(model, lora)
    torch.testing.assert_close(with_lora, sample_flux(ref, lora), rtol=1e-5, atol=1e-5)
    assert float((with_lora - sample_flux(model)).abs().max()) > 1e-3  # the LoRA changes the result
    assert all(getattr(p, "forward_patches", None) is None for p in model.unet.parameters())
    from nodegen.models.flow_loader import load_diffusion_model

    b = load_diffusion_model(fixture("flux").diffusion_model_bf16)
    torch.testing.assert_close(sample_flux(merge_simple(model, b, 0.3)), sample_flux(merge_simple(ref, b, 0.3)),
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sample_flux(merge_simple(b, model, 0.3)), sample_flux(merge_simple(b, ref, 0.3)),
                               rtol=1e-5, atol=1e-5)


def _encoded(clip) -> list[torch.Tensor]:
    items = clip.encode("a photo of a cat")
    return [t for it in items for t in (it.embeds, it.pooled) if t is not None]


@pytest.mark.parametrize("t5", ["t5xxl_fp8_e4m3fn_scaled.safetensors", "t5xxl_fp8_mixed.safetensors"])
def test_text_encoders_equal_the_dequantized_files(ctx, t5):
    got = run_def(fl.dual_clip_loader, ctx, clip_name1="clip_l_fp8_scaled.safetensors", clip_name2=t5, type="flux")["clip"]
    want = run_def(fl.dual_clip_loader, ctx, clip_name1="clip_l_dequantized.safetensors",
               clip_name2="t5xxl_dequantized.safetensors", type="flux")["clip"]
    ref_t5 = want.parts["t5"][1].state_dict()
    assert {k: torch.equal(v.float(), ref_t5[k].float()) for k, v in got.parts["t5"][1].state_dict().items()} \
        == dict.fromkeys(ref_t5, True)
    for a, b in zip(_encoded(got), _encoded(want), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_all_in_one_checkpoints_equal_the_dequantized_ones(tmp_path):
    """A Flux single file (transformer, CLIP-L and T5 scaled under their own prefixes) and an SD1
    checkpoint (UNet and CLIP scaled) load as their dequantized twins."""
    from safetensors.torch import load_file

    from nodegen.models.loader import load_checkpoint
    from tests.support.fixtures import fixture as sd_fixture

    fx = fixture("flux")
    aio = load_file(str(fx.single_file))
    prefixes = ("model.diffusion_model.", "text_encoders.clip_l.transformer.", "text_encoders.t5xxl.transformer.")

    def linear(k, v):
        return (k.startswith(prefixes[0]) and flux_linear(k, v)) or (k.startswith(prefixes[1:]) and (
            _clip_linear(k.split("transformer.", 1)[1], v) or _t5_linear(k, v)))

    plain = write_scaled(aio, tmp_path / "flux-aio-fp8_scaled.safetensors", linear, prefixes=prefixes)
    _save(plain, tmp_path / "flux-aio-dequantized.safetensors")
    got = load_checkpoint(tmp_path / "flux-aio-fp8_scaled.safetensors")
    want = load_checkpoint(tmp_path / "flux-aio-dequantized.safetensors")
    assert is_scaled(got[0].unet.transformer_blocks[0].attn.to_q.weight)
    torch.testing.assert_close(_forward(got[0].unet), _forward(want[0].unet), rtol=1e-5, atol=1e-6)
    for a, b in zip(_encoded(got[1]), _encoded(want[1]), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)

    sd1 = sd_fixture("sd1")
    ldm = load_file(str(sd1.single_file))
    pre = ("model.diffusion_model.", "cond_stage_model.transformer.")
    plain = write_scaled(ldm, tmp_path / "sd1-fp8_scaled.safetensors",
                         lambda k, v: k.startswith(pre) and v.ndim == 2 and k.endswith(".weight")
                         and "embedding" not in k, prefixes=pre)
    _save(plain, tmp_path / "sd1-dequantized.safetensors")
    got = load_checkpoint(tmp_path / "sd1-fp8_scaled.safetensors")
    want = load_checkpoint(tmp_path / "sd1-dequantized.safetensors")
    ref = want[0].unet.state_dict()
    assert {k: torch.equal(v.float(), ref[k].float()) for k, v in got[0].unet.state_dict().items()} \
        == dict.fromkeys(ref, True)
    for a, b in zip(_encoded(got[1]), _encoded(want[1]), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # the SD1 UNet alone (UNETLoader's loader), bare LDM keys and a bare scaled_fp8 marker: the checkpoint's UNet
    from nodegen.models.flow_loader import load_diffusion_model

    unet = {k.removeprefix(pre[0]): v for k, v in ldm.items() if k.startswith(pre[0])}
    write_scaled(unet, tmp_path / "sd1-unet-fp8_scaled.safetensors", lambda k, v: v.ndim == 2 and k.endswith(".weight"))
    got = load_diffusion_model(tmp_path / "sd1-unet-fp8_scaled.safetensors").unet.state_dict()
    assert {k: torch.equal(v, got[k]) for k, v in ref.items()} == dict.fromkeys(ref, True)


def _api(unet: str, t5: str) -> dict:
    api = copy.deepcopy(json.loads((DATA / "flux_dev.api.json").read_text("utf-8")))
    api["12"]["inputs"] = {"unet_name": unet, "weight_dtype": "default"}
    api["11"]["inputs"].update(clip_name1=t5)
    small = {"EmptySD3LatentImage": {"width": 32, "height": 32}, "ModelSamplingFlux": {"width": 32, "height": 32},
             "BasicScheduler": {"steps": 2}}
    for n in api.values():
        n["inputs"].update(small.get(n["class_type"], {}))
    return api


def test_comfy_workflow_with_scaled_files_gives_the_dequantized_image(files, tmp_path):
    fx = fixture("flux")
    dm, te = files / "diffusion_models", files / "text_encoders"
    models = models_folder(tmp_path, [
        ("diffusion_models", dm / "flux1-dev-fp8_scaled.safetensors", "flux1-dev-fp8_scaled.safetensors"),
        ("diffusion_models", dm / "flux1-dev-dequantized.safetensors", "flux1-dev.safetensors"),
        ("vae", fx.vae_file, "ae.safetensors"), ("text_encoders", fx.clip_l, "clip_l.safetensors"),
        ("text_encoders", te / "t5xxl_fp8_e4m3fn_scaled.safetensors", "t5xxl_fp8_e4m3fn_scaled.safetensors"),
        ("text_encoders", te / "t5xxl_dequantized.safetensors", "t5xxl_fp16.safetensors")])
    images = []
    for unet, t5 in (("flux1-dev-fp8_scaled.safetensors", "t5xxl_fp8_e4m3fn_scaled.safetensors"),
                     ("flux1-dev.safetensors", "t5xxl_fp16.safetensors")):
        (tmp_path / "out").mkdir(exist_ok=True)
        images.append(run_api(_api(unet, t5), models, tmp_path).images[0])
    assert images[0].size == (32, 32)
    assert list(images[0].getdata()) == list(images[1].getdata())


@pytest.mark.parametrize("fmt, what", [("nvfp4", "'nvfp4'"), ("int8_tensorwise", "'int8_tensorwise'")])
def test_formats_nodegen_cannot_dequantize_are_refused(ctx, files, fmt, what):
    fx = fixture("flux")
    dm, te = files / "diffusion_models", files / "text_encoders"
    write_scaled(fx.original_transformer, dm / f"flux-{fmt}.safetensors", flux_linear, "comfy_quant", fmt=fmt)
    with pytest.raises(ValueError, match=rf"UNETLoader: unet_name 'flux-{fmt}.safetensors': .*flux-{fmt}"
                                         rf"\.safetensors: \d+ layers .* quantized as {what}, which nodegen cannot load"):
        run_def(fl.unet_loader, ctx, unet_name=f"flux-{fmt}.safetensors")
    write_scaled(t5_state(fx.text_encoder_2), te / f"t5-{fmt}.safetensors", _t5_linear, "metadata", fmt=fmt)
    with pytest.raises(ValueError, match=rf"CLIPLoader: clip_name 't5-{fmt}.safetensors' .*t5-{fmt}\.safetensors: "
                                         rf".*quantized as {what}"):
        run_def(fl.clip_loader, ctx, clip_name=f"t5-{fmt}.safetensors", type="chroma")


def test_row_wise_scales_are_refused(files):
    """Scales that are not one value per tensor (row- or block-wise) are refused, never applied wrong."""
    from safetensors.torch import save_file

    from nodegen.models.files import LazyStateDict
    from nodegen.models.fp8_scaled import UnsupportedQuantization

    path = files / "rowwise.safetensors"
    save_file({"a.weight": torch.zeros(4, 8, dtype=torch.float8_e4m3fn), "a.weight_scale": torch.ones(4),
               "a.comfy_quant": torch.tensor(list(b'{"format": "float8_e4m3fn"}'), dtype=torch.uint8)}, str(path))
    with pytest.raises(UnsupportedQuantization, match=r"rowwise.safetensors: 1 layers \(e.g. 'a'\) .*\[4\] weight_scale"):
        LazyStateDict(path)["a.weight"]
    save_file({"a.weight": torch.zeros(4, 8, dtype=torch.float8_e4m3fn), "a.scale_weight": torch.ones(4, 1),
               "scaled_fp8": torch.empty(0, dtype=torch.float8_e4m3fn)}, str(path))
    with pytest.raises(UnsupportedQuantization, match=r"quantized as 'scaled fp8 with a \[4, 1\] scale_weight'"):
        LazyStateDict(path).shapes()


def test_scaled_tensor_stands_for_its_dequantized_values():
    """Moves, views, splits and joins keep fp8 + scale; casts, arithmetic and value reads see
    ``fp8 * scale``; joining different scales gives the dequantized values."""
    from nodegen.models.fp8_scaled import ScaledFP8

    q = torch.randn(6, 4, generator=torch.Generator().manual_seed(3)).to(torch.float8_e4m3fn)
    p, other = ScaledFP8(q, torch.tensor(0.5)), ScaledFP8(q, torch.tensor(0.25))
    ref = q.float() * 0.5
    top, bottom = torch.chunk(p, 2)
    joined = torch.cat([bottom, top])
    assert all(is_scaled(t) for t in (top, joined, p[1:3], p.t(), p.detach(), p.data, p.reshape(-1), copy.deepcopy(p)))
    assert torch.equal(joined.float(), torch.cat([ref[3:], ref[:3]]))
    assert torch.equal(p.to(torch.bfloat16), ref.bfloat16()) and torch.equal(p * 2, ref * 2)
    assert torch.equal(torch.cat([p, other]), torch.cat([ref, q.float() * 0.25]))
    assert torch.equal(p, ref) and not torch.equal(p, other) and p[0, 0].item() == ref[0, 0].item()
    assert p.dtype == torch.float8_e4m3fn and p.shape == (6, 4) and p.element_size() == 1
    x = torch.randn(2, 4)
    torch.testing.assert_close(torch.nn.functional.linear(x, p), x @ ref.T)
