"""Block-wise merging of Flux.1 and SD3 models (ComfyUI's ModelMergeFlux1, ModelMergeSD3_2B,
ModelMergeSD35_Large): each diffusers weight takes the ratio of the original block it belongs to
(ratio * model1 + (1 - ratio) * model2), family mismatches are refused, and a ComfyUI workflow with
two UNETLoaders and ModelMergeFlux1 imports and runs."""

from __future__ import annotations

import copy

import pytest
import torch

from nodegen.models.merge_blocks_flow import FLUX_BLOCKS, SD3_2B_BLOCKS, input_name, merge_flow_blocks
from nodegen.models.objects import DiffusionModel
from tests.support.nodes import run

torch.set_num_threads(1)

#: diffusers prefix -> ComfyUI widget (original block), written out by hand as the oracle.
FLUX_EXPECTED = {"x_embedder.": "img_in", "time_text_embed.timestep_embedder.": "time_in",
                 "time_text_embed.guidance_embedder.": "guidance_in", "time_text_embed.text_embedder.": "vector_in",
                 "context_embedder.": "txt_in", "transformer_blocks.0.": "double_blocks_0",
                 "single_transformer_blocks.0.": "single_blocks_0", "single_transformer_blocks.1.": "single_blocks_1",
                 "norm_out.": "final_layer", "proj_out.": "final_layer"}
SD3_EXPECTED = {"pos_embed.proj.": "x_embedder", "time_text_embed.timestep_embedder.": "t_embedder",
                "time_text_embed.text_embedder.": "y_embedder", "context_embedder.": "context_embedder",
                "transformer_blocks.0.": "joint_blocks_0", "transformer_blocks.1.": "joint_blocks_1",
                "norm_out.": "final_layer", "proj_out.": "final_layer"}


def _perturbed(transformer: torch.nn.Module, seed: int) -> torch.nn.Module:
    other = copy.deepcopy(transformer)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return other


@pytest.fixture(scope="module")
def flux(tmp_path_factory):
    from tests.support.flow_fixtures import fixture

    f = fixture("flux", tmp_path_factory.mktemp("flux"))
    other = _perturbed(f.transformer, 3)
    return f, DiffusionModel(f.transformer, "flux", "flow"), DiffusionModel(other, "flux", "flow"), other


@pytest.fixture(scope="module")
def sd3(tmp_path_factory):
    from tests.support.flow_fixtures import fixture

    f = fixture("sd3", tmp_path_factory.mktemp("sd3"))
    return DiffusionModel(f.transformer, "sd3", "flow"), DiffusionModel(_perturbed(f.transformer, 4), "sd3", "flow")


def weights(model) -> dict[str, torch.Tensor]:
    with model.use("cpu") as unet:
        return {k: v.detach().clone() for k, v in unet.named_parameters()}


def _widget_of(key: str, expected: dict[str, str]) -> str:
    hits = [w for prefix, w in expected.items() if key.startswith(prefix)]
    assert len(hits) == 1, key  # every weight belongs to exactly one block
    return hits[0]


def _check_merge(merged, m1, m2, ratio_of) -> None:
    w1, w2, wm = weights(m1), weights(m2), weights(merged)
    for k in w1:
        r = ratio_of(k)
        assert torch.allclose(wm[k], r * w1[k] + (1 - r) * w2[k], atol=1e-6), (k, r)


def test_flux_ratio_per_original_block(flux):
    _, m1, m2, _ = flux
    ratios = {input_name(p): 1.0 for p in FLUX_BLOCKS}
    ratios.update({w: round(0.05 + 0.09 * i, 2) for i, w in enumerate(dict.fromkeys(FLUX_EXPECTED.values()))})
    merged = run("ModelMergeFlux1", model1=m1, model2=m2, **ratios)["model"]
    assert merged.unet is m1.unet  # lazy: patches on model1's weights
    _check_merge(merged, m1, m2, lambda k: ratios[_widget_of(k, FLUX_EXPECTED)])


def test_sd3_ratio_per_original_block(sd3):
    m1, m2 = sd3
    ratios = {input_name(p): 1.0 for p in SD3_2B_BLOCKS}
    ratios.update({w: round(0.1 + 0.1 * i, 2) for i, w in enumerate(dict.fromkeys(SD3_EXPECTED.values()))})
    merged = run("ModelMergeSD3_2B", model1=m1, model2=m2, **ratios)["model"]
    _check_merge(merged, m1, m2, lambda k: ratios[_widget_of(k, SD3_EXPECTED)])
    large = run("ModelMergeSD35_Large", model1=m1, model2=m2,
                **{n: 0.3 for n in ratios}, **{f"joint_blocks_{i}": 0.3 for i in range(24, 38)})["model"]
    _check_merge(large, m1, m2, lambda k: 0.3)


def test_unlisted_blocks_take_the_first_ratio_and_the_longest_prefix_wins(flux):
    _, m1, m2, _ = flux
    merged = merge_flow_blocks(m1, m2, "flux", {"img_in.": 0.25, "double_blocks.": 0.5, "double_blocks.0.": 0.75},
                               "ModelMergeFlux1")
    _check_merge(merged, m1, m2, lambda k: 0.75 if k.startswith("transformer_blocks.0.")
                 else 0.25)


