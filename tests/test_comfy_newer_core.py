"""ComfyUI's newer core nodes that its front end now writes into workflows (it puts BatchImagesNode
in place of ImageBatch and ResizeImageMaskNode in place of ImageScaleBy): BatchImagesNode,
BatchMasksNode, BatchLatentsNode, ResizeImageMaskNode, ResolutionSelector and the Switch, with
their "autogrow" (``images.image0``) and "dynamic combo" (``resize_type.width``) inputs.

Oracles: ComfyUI's rules written out below from comfy_extras/nodes_post_processing.py,
nodes_resolution.py, nodes_logic.py and comfy/utils.py (common_upscale, lanczos), transcribed rather
than imported (ComfyUI is not installed here).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from tests.support.comfy_run import models_folder, run_api
from tests.support.nodes import run

torch.set_num_threads(1)


# -- ComfyUI's rules, written out ----------------------------------------------------------------------
def comfy_lanczos(samples, width, height):
    """comfy/utils.py: lanczos."""
    from PIL import Image

    images = [Image.fromarray(np.clip(255. * image.movedim(0, -1).cpu().numpy(), 0, 255).astype(np.uint8))
              for image in samples]
    images = [image.resize((width, height), resample=Image.Resampling.LANCZOS) for image in images]
    images = [torch.from_numpy(np.array(image).astype(np.float32) / 255.0).movedim(-1, 0) for image in images]
    return torch.stack(images).to(samples.device, samples.dtype)


def common_upscale(samples, width, height, upscale_method, crop):
    """comfy/utils.py: common_upscale (4-D inputs; no bislerp here)."""
    if crop == "center":
        old_width = samples.shape[-1]
        old_height = samples.shape[-2]
        old_aspect = old_width / old_height
        new_aspect = width / height
        x = 0
        y = 0
        if old_aspect > new_aspect:
            x = round((old_width - old_width * (new_aspect / old_aspect)) / 2)
        elif old_aspect < new_aspect:
            y = round((old_height - old_height * (old_aspect / new_aspect)) / 2)
        s = samples.narrow(-2, y, old_height - y * 2).narrow(-1, x, old_width - x * 2)
    else:
        s = samples
    if upscale_method == "lanczos":
        return comfy_lanczos(s, width, height)
    return torch.nn.functional.interpolate(s, size=(height, width), mode=upscale_method)


def _in(x):
    return x.movedim(-1, 1) if x.ndim == 4 else x.unsqueeze(1)


def _out(x, image):
    return x.movedim(1, -1) if image else x.squeeze(1)


def comfy_resize(input, resize_type: dict, scale_method):  # noqa: A002 - ComfyUI's name
    """nodes_post_processing.py: ResizeImageMaskNode.execute with scale_by, scale_dimensions, ..."""
    image = input.ndim == 4
    x = _in(input)
    w, h = x.shape[-1], x.shape[-2]
    t = resize_type["resize_type"]
    crop = "disabled"
    if t == "scale by multiplier":
        size = (round(w * resize_type["multiplier"]), round(h * resize_type["multiplier"]))
    elif t in ("scale dimensions", "scale width", "scale height"):
        width = resize_type.get("width", 0) if t != "scale height" else 0
        height = resize_type.get("height", 0) if t != "scale width" else 0
        crop = resize_type.get("crop", "disabled") if t == "scale dimensions" else "disabled"
        if width == 0 and height == 0:
            return input
        if width == 0:
            width = max(1, round(w * height / h))
        elif height == 0:
            height = max(1, round(h * width / w))
        size = (width, height)
    elif t in ("scale longer dimension", "scale shorter dimension"):
        n = resize_type.get("longer_size", resize_type.get("shorter_size"))
        longer = t == "scale longer dimension"
        if (h > w) == longer and h != w:
            size = (round((w / h) * n), n)
        elif h != w:
            size = (n, round((h / w) * n))
        else:
            size = (n, n)
    elif t == "scale total pixels":
        total = int(resize_type["megapixels"] * 1024 * 1024)
        f = math.sqrt(total / (w * h))
        size = (round(w * f), round(h * f))
    elif t == "match size":
        m = _in(resize_type["match"])
        size, crop = (m.shape[-1], m.shape[-2]), resize_type["crop"]
    else:  # scale to multiple (scale_to_multiple_cover)
        multiple = resize_type["multiple"]
        target_w, target_h = (w // multiple) * multiple, (h // multiple) * multiple
        if multiple <= 1 or target_w == 0 or target_h == 0 or (target_w == w and target_h == h):
            return input
        s_w, s_h = target_w / w, target_h / h
        if s_w >= s_h:
            scaled_w, scaled_h = target_w, max(int(math.ceil(h * s_w)), target_h)
        else:
            scaled_h, scaled_w = target_h, max(int(math.ceil(w * s_h)), target_w)
        x = common_upscale(x, scaled_w, scaled_h, scale_method, "disabled")
        x0, y0 = (scaled_w - target_w) // 2, (scaled_h - target_h) // 2
        return _out(x, image)[:, y0:y0 + target_h, x0:x0 + target_w]
    return _out(common_upscale(x, size[0], size[1], scale_method, crop), image)


def comfy_batch_images(images):
    """nodes_post_processing.py: batch_images."""
    max_channels = max(image.shape[-1] for image in images)
    padded = [torch.nn.functional.pad(i, (0, 1), mode="constant", value=1.0) if i.shape[-1] < max_channels else i
              for i in images]
    first = padded[0].shape
    resized = [common_upscale(i.movedim(-1, 1), first[2], first[1], "bilinear", "center").movedim(1, -1)
               if i.shape[1:] != first[1:] else i for i in padded]
    return torch.cat(resized, dim=0)


def comfy_batch_masks(masks):
    first = masks[0].shape
    out = [common_upscale(m.unsqueeze(1), first[2], first[1], "bilinear", "center").squeeze(1)
           if m.shape[1:] != first[1:] else m for m in masks]
    return torch.cat(out, dim=0)


def comfy_batch_latents(latents):
    out = latents[0].copy()
    out["batch_index"] = []
    first = latents[0]["samples"]
    tensors = []
    for latent in latents:
        s = latent["samples"]
        if s.shape[1:] != first.shape[1:]:  # reshape_latent_to(..., repeat_batch=False)
            s = common_upscale(s, first.shape[-1], first.shape[-2], "bilinear", "center")
        tensors.append(s)
        out["batch_index"].extend(latent.get("batch_index", list(range(latent["samples"].shape[0]))))
    out["samples"] = torch.cat(tensors, dim=0)
    return out


def comfy_resolution(aspect_ratio, megapixels, multiple, minimum):
    """nodes_resolution.py: ResolutionSelector.execute."""
    ratios = {"1:1 (Square)": (1, 1), "3:2 (Photo)": (3, 2), "4:3 (Standard)": (4, 3), "16:9 (Widescreen)": (16, 9),
              "21:9 (Ultrawide)": (21, 9), "2:3 (Portrait Photo)": (2, 3), "3:4 (Portrait Standard)": (3, 4),
              "9:16 (Portrait Widescreen)": (9, 16)}
    w_ratio, h_ratio = ratios[aspect_ratio]
    total_pixels = megapixels * 1024 * 1024
    scale = math.sqrt(total_pixels / (w_ratio * h_ratio))
    width = round(w_ratio * scale / multiple) * multiple
    height = round(h_ratio * scale / multiple) * multiple
    if width < minimum or height < minimum:
        step_w = multiple // math.gcd(w_ratio, multiple)
        step_h = multiple // math.gcd(h_ratio, multiple)
        k_step = step_w * step_h // math.gcd(step_w, step_h)
        min_k = math.ceil(max(minimum / w_ratio, minimum / h_ratio))
        k = math.ceil(min_k / k_step) * k_step
        width = w_ratio * k
        height = h_ratio * k
    return width, height


def randn(*shape, seed):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


# -- the nodes against the rules ----------------------------------------------------------------------------
def test_batch_nodes_follow_comfyui():
    a, b, c = randn(1, 12, 16, 3, seed=1), randn(2, 10, 10, 4, seed=2), randn(1, 12, 16, 3, seed=3)
    got = run("BatchImagesNode", image0=a, image1=b, image2=c)["image"]
    torch.testing.assert_close(got, comfy_batch_images([a, b, c]))
    assert got.shape == (4, 12, 16, 4)
    m1, m2 = randn(1, 8, 8, seed=4), randn(3, 6, 10, seed=5)
    torch.testing.assert_close(run("BatchMasksNode", mask0=m1, mask1=m2)["mask"], comfy_batch_masks([m1, m2]))
    l1 = {"samples": randn(2, 4, 8, 8, seed=6), "noise_mask": torch.ones(2, 1, 8, 8)}
    l2 = {"samples": randn(1, 4, 6, 10, seed=7), "batch_index": [5]}
    got, want = run("BatchLatentsNode", latent0=l1, latent1=l2)["latent"], comfy_batch_latents([l1, l2])
    torch.testing.assert_close(got["samples"], want["samples"])
    assert got["batch_index"] == want["batch_index"] == [0, 1, 5] and got["noise_mask"] is l1["noise_mask"]
    with pytest.raises(ValueError, match="BatchImagesNode: input 'image1' must be an IMAGE"):
        run("BatchImagesNode", image0=a, image1="b.png")


RESIZES = [
    {"resize_type": "scale by multiplier", "multiplier": 1.7},
    {"resize_type": "scale by multiplier", "multiplier": 0.4},
    {"resize_type": "scale dimensions", "width": 20, "height": 9, "crop": "center"},
    {"resize_type": "scale dimensions", "width": 20, "height": 9, "crop": "disabled"},
    {"resize_type": "scale dimensions", "width": 0, "height": 9, "crop": "center"},
    {"resize_type": "scale dimensions", "width": 0, "height": 0, "crop": "center"},
    {"resize_type": "scale longer dimension", "longer_size": 30},
    {"resize_type": "scale shorter dimension", "shorter_size": 7},
    {"resize_type": "scale width", "width": 25},
    {"resize_type": "scale height", "height": 25},
    {"resize_type": "scale total pixels", "megapixels": 0.0005},
    {"resize_type": "scale to multiple", "multiple": 8},
    {"resize_type": "scale to multiple", "multiple": 5},
]


@pytest.mark.parametrize("method", ["area", "bilinear", "bicubic", "nearest-exact", "lanczos"])
def test_resize_image_mask_follows_comfyui(method):
    image, mask = randn(2, 13, 18, 3, seed=8), randn(1, 13, 18, seed=9)
    inputs = [image] if method == "lanczos" else [image, mask]  # ComfyUI's lanczos fails on masks
    for rt in RESIZES:
        for x in inputs:
            got = run("ResizeImageMaskNode", input=x, scale_method=method, **rt)["resized"]
            torch.testing.assert_close(got, comfy_resize(x, rt, method), msg=lambda m, rt=rt: f"{rt}: {m}")
    ref = randn(1, 7, 11, 3, seed=10)
    for crop in ("center", "disabled"):
        rt = {"resize_type": "match size", "match": ref, "crop": crop}
        got = run("ResizeImageMaskNode", input=image, scale_method=method, **rt)["resized"]
        torch.testing.assert_close(got, comfy_resize(image, rt, method))
    assert run("ResizeImageMaskNode", input=mask, scale_method="lanczos", resize_type="scale by multiplier",
               multiplier=2.0)["resized"].shape == (1, 26, 36)


def test_resize_image_mask_equals_image_scale_by_it_replaces():
    """ComfyUI swaps ImageScaleBy for 'scale by multiplier'; the same rule, the same pixels (nearest)."""
    image = randn(1, 13, 18, 3, seed=11)
    got = run("ResizeImageMaskNode", input=image, resize_type="scale by multiplier", multiplier=1.5,
              scale_method="nearest-exact")["resized"]
    torch.testing.assert_close(got, run("ImageScaleBy", image=image, method="nearest-exact", scale_by=1.5)["image"])


def test_resize_image_mask_bad_input():
    with pytest.raises(ValueError, match="ResizeImageMaskNode: input 'input' must be an IMAGE or a MASK"):
        run("ResizeImageMaskNode", input="photo.png", resize_type="scale by multiplier", multiplier=2.0)
    with pytest.raises(ValueError, match="ResizeImageMaskNode: input 'match' must be connected"):
        run("ResizeImageMaskNode", input=randn(1, 4, 4, 3, seed=1), resize_type="match size")


def test_resolution_selector_follows_comfyui():
    from nodes.resolution_selector import ASPECT_RATIOS

    for ratio in ASPECT_RATIOS:
        for mp, multiple, minimum in ((1.0, 8, 256), (0.1, 8, 256), (2.3, 64, 32), (0.05, 12, 512)):
            got = run("ResolutionSelector", aspect_ratio=ratio, megapixels=mp, multiple=multiple, minimum=minimum)
            assert (got["width"], got["height"]) == comfy_resolution(ratio, mp, multiple, minimum)
    assert comfy_resolution("1:1 (Square)", 1.0, 8, 256) == (1024, 1024)


def test_switch():
    a, b = torch.zeros(1), torch.ones(1)
    assert run("ComfySwitchNode", switch=True, on_false=a, on_true=b)["output"] is b
    assert run("ComfySwitchNode", switch=False, on_false=a, on_true=b)["output"] is a
    assert run("ComfySwitchNode", switch=True, on_false=a)["output"] is a  # an open branch passes the other on
    with pytest.raises(ValueError, match="ComfySwitchNode: connect input 'on_true' or 'on_false'"):
        run("ComfySwitchNode", switch=True)


# -- ComfyUI files with them ---------------------------------------------------------------------------------
def test_api_workflow_with_autogrow_and_dynamic_inputs_runs(tmp_path):
    from PIL import Image

    from nodegen.formats import comfy, open_any

    (tmp_path / "in").mkdir()
    for i, size in enumerate(((24, 16), (10, 10))):
        Image.fromarray((randn(size[1], size[0], 3, seed=i).numpy() * 255).astype(np.uint8)).save(tmp_path / "in" / f"{i}.png")
    api = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "0.png"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "1.png"}},
        "3": {"class_type": "BatchImagesNode", "inputs": {"images.image0": ["1", 0], "images.image1": ["2", 0]}},
        "4": {"class_type": "ResizeImageMaskNode", "inputs": {"input": ["3", 0], "resize_type": "scale dimensions",
                                                              "resize_type.width": 12, "resize_type.height": 12,
                                                              "resize_type.crop": "center", "scale_method": "area"}},
        "5": {"class_type": "ResolutionSelector", "inputs": {"aspect_ratio": "3:2 (Photo)", "megapixels": 0.1}},
        "6": {"class_type": "ComfySwitchNode", "inputs": {"switch": True, "on_false": ["3", 0], "on_true": ["4", 0]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "batch"}},
    }
    doc = open_any(json.loads(json.dumps(api))).data["nodes"]
    assert doc["3"]["inputs"] == {"image0": {"from": ["1", "image"]}, "image1": {"from": ["2", "image"]}}
    assert doc["4"]["inputs"]["width"] == 12 and doc["4"]["inputs"]["crop"] == "center"
    exported = comfy.export_api(comfy.import_comfy(json.loads(json.dumps(api)))[0])
    assert exported["3"] == api["3"] and exported["4"]["inputs"]["resize_type.width"] == 12
    result = run_api(api, models_folder(tmp_path, []), tmp_path)
    assert [im.size for im in result.images] == [(12, 12), (12, 12)]


def test_ui_workflow_dynamic_combo_widgets_import():
    """The editor saves the chosen resize type's settings right after it: their number varies."""
    from nodegen.formats import open_any

    def ui(values):
        return {"last_node_id": 2, "last_link_id": 1, "links": [[1, 1, 0, 2, 0, "IMAGE"]], "nodes": [
            {"id": 1, "type": "LoadImage", "inputs": [], "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [1]}],
             "widgets_values": ["a.png", "image"]},
            {"id": 2, "type": "ResizeImageMaskNode", "inputs": [{"name": "input", "type": "IMAGE", "link": 1}],
             "outputs": [{"name": "resized", "type": "IMAGE", "links": []}], "widgets_values": values}]}

    by = open_any(ui(["scale by multiplier", 2.5, "lanczos"])).data["nodes"]["2"]["inputs"]
    assert by["resize_type"] == "scale by multiplier" and by["multiplier"] == 2.5 and by["scale_method"] == "lanczos"
    dims = open_any(ui(["scale dimensions", 640, 480, "disabled", "bicubic"])).data["nodes"]["2"]["inputs"]
    assert (dims["width"], dims["height"], dims["crop"], dims["scale_method"]) == (640, 480, "disabled", "bicubic")
    match = open_any(ui(["match size", "center", "area"])).data["nodes"]["2"]["inputs"]
    assert match["crop"] == "center" and match["scale_method"] == "area" and "width" not in match


