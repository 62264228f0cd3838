"""RepeatImageBatch, the YUV nodes and DiffusersLoader against ComfyUI's rules (transcribed here): RepeatImageBatch
is ``image.repeat((amount, 1, 1, 1))`` (comfy_extras/nodes_images.py); DiffusersLoader lists the
folders holding model_index.json under the models' ``diffusers`` folders and loads MODEL, CLIP and
VAE from one (nodes.py, comfy/diffusers_load.py). A ComfyUI API document using them,
ImageMorphology ("Morphology"), PorterDuffImageComposite and the YUV nodes imports and runs. ImageRGBToYUV /
ImageYUVToRGB follow kornia.color's YCbCr (comfy_extras/nodes_morphology.py calls it)."""

from __future__ import annotations

import shutil

import pytest
import torch

from nodegen.formats.comfy import export_api, import_comfy
from nodegen.runtime.engine import Engine
from tests.support.nodes import run

torch.set_num_threads(1)


def test_repeat_image_batch_tiles_the_whole_batch():
    batch = torch.rand(2, 3, 4, 3, generator=torch.Generator().manual_seed(0))
    out = run("RepeatImageBatch", image=batch, amount=3)["image"]
    assert out.shape == (6, 3, 4, 3)
    assert torch.equal(out, batch.repeat((3, 1, 1, 1)))  # ComfyUI's rule
    assert torch.equal(out[2], batch[0]) and torch.equal(out[5], batch[1])  # a, b, a, b, a, b
    assert torch.equal(run("RepeatImageBatch", image=batch, amount=1)["image"], batch)
    with pytest.raises(ValueError, match=r"RepeatImageBatch: input 'amount'"):
        run("RepeatImageBatch", image=batch, amount=0)
    with pytest.raises(ValueError, match=r"RepeatImageBatch: input 'image'"):
        run("RepeatImageBatch", image=torch.rand(1, 4, 4), amount=2)  # a MASK


def test_rgb_to_yuv_and_back_are_kornias_ycbcr():
    # kornia.color.rgb_to_ycbcr / ycbcr_to_rgb (0.9), transcribed; ComfyUI's nodes give each plane as
    # a grey RGB image and average each plane's channels on the way back
    image = torch.rand(2, 5, 6, 4, generator=torch.Generator().manual_seed(3))  # RGBA: alpha is dropped
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    want = {"Y": y, "U": (b - y) * 0.564 + 0.5, "V": (r - y) * 0.713 + 0.5}
    planes = run("ImageRGBToYUV", image=image)
    for name in "YUV":
        assert planes[name].shape == (2, 5, 6, 3)
        assert torch.equal(planes[name], want[name][..., None].expand(2, 5, 6, 3)), name
    back = run("ImageYUVToRGB", **planes)["image"]
    y, cb, cr = (planes[n][..., :3].mean(-1) for n in "YUV")  # ComfyUI: torch.mean(Y[..., :3], dim=-1)
    cb, cr = cb - 0.5, cr - 0.5
    rgb = torch.stack([y + 1.4025245442 * cr, y - 0.7144034731 * cr - 0.3443401356 * cb,
                       y + 1.7730496454 * cb], -1).clamp(0, 1)
    assert torch.equal(back, rgb)
    torch.testing.assert_close(back, image[..., :3], rtol=0, atol=1e-6)  # the exact inverse: lossless
    # pure red, by hand: Y 0.299, U 0.564 * -0.299 + 0.5, V 0.713 * 0.701 + 0.5
    red = run("ImageRGBToYUV", image=torch.tensor([1.0, 0.0, 0.0]).view(1, 1, 1, 3))
    assert [red[n][0, 0, 0, 0].item() for n in "YUV"] == pytest.approx([0.299, 0.331364, 0.999813], abs=1e-6)
    with pytest.raises(ValueError, match=r"ImageYUVToRGB: inputs 'Y', 'U' and 'V'"):
        run("ImageYUVToRGB", Y=planes["Y"], U=planes["U"][:1], V=planes["V"])
    with pytest.raises(ValueError, match=r"ImageRGBToYUV: input 'image'"):
        run("ImageRGBToYUV", image=torch.rand(1, 4, 4))  # a MASK


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from tests.support.fixtures import fixture

    sd1 = fixture("sd1", tmp_path_factory.mktemp("sd1"))
    root = tmp_path_factory.mktemp("models")
    (root / "diffusers" / "sd1").mkdir(parents=True)
    (root / "checkpoints").mkdir()
    shutil.copytree(sd1.diffusers_dir, root / "diffusers" / "sd1" / "tiny-sd1")
    shutil.copy(sd1.single_file, root / "diffusers" / "loose.safetensors")  # a file, not a model folder
    (root / "diffusers" / "unet-only").mkdir()
    shutil.copy(sd1.diffusers_dir / "unet" / "config.json", root / "diffusers" / "unet-only")  # one part's folder
    shutil.copy(sd1.single_file, root / "checkpoints" / "tiny-sd1.safetensors")
    return root


def test_diffusers_loader_lists_only_model_folders(models):
    engine = Engine(models=models, device="cpu")
    spec = engine.registry["DiffusersLoader"].input("model_path")
    assert spec.choice_list(engine.env) == ["sd1/tiny-sd1"]


