"""LoraSave ("Extract and Save Lora"): LoRA factors by ComfyUI's rule (restated here as the oracle,
from comfy_extras/nodes_lora_extract.py), ComfyUI's file layout computed from the checkpoint files
themselves, a lossless round trip through LoraLoader (weights and a sampled latent), rank
truncation, full_diff and bias_diff, the text encoder part, file naming, bad input, and an
imported ComfyUI API-format workflow."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from nodegen.kernel.context import CancelToken, RunContext
from nodegen.models import lora_extract
from nodegen.models.lora import apply_lora, parse_lora, read_lora
from nodegen.models.lora_extract import extract_lora, low_rank_factors
from nodegen.models.merge import merge_subtract
from tests.support.nodes import run

torch.set_num_threads(1)
UNET, CLIP = "model.diffusion_model.", "cond_stage_model.transformer."


# ---- the oracle: ComfyUI's rule, restated -------------------------------------------------------

def comfy_factors(diff: torch.Tensor, rank: int, full_svd: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """ComfyUI's extract_lora: rank capped by the first two sizes; 3x3 kernels flattened, 1x1
    squeezed; U*S and Vh truncated; both clamped to +-(0.99 quantile of their values together)."""
    out_dim, in_dim = diff.shape[:2]
    r = min(rank, in_dim, out_dim)
    m = diff
    if diff.ndim == 4:
        m = diff.squeeze() if tuple(diff.shape[2:]) == (1, 1) else diff.flatten(1)
    u, s, vh = torch.linalg.svd(m.float(), full_matrices=full_svd)
    up, down = u[:, :r] * s[:r], vh[:r]
    hi = torch.quantile(torch.cat([up.flatten(), down.flatten()]), 0.99)
    up, down = up.clamp(-hi, hi), down.clamp(-hi, hi)
    if diff.ndim == 4:
        up, down = up.reshape(out_dim, r, 1, 1), down.reshape(r, in_dim, *diff.shape[2:])
    return up, down


def comfy_file(sd: dict[str, torch.Tensor], model_prefix: str, lora_prefix: str, rank: int, lora_type: str,
               bias_diff: bool) -> dict[str, torch.Tensor]:
    """ComfyUI's calc_lora_model over a model state dict of differences (float16 results). The
    reduced SVD stands in for the full one (the full U of the token embedding is 9.8 GB; the two
    agree: test_factors_equal_comfyuis_rule)."""
    out = {}
    for k, d in sd.items():
        if not k.startswith(model_prefix):
            continue
        name = lora_prefix + k[len(model_prefix):].rpartition(".")[0]
        if k.endswith(".weight"):
            if lora_type == "full_diff" or d.ndim < 2:
                if lora_type == "full_diff" or bias_diff:
                    out[name + ".diff"] = d.half()
                continue
            up, down = comfy_factors(d, rank, full_svd=False)
            out[name + ".lora_up.weight"], out[name + ".lora_down.weight"] = up.half(), down.half()
        elif k.endswith(".bias") and bias_diff:
            out[name + ".diff_b"] = d.half()
    return out


# ---- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Two SD1 checkpoints: the fixture and a fine-tune of it (every float tensor moved)."""
    from tests.support.fixtures import fixture

    sd1 = fixture("sd1", tmp_path_factory.mktemp("sd1"))
    root = tmp_path_factory.mktemp("lora-extract")
    a = root / "model1.safetensors"
    shutil.copy(sd1.single_file, a)
    g = torch.Generator().manual_seed(11)
    tuned = {k: (v + torch.randn(v.shape, generator=g) * 0.05 if v.is_floating_point() else v)
             for k, v in load_file(str(a)).items()}
    b = root / "model2.safetensors"
    save_file(tuned, str(b))
    return a, b


@pytest.fixture(scope="module")
def loaded(files):
    from nodegen.models.loader import load_single_file

    return load_single_file(files[0]), load_single_file(files[1])


def _ctx(out) -> RunContext:
    return RunContext(node_id="7", node_title="LoraSave", device=torch.device("cpu"), models=None, paths=None,
                      output_dir=str(out), input_dir=".", temp_dir=".", workflow=None, cancel=CancelToken())


def _diffs(loaded):
    (m1, c1, _), (m2, c2, _) = loaded
    return (run("ModelMergeSubtract", model1=m2, model2=m1, multiplier=1.0)["model"],
            run("CLIPMergeSubtract", clip1=c2, clip2=c1, multiplier=1.0)["clip"])


def _weights(model) -> dict[str, torch.Tensor]:
    with model.use("cpu") as unet:
        return {k: v.detach().clone() for k, v in unet.named_parameters()}


