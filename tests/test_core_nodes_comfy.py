"""A ComfyUI workflow built on the core nodes mapped in map_core_extras (model sampling, RescaleCFG,
FreeU, conditioning range / average / mask, image filters and transforms, latent arithmetic and
batches) imports in both formats with every widget on a named input, exports back unchanged,
validates and runs on the fixture SD1 checkpoint; both imports give the same pixels."""

from __future__ import annotations

import shutil

import pytest
import torch

from nodegen.formats import comfy
from nodegen.runtime.engine import Engine
from tests.support.comfy_ui import ui_from_api

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from PIL import Image

    from tests.support.fixtures import fixture

    sd1 = fixture("sd1", tmp_path_factory.mktemp("sd1"))
    root = tmp_path_factory.mktemp("models")
    (root / "checkpoints").mkdir()
    shutil.copy(sd1.single_file, root / "checkpoints" / "tiny-sd1.safetensors")
    inp = tmp_path_factory.mktemp("input")
    mask = Image.new("RGB", (64, 64))
    mask.paste((255, 0, 0), (8, 16, 40, 56))
    mask.save(inp / "mask.png")
    return Engine(models=root, input_dir=inp, output_dir=tmp_path_factory.mktemp("out"), device="cpu")


def _api() -> dict:
    def n(ct, **inputs):
        return {"class_type": ct, "inputs": inputs}

    return {
        "4": n("CheckpointLoaderSimple", ckpt_name="tiny-sd1.safetensors"),
        "20": n("ModelSamplingDiscrete", sampling="v_prediction", zsnr=True, model=["4", 0]),
        "21": n("RescaleCFG", multiplier=0.7, model=["20", 0]),
        "22": n("FreeU", b1=1.1, b2=1.2, s1=0.9, s2=0.2, model=["21", 0]),
        "23": n("FreeU_V2", b1=1.3, b2=1.4, s1=0.8, s2=0.3, model=["22", 0]),
        "6": n("CLIPTextEncode", text="a cat", clip=["4", 1]),
        "7": n("CLIPTextEncode", text="blurry", clip=["4", 1]),
        "24": n("CLIPTextEncode", text="a dog", clip=["4", 1]),
        "25": n("ConditioningAverage", conditioning_to_strength=0.7, conditioning_to=["6", 0],
                conditioning_from=["24", 0]),
        "26": n("ConditioningSetTimestepRange", start=0.0, end=0.6, conditioning=["25", 0]),
        "27": n("LoadImageMask", image="mask.png", channel="red"),
        "28": n("ConditioningSetMask", strength=0.8, set_cond_area="mask bounds", conditioning=["24", 0],
                mask=["27", 0]),
        "29": n("ConditioningCombine", conditioning_1=["26", 0], conditioning_2=["28", 0]),
        "5": n("EmptyLatentImage", width=64, height=64, batch_size=2),
        "30": n("LatentBatchSeedBehavior", seed_behavior="fixed", samples=["5", 0]),
        "3": n("KSampler", seed=5, steps=3, cfg=6.0, sampler_name="euler", scheduler="normal", denoise=1.0,
               model=["23", 0], positive=["29", 0], negative=["7", 0], latent_image=["30", 0]),
        "31": n("LatentFlip", flip_method="y-axis: horizontally", samples=["3", 0]),
        "32": n("LatentRotate", rotation="90 degrees", samples=["31", 0]),
        "33": n("LatentAdd", samples1=["32", 0], samples2=["3", 0]),
        "34": n("LatentSubtract", samples1=["33", 0], samples2=["32", 0]),
        "35": n("LatentMultiply", multiplier=0.9, samples=["34", 0]),
        "36": n("LatentBatch", samples1=["35", 0], samples2=["3", 0]),
        "8": n("VAEDecode", samples=["36", 0], vae=["4", 2]),
        "37": n("ImageSharpen", sharpen_radius=2, sigma=0.8, alpha=0.5, image=["8", 0]),
        "38": n("ImageBlur", blur_radius=1, sigma=0.7, image=["37", 0]),
        "39": n("ImageFlip", flip_method="x-axis: vertically", image=["38", 0]),
        "40": n("ImageRotate", rotation="270 degrees", image=["39", 0]),
        "9": n("SaveImage", filename_prefix="core", images=["40", 0]),
    }