def test_family_mismatch_is_refused_naming_node_and_input(flux, sd3):
    from tests.support.flow_fixtures import fixture

    _, f1, _, _ = flux
    s1, _ = sd3
    with pytest.raises(ValueError, match="ModelMergeFlux1: input 'model2' is a sd3 model"):
        run("ModelMergeFlux1", model1=f1, model2=s1, **{input_name(p): 0.5 for p in FLUX_BLOCKS})
    with pytest.raises(ValueError, match="ModelMergeSD3_2B: input 'model1' is a flux model"):
        run("ModelMergeSD3_2B", model1=f1, model2=s1, **{input_name(p): 0.5 for p in SD3_2B_BLOCKS})
    schnell = DiffusionModel(fixture("flux").transformer_schnell, "flux", "flow")  # no guidance_in
    with pytest.raises(ValueError, match="ModelMergeFlux1: inputs 'model1' and 'model2': .*weights differ"):
        run("ModelMergeFlux1", model1=f1, model2=schnell, **{input_name(p): 0.5 for p in FLUX_BLOCKS})


def test_comfyui_flux_merge_workflow_imports_and_runs(flux, tmp_path):
    import json
    import os

    import numpy as np
    from PIL import Image

    from nodegen.formats import open_any
    from nodegen.runtime.engine import Engine
    from tests.support.flow_convert import flux_to_original
    from tests.support.flow_fixtures import _save

    f, _, _, other = flux
    models = tmp_path / "models"
    (models / "diffusion_models").mkdir(parents=True)
    _save(flux_to_original({k: v.detach() for k, v in other.state_dict().items()}),
          models / "diffusion_models" / "flux-b.safetensors")
    for sub, src, name in (("diffusion_models", f.diffusion_model, "flux-a.safetensors"),
                           ("vae", f.vae_file, "ae.safetensors"), ("text_encoders", f.clip_l, "clip_l.safetensors"),
                           ("text_encoders", f.t5xxl, "t5xxl_fp16.safetensors")):
        (models / sub).mkdir(parents=True, exist_ok=True)
        os.symlink(src, models / sub / name)
    blocks = list(FLUX_BLOCKS)

    def merge(ratios: dict[str, float]) -> dict:
        return {"class_type": "ModelMergeFlux1",
                "inputs": {"model1": ["1", 0], "model2": ["2", 0], **{p: ratios.get(p, 1.0) for p in blocks}}}

    def sample_and_save(model: str, prefix: str, base: int) -> dict:
        return {str(base): {"class_type": "KSampler",
                            "inputs": {"seed": 3, "steps": 2, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple",
                                       "denoise": 1.0, "model": [model, 0], "positive": ["5", 0],
                                       "negative": ["5", 0], "latent_image": ["7", 0]}},
                str(base + 1): {"class_type": "VAEDecode", "inputs": {"samples": [str(base), 0], "vae": ["6", 0]}},
                str(base + 2): {"class_type": "SaveImage", "inputs": {"filename_prefix": prefix,
                                                                       "images": [str(base + 1), 0]}}}

    api = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux-a.safetensors", "weight_dtype": "default"}},
        "2": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux-b.safetensors", "weight_dtype": "default"}},
        "3": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": "clip_l.safetensors",
                                                         "clip_name2": "t5xxl_fp16.safetensors", "type": "flux"}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "a castle", "clip": ["3", 0]}},
        "5": {"class_type": "FluxGuidance", "inputs": {"guidance": 3.5, "conditioning": ["4", 0]}},
        "6": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "7": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "8": merge({p: 0.0 for p in blocks}),  # all model2
        "9": merge({"double_blocks.0.": 0.3, "single_blocks.1.": 0.6, "img_in.": 0.8}),
        **sample_and_save("8", "all_b", 10), **sample_and_save("2", "plain_b", 20), **sample_and_save("9", "mixed", 30),
    }
    (tmp_path / "workflow.json").write_text(json.dumps(api))
    engine = Engine(models=models, input_dir=tmp_path, output_dir=tmp_path / "out", device="cpu")
    result = engine.run(open_any(tmp_path / "workflow.json"))
    assert result.ok, (result.problems, [str(x) for x in result.failures])
    img = {name: np.asarray(Image.open(tmp_path / "out" / f"{name}_00001.png"), dtype=np.int16)
           for name in ("all_b", "plain_b", "mixed")}
    assert img["all_b"].shape == (64, 64, 3)
    assert np.abs(img["all_b"] - img["plain_b"]).max() <= 1  # ratio 0 everywhere is model2
    assert np.abs(img["mixed"] - img["plain_b"]).mean() > 1  # a partial merge changes the image


def test_widget_order_is_comfyuis():
    from nodegen.formats.comfy.mapping import for_comfy
    from nodegen.kernel.registry import default_registry
    from nodegen.models.merge_blocks_flow import SD35_LARGE_BLOCKS

    for comfy, blocks, count in (("ModelMergeFlux1", FLUX_BLOCKS, 63), ("ModelMergeSD3_2B", SD3_2B_BLOCKS, 30),
                                 ("ModelMergeSD35_Large", SD35_LARGE_BLOCKS, 44)):
        m = for_comfy(comfy)
        assert list(m.widgets) == blocks and len(blocks) == count
        assert [i.name for i in default_registry()[comfy].inputs][2:] == [m.our_input(w) for w in blocks]
    assert FLUX_BLOCKS[:6] == ["img_in.", "time_in.", "guidance_in", "vector_in.", "txt_in.", "double_blocks.0."]
    assert FLUX_BLOCKS[24:26] == ["single_blocks.0.", "single_blocks.1."] and FLUX_BLOCKS[-1] == "final_layer."