def _clip_weights(clip) -> dict[str, torch.Tensor]:
    with clip.use("cpu") as encs:
        return {k: v.detach().clone() for k, v in encs[0].named_parameters()}


# ---- the rule ----------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(48, 24), (16, 40), (32, 4, 3, 3), (24, 32, 1, 1), (8, 16, 3, 3)])
@pytest.mark.parametrize("rank", [1, 3, 8, 4096])
def test_factors_equal_comfyuis_rule(shape, rank):
    g = torch.Generator().manual_seed(sum(shape) + rank)
    diff = torch.randn(shape, generator=g) * 0.1
    up, down = low_rank_factors(diff, rank)
    ref_up, ref_down = comfy_factors(diff, rank)  # the full SVD, as ComfyUI computes it
    assert up.shape == ref_up.shape and down.shape == ref_down.shape
    torch.testing.assert_close(up, ref_up, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(down, ref_down, rtol=1e-5, atol=1e-6)
    # the clamp cut something: the unclamped factors (same rank cap) reach further
    free_up, free_down = low_rank_factors(diff, min(rank, *shape[:2]), comfyui_limits=False)
    assert torch.cat([free_up.flatten(), free_down.flatten()]).abs().max() > \
        torch.cat([up.flatten(), down.flatten()]).abs().max()


def test_quantile_of_more_values_than_torch_takes(monkeypatch):
    g = torch.Generator().manual_seed(0)
    samples = [torch.randn(n, generator=g) for n in (1, 2, 101, 10_001, 65_537)]
    refs = [[torch.quantile(x, q) for q in (0.0, 0.5, 0.99, 1.0)] for x in samples]
    monkeypatch.setattr(lora_extract, "_QUANTILE_LIMIT", 0)
    for x, ref in zip(samples, refs, strict=True):
        assert [lora_extract.quantile(x, q) for q in (0.0, 0.5, 0.99, 1.0)] == ref


def test_rank_truncation_keeps_the_leading_directions():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(40, 3, generator=g), torch.randn(3, 30, generator=g)
    diff = a @ b + 1e-3 * torch.randn(40, 30, generator=g)
    s = torch.linalg.svdvals(diff)
    for r in (1, 2, 3, 10):
        up, down = low_rank_factors(diff, r, comfyui_limits=False)
        assert up.shape == (40, r) and down.shape == (r, 30)
        # Eckart-Young: the error of the best rank-r approximation is the rest of the spectrum
        err = torch.linalg.matrix_norm(diff - up @ down)
        torch.testing.assert_close(err, s[r:].square().sum().sqrt(), rtol=1e-3, atol=1e-5)
    up, down = low_rank_factors(diff, 4096, comfyui_limits=False)
    assert up.shape == (40, 30)  # capped by the matrix
    torch.testing.assert_close(up @ down, diff, rtol=1e-4, atol=1e-5)
    # ComfyUI caps a 3x3 convolution by its channels, not by the flattened matrix
    conv = torch.randn(32, 4, 3, 3, generator=g)
    assert low_rank_factors(conv, 8)[0].shape == (32, 4, 1, 1)
    assert low_rank_factors(conv, 8, comfyui_limits=False)[0].shape == (32, 8, 1, 1)


# ---- the file ----------------------------------------------------------------------------------

@pytest.mark.parametrize("lora_type,bias_diff", [("standard", True), ("standard", False), ("full_diff", True),
                                                 ("full_diff", False)])
def test_file_is_comfyuis_from_the_checkpoints(files, loaded, tmp_path, lora_type, bias_diff):
    """The differences of the two checkpoint files, renamed as ComfyUI names its state dicts, through
    the oracle: the same keys and values as the node writes."""
    la, lb = load_file(str(files[0])), load_file(str(files[1]))
    unet_sd, clip_sd = {}, {}  # ComfyUI's model and CLIP state dicts
    for k in la:
        if k.startswith(UNET):
            unet_sd["diffusion_model." + k[len(UNET):]] = lb[k] - la[k]
        elif k.startswith(CLIP) and la[k].is_floating_point():
            clip_sd["clip_l.transformer." + k[len(CLIP):]] = lb[k] - la[k]
    want = comfy_file(unet_sd, "diffusion_model.", "diffusion_model.", 8, lora_type, bias_diff)
    want |= comfy_file(clip_sd, "", "text_encoders.", 8, lora_type, bias_diff)

    model_diff, clip_diff = _diffs(loaded)
    run("LoraSave", _ctx(tmp_path), filename_prefix="loras/extracted", rank=8, lora_type=lora_type,
        bias_diff=bias_diff, model_diff=model_diff, text_encoder_diff=clip_diff)
    got = load_file(str(tmp_path / "loras" / "extracted_00001_.safetensors"))
    assert sorted(got) == sorted(want)
    for k, v in want.items():
        assert got[k].dtype == torch.float16 and got[k].shape == v.shape, k
        torch.testing.assert_close(got[k].float(), v.float(), rtol=2e-3, atol=2e-4, msg=k)
    kinds = {k.rsplit(".", 2)[-2] if k.endswith(".weight") else k.rsplit(".", 1)[-1] for k in got}
    assert kinds == {"standard": {"lora_up", "lora_down", "diff", "diff_b"} if bias_diff else {"lora_up", "lora_down"},
                     "full_diff": {"diff", "diff_b"} if bias_diff else {"diff"}}[lora_type]
    for key in ("diffusion_model.input_blocks.1.1.proj_in", "diffusion_model.middle_block.1.transformer_blocks.0."
                "attn2.to_k", "diffusion_model.out.2",
                "text_encoders.clip_l.transformer.text_model.encoder.layers.1.self_attn.q_proj"):
        assert f"{key}.lora_up.weight" in got or f"{key}.diff" in got, key


def _rebuilt(loaded, lora_file):
    """Model 1 with the LoRA, as LoraLoader adds it."""
    (m1, c1, _), _ = loaded
    return apply_lora(m1, c1, lora_file, 1.0, 1.0)


def _assert_like_model2(loaded, model, clip, tol: float):
    _, (m2, c2, _) = loaded
    w, ref = _weights(model), _weights(m2)
    assert all(torch.allclose(w[k], ref[k], atol=tol, rtol=0) for k in ref)
    w, ref = _clip_weights(clip), _clip_weights(c2)
    assert all(torch.allclose(w[k], ref[k], atol=tol, rtol=0) for k in ref)


def test_full_rank_factors_rebuild_model2(loaded, caplog):
    """Without ComfyUI's clamp and channel cap (a library option, not a node input), full-rank
    factors are lossless: model 1 plus the LoRA is model 2, up to float16 storage."""
    model_diff, clip_diff = _diffs(loaded)
    lora = extract_lora(model_diff, clip_diff, rank=4096, comfyui_limits=False)
    assert not lora.skipped and any(k.endswith(".lora_up.weight") and v.ndim == 4 for k, v in lora.state_dict.items())
    caplog.set_level(logging.WARNING)
    _assert_like_model2(loaded, *_rebuilt(loaded, parse_lora(lora.state_dict)), tol=3e-4)
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]  # every key fits
    # with ComfyUI's limits the same rank is close but not exact (the clamp cuts the largest values)
    clamped = extract_lora(model_diff, None, rank=4096)
    model, _ = _rebuilt(loaded, parse_lora(clamped.state_dict))
    w, ref = _weights(model), _weights(loaded[1][0])
    worst = max((w[k] - ref[k]).abs().max().item() for k in ref)
    assert 3e-4 < worst < 0.5