#: ComfyUI's widget order per class (nodes.py, comfy_extras/nodes_model_advanced.py, nodes_freelunch.py,
#: nodes_post_processing.py, nodes_images.py, nodes_latent.py), typed here independently of the tables.
WIDGETS = {"CheckpointLoaderSimple": ["ckpt_name"], "ModelSamplingDiscrete": ["sampling", "zsnr"],
           "RescaleCFG": ["multiplier"], "FreeU": ["b1", "b2", "s1", "s2"], "FreeU_V2": ["b1", "b2", "s1", "s2"],
           "CLIPTextEncode": ["text"], "ConditioningAverage": ["conditioning_to_strength"],
           "ConditioningSetTimestepRange": ["start", "end"], "LoadImageMask": ["image", "channel", "upload"],
           "ConditioningSetMask": ["strength", "set_cond_area"], "ConditioningCombine": [],
           "EmptyLatentImage": ["width", "height", "batch_size"], "LatentBatchSeedBehavior": ["seed_behavior"],
           "KSampler": ["seed", "control", "steps", "cfg", "sampler_name", "scheduler", "denoise"],
           "LatentFlip": ["flip_method"], "LatentRotate": ["rotation"], "LatentAdd": [], "LatentSubtract": [],
           "LatentMultiply": ["multiplier"], "LatentBatch": [], "VAEDecode": [],
           "ImageSharpen": ["sharpen_radius", "sigma", "alpha"], "ImageBlur": ["blur_radius", "sigma"],
           "ImageFlip": ["flip_method"], "ImageRotate": ["rotation"], "SaveImage": ["filename_prefix"]}
_ONE = {"MODEL": ["MODEL"], "CONDITIONING": ["CONDITIONING"], "LATENT": ["LATENT"], "IMAGE": ["IMAGE"]}
OUTPUTS = {"CheckpointLoaderSimple": ["MODEL", "CLIP", "VAE"], "LoadImageMask": ["MASK"], "SaveImage": [],
           **{k: _ONE["MODEL"] for k in ("ModelSamplingDiscrete", "RescaleCFG", "FreeU", "FreeU_V2")},
           **{k: _ONE["CONDITIONING"] for k in ("CLIPTextEncode", "ConditioningAverage", "ConditioningCombine",
                                                "ConditioningSetTimestepRange", "ConditioningSetMask")},
           **{k: _ONE["LATENT"] for k in ("EmptyLatentImage", "LatentBatchSeedBehavior", "KSampler", "LatentFlip",
                                          "LatentRotate", "LatentAdd", "LatentSubtract", "LatentMultiply",
                                          "LatentBatch")},
           **{k: _ONE["IMAGE"] for k in ("VAEDecode", "ImageSharpen", "ImageBlur", "ImageFlip", "ImageRotate")}}


def _ui(api: dict) -> dict:
    return ui_from_api(api, WIDGETS, OUTPUTS)


def _pixels(result) -> list:
    assert result.ok, (result.problems, [str(f) for f in result.failures])
    return [list(im.getdata()) for im in result.images]


def test_core_nodes_workflow_in_both_formats(engine):
    api = _api()
    doc, notes = comfy.import_comfy(api)
    assert notes == []
    assert doc["nodes"]["22"]["inputs"] == {"b1": 1.1, "b2": 1.2, "s1": 0.9, "s2": 0.2, "model": {"from": ["21", "model"]}}
    assert doc["nodes"]["28"]["inputs"]["set_cond_area"] == "mask bounds"
    assert doc["nodes"]["20"]["inputs"]["zsnr"] is True
    assert comfy.export_api(doc) == api
    ui_doc, ui_notes = comfy.import_comfy(_ui(api))
    assert ui_notes == [] and {k: n["inputs"] for k, n in ui_doc["nodes"].items()} == {
        k: n["inputs"] for k, n in doc["nodes"].items()}
    from_api = _pixels(engine.run(doc))
    assert len(from_api) == 4  # LatentBatch: 2 + 2
    assert _pixels(engine.run(ui_doc)) == from_api
    plain = dict(api, **{"3": {**api["3"], "inputs": {**api["3"]["inputs"], "model": ["4", 0]}}})
    assert _pixels(engine.run(comfy.import_comfy(plain)[0])) != from_api  # the model patches matter
