"""Model merging as weight patches (no copy of the weights), per-block ratios, add-difference,
text-encoder merges, and CheckpointSave writing an original-layout file that loads back."""

from __future__ import annotations

import copy

import pytest
import torch

from nodegen.kernel.context import CancelToken, RunContext
from nodegen.models.loader import load_single_file
from nodegen.models.merge import ldm_names
from tests.support.nodes import run

torch.set_num_threads(1)



@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from tests.support.fixtures import fixture

    sd1 = fixture("sd1", tmp_path_factory.mktemp("sd1"))
    a = load_single_file(sd1.single_file)
    b = load_single_file(sd1.single_file)
    c = load_single_file(sd1.single_file)
    g = torch.Generator().manual_seed(5)
    for i, m in enumerate((b, c)):
        with torch.no_grad():
            for p in list(m[0].unet.parameters()) + list(m[1].encoders[0].parameters()):
                p.add_(torch.randn(p.shape, generator=g) * 0.05 * (i + 1))
    return sd1, a, b, c


def weights(model) -> dict[str, torch.Tensor]:
    with model.use("cpu") as unet:
        return {k: v.detach().clone() for k, v in unet.named_parameters()}


def test_merge_simple_is_lazy_and_exact(models):
    _, (m1, _, _), (m2, _, _), _ = models
    before = weights(m1)
    merged = run("ModelMergeSimple", model1=m1, model2=m2, ratio=0.3)["model"]
    assert merged.unet is m1.unet  # no second copy: the merge is a patch on the same weights
    w1, w2, wm = before, weights(m2), weights(merged)
    for k in w1:
        assert torch.allclose(wm[k], 0.3 * w1[k] + 0.7 * w2[k], atol=1e-6), k
    assert all(torch.equal(v, before[k]) for k, v in weights(m1).items())  # inputs untouched
    assert all(torch.equal(v, w1[k]) for k, v in weights(run("ModelMergeSimple", model1=m1, model2=m2,
                                                               ratio=1.0)["model"]).items())


def test_add_difference(models):
    _, (a, _, _), (b, _, _), (c, _, _) = models
    diff = run("ModelMergeSubtract", model1=b, model2=c, multiplier=0.5)["model"]
    out = run("ModelMergeAdd", model1=a, model2=diff)["model"]
    wa, wb, wc, wo = weights(a), weights(b), weights(c), weights(out)
    for k in wa:
        assert torch.allclose(wo[k], wa[k] + 0.5 * (wb[k] - wc[k]), atol=1e-5), k


def test_merge_takes_the_second_models_patches(models):
    _, (a, _, _), (b, _, _), _ = models
    name = next(n for n, p in b.unet.named_parameters() if p.ndim == 2)
    bump = b.clone()
    bump.add_patches({name: torch.ones_like(dict(b.unet.named_parameters())[name])}, 2.0)
    merged = run("ModelMergeSimple", model1=a, model2=bump, ratio=0.0)["model"]
    assert torch.allclose(weights(merged)[name], weights(b)[name] + 2.0, atol=1e-5)


def test_merge_blocks_uses_comfyui_block_prefixes(models):
    _, (a, _, _), (b, _, _), _ = models
    merged = run("ModelMergeBlocks", model1=a, model2=b, input=0.2, middle=0.5, out=0.9)["model"]
    names = ldm_names(a)
    wa, wb, wm = weights(a), weights(b), weights(merged)
    seen = set()
    for k, ldm in names.items():
        r = (0.5 if ldm.startswith("middle") else 0.9 if ldm.startswith("out") else 0.2)
        assert torch.allclose(wm[k], r * wa[k] + (1 - r) * wb[k], atol=1e-6), (k, ldm)
        seen.add(ldm.split(".")[0])
    assert {"input_blocks", "middle_block", "output_blocks", "out", "time_embed"} <= seen


def test_clip_merge_and_mismatch_errors(models):
    sd1, (m1, c1, _), (m2, c2, _), _ = models
    merged = run("CLIPMergeSimple", clip1=c1, clip2=c2, ratio=0.25)["clip"]
    with c1.use("cpu") as e1:
        w1 = {k: v.clone() for k, v in e1[0].named_parameters()}
    with c2.use("cpu") as e2:
        w2 = {k: v.clone() for k, v in e2[0].named_parameters()}
    with merged.use("cpu") as em:
        for k, v in em[0].named_parameters():
            assert torch.allclose(v, 0.25 * w1[k] + 0.75 * w2[k], atol=1e-6), k
    other = copy.deepcopy(m2)
    other.unet.conv_in = torch.nn.Conv2d(4, 16, 3)
    with pytest.raises(ValueError, match="weights differ|is .* in the first"):
        run("ModelMergeSimple", model1=m1, model2=other, ratio=0.5)