def test_sdxl_names_label_emb_clip_l_and_clip_g(tmp_path_factory):
    """SDXL: every UNet key by its name in the original checkpoint (label_emb ...), the text encoders
    as clip_l and clip_g (with clip_g's projection); LoraLoader puts each back where it came from."""
    from nodegen.models.objects import DiffusionModel, TextEncoder
    from tests.support.fixtures import fixture

    ns = fixture("sdxl", tmp_path_factory.mktemp("sdxl"))
    model = DiffusionModel.from_unet(ns.unet, "sdxl", "epsilon")
    clip = TextEncoder.from_components([ns.tokenizer, ns.tokenizer_2], [ns.text_encoder, ns.text_encoder_2], "sdxl")
    g = torch.Generator().manual_seed(4)
    tuned_model, tuned = model.clone(), clip.clone()
    tuned_model.add_patches({n: torch.randn(p.shape, generator=g) * 0.02 for n, p in ns.unet.named_parameters()})
    tuned.add_patches({f"{comp}.{n}": torch.randn(p.shape, generator=g) * 0.02
                       for comp, enc in zip(clip.encoder_names, clip.encoders, strict=True)
                       for n, p in enc.named_parameters()}, 1.0)
    model_diff = merge_subtract(tuned_model, model, 1.0)
    diff = merge_subtract(tuned, clip, 1.0, "text encoder")
    sd = extract_lora(model_diff, diff, rank=4096, lora_type="full_diff").state_dict
    want_unet = {"diffusion_model." + k[len(UNET):].rpartition(".")[0] + (".diff" if k.endswith(".weight") else ".diff_b")
                 for k in ns.ldm_state_dict if k.startswith(UNET)}
    assert {k for k in sd if k.startswith("diffusion_model.")} == want_unet
    assert "diffusion_model.label_emb.0.0.diff" in sd
    assert "text_encoders.clip_l.transformer.text_model.encoder.layers.0.self_attn.q_proj.diff" in sd
    assert "text_encoders.clip_g.transformer.text_projection.diff" in sd
    assert {k.split(".")[1] for k in sd if k.startswith("text_encoders.")} == {"clip_l", "clip_g"}
    lora = parse_lora({k: v.float() for k, v in sd.items()})
    rebuilt_model, rebuilt = apply_lora(model, clip, lora)
    with rebuilt_model.use("cpu") as got, tuned_model.use("cpu") as want:
        ref_w = dict(want.named_parameters())
        assert all(torch.allclose(p, ref_w[n], atol=1e-4, rtol=0) for n, p in got.named_parameters())
    with rebuilt.use("cpu") as got, tuned.use("cpu") as want:
        for e, ref in zip(got, want, strict=True):
            ref_w = dict(ref.named_parameters())
            assert all(torch.allclose(p, ref_w[n], atol=1e-4, rtol=0) for n, p in e.named_parameters())