def _api(model_path: str) -> dict:
    return {
        "1": {"class_type": "DiffusersLoader", "inputs": {"model_path": model_path}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a photo of a cat"}},
        "3": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "4": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["1", 2]}},
        "5": {"class_type": "RepeatImageBatch", "inputs": {"image": ["4", 0], "amount": 2}},
        "6": {"class_type": "Morphology", "inputs": {"image": ["5", 0], "operation": "gradient", "kernel_size": 4}},
        "7": {"class_type": "PreviewImage", "inputs": {"images": ["6", 0]}},
        "8": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sd1.safetensors"}},
        "9": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["8", 1], "text": "a photo of a cat"}},
        "10": {"class_type": "SolidMask", "inputs": {"value": 0.25, "width": 64, "height": 64}},
        "12": {"class_type": "ImageRGBToYUV", "inputs": {"image": ["4", 0]}},
        "13": {"class_type": "ImageYUVToRGB", "inputs": {"Y": ["12", 0], "U": ["12", 1], "V": ["12", 2]}},
        "11": {"class_type": "PorterDuffImageComposite", "inputs": {"source": ["6", 0], "source_alpha": ["10", 0],
                                                                    "destination": ["4", 0],
                                                                    "destination_alpha": ["10", 0], "mode": "XOR"}},
    }


def test_a_comfyui_api_document_with_them_imports_and_runs(models, tmp_path):
    from nodegen.image.morphology import morphology
    from nodegen.image.porter_duff import porter_duff

    doc, warnings = import_comfy(_api("sd1/tiny-sd1"))
    assert not [w for w in warnings if "unknown" in w.lower() or "missing" in w.lower()], warnings
    ids = {n["type"]: nid for nid, n in doc["nodes"].items()}
    nodes = doc["nodes"]
    assert nodes[ids["DiffusersLoader"]]["inputs"] == {"model_path": "sd1/tiny-sd1"}
    assert {k: v for k, v in nodes[ids["ImageMorphology"]]["inputs"].items() if k != "image"} == \
        {"operation": "gradient", "kernel_size": 4}
    assert nodes[ids["RepeatImageBatch"]]["inputs"]["amount"] == 2
    assert export_api(doc) == _api("sd1/tiny-sd1")  # and back to ComfyUI's classes ("Morphology")
    engine = Engine(models=models, output_dir=tmp_path, device="cpu")
    res = engine.run(doc, targets=list(nodes))
    assert res.ok, res.failures
    model, clip, vae = (res.output(ids["DiffusersLoader"], k) for k in ("model", "clip", "vae"))
    assert (model.family, clip.family, vae.latent_channels) == ("sd1", "sd1", 4)
    # the same weights as the single file of the same model (CheckpointLoaderSimple)
    conds = [res.output(nid, "conditioning")[0].embeds for nid, n in nodes.items() if n["type"] == "CLIPTextEncode"]
    assert len(conds) == 2 and torch.equal(conds[0], conds[1])
    decoded = res.output(ids["VAEDecode"], "image")
    got = res.output(ids["ImageMorphology"], "image")
    want = morphology(decoded.repeat(2, 1, 1, 1).movedim(-1, 1), "gradient", 4).movedim(1, -1)
    assert got.shape == (2, 64, 64, 3) and torch.equal(got, want)
    assert nodes[ids["PorterDuffImageComposite"]]["inputs"]["mode"] == "XOR"
    quarter = torch.full((1, 64, 64, 1), 0.25)
    image, mask = porter_duff(got[0], quarter[0], decoded[0], quarter[0], "XOR")  # one item: the shortest input
    assert torch.equal(res.output(ids["PorterDuffImageComposite"], "image"), image[None])
    assert torch.equal(res.output(ids["PorterDuffImageComposite"], "mask"), mask[None, ..., 0])
    torch.testing.assert_close(res.output(ids["ImageYUVToRGB"], "image"), decoded, rtol=0, atol=1e-6)


def test_diffusers_loader_errors_name_the_node_input_and_folder(models, tmp_path):
    engine = Engine(models=models, output_dir=tmp_path, device="cpu")
    wf = {"format": "nodegen-workflow", "version": 1,
          "nodes": {"1": {"type": "DiffusersLoader", "inputs": {"model_path": "nope"}}}}
    res = engine.run(wf, targets=["1"])
    text = " ".join(str(p) for p in res.problems) + " ".join(str(f) for f in res.failures)
    assert not res.ok and "model_path" in text and "nope" in text and str(models / "diffusers") in text
    wf["nodes"]["1"]["inputs"]["model_path"] = "loose.safetensors"
    res = engine.run(wf, targets=["1"])
    text = " ".join(str(f) for f in res.failures)
    assert not res.ok and "DiffusersLoader: model_path 'loose.safetensors' is a file" in text
    assert "CheckpointLoader" in text
    wf["nodes"]["1"]["inputs"]["model_path"] = "unet-only"
    res = engine.run(wf, targets=["1"])
    assert "DiffusersLoader: model_path 'unet-only' is a folder without model_index.json" in \
        " ".join(str(f) for f in res.failures)
    with pytest.raises(ValueError, match=r"DiffusersLoader: model_path 'nope' was not found among the diffusers"):
        run("DiffusersLoader", ctx=engine_context(engine), model_path="nope")


def engine_context(engine: Engine):
    from types import SimpleNamespace

    return SimpleNamespace(paths=engine.env.paths, models=engine.models)