def test_checkpoint_save_writes_the_original_layout(models, tmp_path):
    from safetensors.torch import load_file

    sd1, (a, clip_a, vae_a), (b, clip_b, _), _ = models
    merged = run("ModelMergeSimple", model1=a, model2=b, ratio=0.5)["model"]
    clip = run("CLIPMergeSimple", clip1=clip_a, clip2=clip_b, ratio=0.5)["clip"]
    ctx = RunContext(node_id="9", node_title="CheckpointSave", device=torch.device("cpu"), models=None,
                     paths=None, output_dir=str(tmp_path), input_dir=".", temp_dir=".", workflow=None,
                     cancel=CancelToken())
    run("CheckpointSave", ctx, model=merged, clip=clip, vae=vae_a, filename_prefix="checkpoints/merged")
    run("CheckpointSave", ctx, model=merged, clip=clip, vae=vae_a, filename_prefix="checkpoints/merged")
    files = sorted((tmp_path / "checkpoints").iterdir())
    assert [f.name for f in files] == ["merged_00001_.safetensors", "merged_00002_.safetensors"]
    saved, original = load_file(str(files[0])), load_file(str(sd1.single_file))
    assert {k: v.shape for k, v in saved.items()} == {k: v.shape for k, v in original.items()
                                                      if "position_ids" not in k} | \
        {k: v.shape for k, v in saved.items() if "position_ids" in k}
    m, c, _ = load_single_file(files[0])
    wm, wl = weights(merged), weights(m)
    assert all(torch.allclose(wl[k], wm[k], atol=1e-6) for k in wm)
    prompt = "a red circle"
    assert torch.allclose(c.encode(prompt)[0].embeds, clip.encode(prompt)[0].embeds, atol=1e-5)
    with pytest.raises(ValueError, match="outside the output folder"):
        run("CheckpointSave", ctx, model=merged, clip=clip, vae=vae_a, filename_prefix="../x")


def test_checkpoint_save_sd2_keeps_24_text_layers(tmp_path):
    from safetensors.torch import load_file

    from tests.support.fixtures import fixture

    sd2 = fixture("sd2", tmp_path / "sd2")
    model, clip, vae = load_single_file(sd2.single_file)
    ctx = RunContext(node_id="9", node_title="CheckpointSave", device=torch.device("cpu"), models=None,
                     paths=None, output_dir=str(tmp_path), input_dir=".", temp_dir=".", workflow=None,
                     cancel=CancelToken())
    run("CheckpointSave", ctx, model=model, clip=clip, vae=vae, filename_prefix="sd2")
    path = tmp_path / "sd2_00001_.safetensors"
    saved, original = load_file(str(path)), load_file(str(sd2.single_file))
    layers = {k.split(".")[4] for k in saved if ".resblocks." in k}
    assert layers == {k.split(".")[4] for k in original if ".resblocks." in k}
    m2, c2, _ = load_single_file(path)
    assert torch.allclose(c2.encode("a cat")[0].embeds, clip.encode("a cat")[0].embeds, atol=1e-6)


def test_model_merge_sd1_per_block_and_comfy_names(models):
    from nodegen.formats import comfy

    _, (a, _, _), (b, _, _), _ = models
    ratios = {f"input_blocks_{i}": 0.1 for i in range(12)} | {f"middle_block_{i}": 0.5 for i in range(3)}
    ratios |= {f"output_blocks_{i}": 0.9 for i in range(12)} | {"time_embed": 0.3, "label_emb": 1.0, "out": 0.7}
    merged = run("ModelMergeSD1", model1=a, model2=b, **ratios)["model"]
    names = ldm_names(a)
    wa, wb, wm = weights(a), weights(b), weights(merged)
    for k, ldm in names.items():
        head = ldm.split(".")[0]
        r = {"input_blocks": 0.1, "middle_block": 0.5, "output_blocks": 0.9, "time_embed": 0.3, "out": 0.7}[head]
        assert torch.allclose(wm[k], r * wa[k] + (1 - r) * wb[k], atol=1e-6), (k, ldm)
    # ComfyUI's widget names are the prefixes with dots; positions map onto our names
    values = [0.3, 1.0] + [0.1] * 12 + [0.5] * 3 + [0.9] * 12 + [0.7]
    ui = {"last_node_id": 1, "last_link_id": 0, "version": 0.4, "groups": [], "links": [],
          "nodes": [{"id": 1, "type": "ModelMergeSD1", "mode": 0, "widgets_values": values}]}
    doc, notes = comfy.import_comfy(ui)
    assert notes == [] and doc["nodes"]["1"]["inputs"] == ratios
    api = comfy.export_api(doc)["1"]["inputs"]
    assert api["input_blocks.0."] == 0.1 and api["out."] == 0.7 and len(api) == 30