# ---- names and bad input -------------------------------------------------------------------------

def test_never_overwrites_and_counts_as_comfyui(loaded, tmp_path):
    model_diff, _ = _diffs(loaded)
    folder = tmp_path / "loras"
    folder.mkdir()
    (folder / "mine_00004_.safetensors").write_bytes(b"keep me")
    kw = dict(filename_prefix="loras/mine", rank=2, lora_type="standard", bias_diff=False, model_diff=model_diff)
    run("LoraSave", _ctx(tmp_path), **kw)
    run("LoraSave", _ctx(tmp_path), **kw)
    assert sorted(p.name for p in folder.iterdir()) == ["mine_00004_.safetensors", "mine_00005_.safetensors",
                                                      "mine_00006_.safetensors"]
    assert (folder / "mine_00004_.safetensors").read_bytes() == b"keep me"
    assert load_file(str(folder / "mine_00005_.safetensors")).keys() == load_file(
        str(folder / "mine_00006_.safetensors")).keys()
    with pytest.raises(OSError, match="LoraSave: input 'filename_prefix'.*outside the output folder"):
        run("LoraSave", _ctx(tmp_path), **(kw | {"filename_prefix": "../escape"}))


def test_bad_input_names_node_and_input(loaded, tmp_path):
    model_diff, _ = _diffs(loaded)
    base = dict(filename_prefix="loras/x", rank=8, lora_type="standard", bias_diff=True)
    with pytest.raises(ValueError, match="LoraSave: inputs 'model_diff' and 'text_encoder_diff' are both unconnected"):
        run("LoraSave", _ctx(tmp_path), **base)
    for rank in (0, 4097):
        with pytest.raises(ValueError, match=f"LoraSave: input 'rank': rank {rank} is out of range"):
            run("LoraSave", _ctx(tmp_path), **(base | {"rank": rank}), model_diff=model_diff)
    with pytest.raises(ValueError, match="LoraSave: input 'lora_type'"):
        run("LoraSave", _ctx(tmp_path), **(base | {"lora_type": "lokr"}), model_diff=model_diff)
    flux_like = model_diff.clone()
    flux_like.family = "flux"
    with pytest.raises(ValueError, match="LoraSave: input 'model_diff': .*flux model is not supported"):
        run("LoraSave", _ctx(tmp_path), **base, model_diff=flux_like)
    assert not (tmp_path / "loras").exists()


# ---- ComfyUI workflows ---------------------------------------------------------------------------

def _api_extract(lora_type: str, rank: int) -> dict:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "model1.safetensors"}},
        "2": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "model2.safetensors"}},
        "3": {"class_type": "ModelMergeSubtract", "inputs": {"model1": ["2", 0], "model2": ["1", 0], "multiplier": 1.0}},
        "4": {"class_type": "CLIPMergeSubtract", "inputs": {"clip1": ["2", 1], "clip2": ["1", 1], "multiplier": 1.0}},
        "5": {"class_type": "LoraSave", "inputs": {"filename_prefix": "loras/ComfyUI_extracted_lora", "rank": rank,
                                                   "lora_type": lora_type, "bias_diff": True,
                                                   "model_diff": ["3", 0], "text_encoder_diff": ["4", 0]}},
    }