def test_image_from_batch_counts_negative_indices_from_the_end():
    """Newer ComfyUI: ``batch_index`` may be negative (``+= batch size``)."""
    batch = randn(5, 2, 2, 3, seed=12)
    assert torch.equal(run("ImageFromBatch", image=batch, batch_index=-1, length=1)["image"], batch[4:])
    assert torch.equal(run("ImageFromBatch", image=batch, batch_index=-3, length=2)["image"], batch[2:4])
    with pytest.raises(ValueError, match="input 'batch_index' is -6"):
        run("ImageFromBatch", image=batch, batch_index=-6, length=1)


# -- ImageCropV2 and PrimitiveBoundingBox ----------------------------------------------------------------------
def comfy_image_crop_v2(image, crop_region):
    """nodes_images.py: ImageCropV2.execute."""
    x = crop_region.get("x", 0)
    y = crop_region.get("y", 0)
    width = crop_region.get("width", 512)
    height = crop_region.get("height", 512)
    x = min(x, image.shape[2] - 1)
    y = min(y, image.shape[1] - 1)
    return image[:, y:height + y, x:width + x, :]


def test_image_crop_v2_follows_comfyui(tmp_path):
    from nodegen.formats import comfy, open_any

    image = randn(2, 10, 14, 3, seed=13)
    for box in ({"x": 2, "y": 3, "width": 5, "height": 4}, {"x": 20, "y": 30, "width": 5, "height": 4},
                {"x": 9, "y": 1, "width": 512, "height": 512}):
        torch.testing.assert_close(run("ImageCropV2", image=image, **box)["image"], comfy_image_crop_v2(image, box))
        linked = run("ImageCropV2", image=image, crop_region=run("PrimitiveBoundingBox", **box)["bounding_box"])
        torch.testing.assert_close(linked["image"], comfy_image_crop_v2(image, box))
    with pytest.raises(ValueError, match="ImageCropV2: input 'crop_region' must be a BOUNDING_BOX"):
        run("ImageCropV2", image=image, crop_region=[1, 2])

    box = {"x": 4, "y": 2, "width": 8, "height": 6}
    api = {"1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
           "2": {"class_type": "ImageCropV2", "inputs": {"image": ["1", 0], "crop_region": box}},
           "3": {"class_type": "PrimitiveBoundingBox", "inputs": {"x": 1, "y": 1, "width": 3, "height": 3}},
           "4": {"class_type": "ImageCropV2", "inputs": {"image": ["1", 0], "crop_region": ["3", 0]}},
           "5": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "a"}},
           "6": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "b"}}}
    nodes = open_any(json.loads(json.dumps(api))).data["nodes"]
    assert {k: nodes["2"]["inputs"][k] for k in box} == box
    assert nodes["4"]["inputs"]["crop_region"] == {"from": ["3", "bounding_box"]}
    assert comfy.export_api(comfy.import_comfy(json.loads(json.dumps(api)))[0]) == api
    from PIL import Image

    (tmp_path / "in").mkdir()
    Image.fromarray((randn(16, 16, 3, seed=14).numpy() * 255).astype(np.uint8)).save(tmp_path / "in" / "a.png")
    result = run_api(api, models_folder(tmp_path, []), tmp_path)
    assert sorted(im.size for im in result.images) == [(3, 3), (8, 6)]
    ui = {"last_node_id": 2, "last_link_id": 1, "links": [[1, 1, 0, 2, 0, "IMAGE"]], "nodes": [
        {"id": 1, "type": "LoadImage", "inputs": [], "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [1]}],
         "widgets_values": ["a.png", "image"]},
        {"id": 2, "type": "ImageCropV2", "inputs": [{"name": "image", "type": "IMAGE", "link": 1}],
         "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": []}], "widgets_values": [box]}]}
    assert {k: open_any(ui).data["nodes"]["2"]["inputs"][k] for k in box} == box