def _api_sample(ckpt: str, lora: str | None, prefix: str) -> dict:
    doc = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}}}
    src = ["1", 0], ["1", 1]
    if lora:
        doc["2"] = {"class_type": "LoraLoader", "inputs": {"model": ["1", 0], "clip": ["1", 1], "lora_name": lora,
                                                           "strength_model": 1.0, "strength_clip": 1.0}}
        src = ["2", 0], ["2", 1]
    doc |= {
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red circle", "clip": src[1]}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": src[1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "6": {"class_type": "KSampler", "inputs": {"model": src[0], "positive": ["3", 0], "negative": ["4", 0],
                                                   "latent_image": ["5", 0], "seed": 3, "steps": 3, "cfg": 5.0,
                                                   "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}},
        "7": {"class_type": "SaveLatent", "inputs": {"samples": ["6", 0], "filename_prefix": prefix}},
    }
    return doc


def test_comfyui_workflow_extracts_and_loraloader_rebuilds_model2(files, tmp_path):
    """CheckpointLoaderSimple x2 + ModelMergeSubtract + CLIPMergeSubtract + LoraSave imported from
    ComfyUI's API format; the output folder is the models folder, so LoraLoader finds the file; the
    latent sampled with model 1 + the LoRA is model 2's."""
    from nodegen.formats import open_any
    from nodegen.formats.latent_file import read_latent
    from nodegen.runtime.engine import Engine

    (tmp_path / "checkpoints").mkdir()
    for f in files:
        shutil.copy(f, tmp_path / "checkpoints" / f.name)
    engine = Engine(models=tmp_path, output_dir=tmp_path, input_dir=tmp_path, device="cpu")

    def run_api(doc: dict, name: str):
        (tmp_path / name).write_text(json.dumps(doc))
        result = engine.run(open_any(tmp_path / name))
        assert result.ok, (result.problems, [str(f) for f in result.failures])
        return result

    run_api(_api_extract("full_diff", 8), "extract.json")
    lora = "ComfyUI_extracted_lora_00001_.safetensors"
    assert (tmp_path / "loras" / lora).is_file()
    assert read_lora(tmp_path / "loras" / lora).layout == "diffusers"
    run_api(_api_sample("model1.safetensors", lora, "latents/with_lora"), "with_lora.json")
    run_api(_api_sample("model2.safetensors", None, "latents/model2"), "model2.json")
    run_api(_api_sample("model1.safetensors", None, "latents/model1"), "model1.json")
    got, want, base = (read_latent(tmp_path / "latents" / f"{n}_00001_.latent")[0]
                       for n in ("with_lora", "model2", "model1"))
    # the file holds float16 differences (as ComfyUI writes them): the latent is model 2's up to
    # that rounding (~5e-4 of its size), against a fine-tune that moves it by half its size
    assert (want - base).abs().max() > 0.3 * want.abs().max()
    torch.testing.assert_close(got, want, rtol=0, atol=1e-3 * want.abs().max().item())

    bad = _api_extract("standard", 0)
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    result = engine.run(open_any(tmp_path / "bad.json"))
    assert not result.ok
    [problem] = result.problems
    assert problem.node_id == "5" and problem.input == "rank" and "0" in problem.message


def test_comfyui_api_and_editor_formats_import_alike():
    """The API document exports back unchanged; the editor (UI) form, with ComfyUI's widget order
    (filename_prefix, rank, lora_type, bias_diff), imports to the same nodes."""
    from nodegen.formats import comfy
    from tests.support.comfy_ui import ui_from_api

    api = _api_extract("standard", 16)
    doc, _ = comfy.import_comfy(api)
    assert doc["nodes"]["5"]["inputs"] == {
        "filename_prefix": "loras/ComfyUI_extracted_lora", "rank": 16, "lora_type": "standard", "bias_diff": True,
        "model_diff": {"from": ["3", "model"]}, "text_encoder_diff": {"from": ["4", "clip"]}}
    assert comfy.export_api(doc) == api
    ui = ui_from_api(api, {"CheckpointLoaderSimple": ["ckpt_name"], "ModelMergeSubtract": ["multiplier"],
                           "CLIPMergeSubtract": ["multiplier"],
                           "LoraSave": ["filename_prefix", "rank", "lora_type", "bias_diff"]},
                     {"CheckpointLoaderSimple": ["MODEL", "CLIP", "VAE"], "ModelMergeSubtract": ["MODEL"],
                      "CLIPMergeSubtract": ["CLIP"], "LoraSave": []})
    ui_doc, _ = comfy.import_comfy(ui)
    assert ui_doc["nodes"]["5"]["inputs"] == doc["nodes"]["5"]["inputs"]