def test_old_names_comfyui_renames_on_load_import():
    from nodegen.formats import open_any

    api = {"1": {"class_type": "T2IAdapterLoader", "inputs": {"t2i_adapter_name": "t2iadapter_depth.safetensors"}},
           "2": {"class_type": "ConditioningAverage ", "inputs": {"conditioning_to_strength": 0.3,
                                                                  "conditioning_to": ["3", 0],
                                                                  "conditioning_from": ["3", 0]}},
           "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "a", "clip": ["4", 1]}},
           "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "x.safetensors"}}}
    nodes = open_any(api).data["nodes"]
    assert nodes["1"] == {"type": "ControlNetLoader", "type_version": 1,
                          "inputs": {"control_net_name": "t2iadapter_depth.safetensors"}}
    assert nodes["2"]["type"] == "ConditioningAverage" and nodes["2"]["inputs"]["conditioning_to_strength"] == 0.3


# -- ComfyMathExpression ------------------------------------------------------------------------------------------
def test_math_expression_follows_comfyui():
    """ComfyUI evaluates with simpleeval over the names and its function table; Python's own
    evaluation of the same formulas (with only those names and functions) is the reference."""
    from nodes.math_expression import FUNCTIONS

    values = {"a": 3, "b": 2.5, "c": -4}
    for expression in ("a + b", "a * b - c / 2", "a ** 2 + b // 1", "a % 2", "max(values) - min(a, c)",
                       "sum(values)", "sum(a, b, c)", "round(b) + abs(c)", "sqrt(a) * pi_free if 0 else floor(b)",
                       "a if a > b else b", "(a > 1) + (b <= 2.5)", "values[2] * 2", "int(b) + float(a)",
                       "pow(2, a) + ceil(b) + log2(8) + log10(100) + log(1) + sin(0) + cos(0) + tan(0)",
                       "not c or a", "(1 < a < 4) * 3"):
        got = run("ComfyMathExpression", expression=expression, **values)
        want = eval(expression, {"__builtins__": {}}, {**FUNCTIONS, **values, "values": list(values.values())})  # noqa: S307
        assert got["float"] == float(want) and got["int"] == int(want), expression
    assert run("ComfyMathExpression", expression="a * 2", a=7) == {"float": 14.0, "int": 14}
    for bad, said in (("a + z", "'z' is not defined"), ("__import__('os')", "unknown function"),
                      ("a.real", "not allowed"), ("a / 0", "division by zero"), ("a > 1", "must give a number"),
                      ("10.0 ** 400", "gave inf|too large|Result too large"), ("", "is empty"), ("a +", "not a formula")):
        with pytest.raises(ValueError, match=f"ComfyMathExpression: input 'expression'.*({said})"):
            run("ComfyMathExpression", expression=bad, a=1)


def test_math_expression_refuses_formulas_that_would_exhaust_the_machine():
    """A served workflow is untrusted: formulas that would take minutes or fill the memory are
    refused before they are computed (each returned at once here)."""
    import time

    for bad in ("3999999 ** 3999999", "pow(3999, 3999)", "(2 ** 4000) ** 4000", "[1] * 10 ** 9",
                "values * 1000000", "sum([0] * 10 ** 8)"):
        t = time.perf_counter()
        with pytest.raises(ValueError, match="too large|lists go into functions"):
            run("ComfyMathExpression", expression=bad, a=1)
        assert time.perf_counter() - t < 1.0, bad
    assert run("ComfyMathExpression", expression="2 ** 1000 / 2 ** 999")["float"] == 2.0  # big but fine


def test_math_expression_api_import():
    from nodegen.formats import open_any

    api = {"1": {"class_type": "PrimitiveInt", "inputs": {"value": 1024}},
           "2": {"class_type": "ComfyMathExpression", "inputs": {"expression": "a / 2", "values.a": ["1", 0]}}}
    node = open_any(api).data["nodes"]["2"]
    assert node["inputs"] == {"expression": "a / 2", "a": {"from": ["1", "value"]}}


def test_ui_workflow_autogrow_inputs_import():
    """The editor names autogrow sockets as the API does (``images.image0`` ...); the open last one
    has no link."""
    from nodegen.formats import open_any

    load = {"type": "LoadImage", "inputs": [], "widgets_values": ["a.png", "image"]}
    ui = {"last_node_id": 3, "last_link_id": 2, "links": [[1, 1, 0, 3, 0, "IMAGE"], [2, 2, 0, 3, 1, "IMAGE"]],
          "nodes": [{**load, "id": 1, "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [1]}]},
                    {**load, "id": 2, "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [2]}]},
                    {"id": 3, "type": "BatchImagesNode",
                     "inputs": [{"name": "images.image0", "type": "IMAGE", "link": 1},
                                {"name": "images.image1", "type": "IMAGE", "link": 2},
                                {"name": "images.image2", "type": "IMAGE", "link": None}],
                     "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": []}], "widgets_values": []}]}
    node = open_any(ui).data["nodes"]["3"]
    assert node["inputs"] == {"image0": {"from": ["1", "image"]}, "image1": {"from": ["2", "image"]}}
    one = randn(1, 4, 4, 3, seed=1)
    assert torch.equal(run("BatchImagesNode", image0=one)["image"], one)  # a single image passes through
