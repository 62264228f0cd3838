"""Small core ComfyUI nodes: each against ComfyUI's own rule, transcribed here (nodes.py,
nodes_mask.py, nodes_images.py, nodes_custom_sampler.py with k-diffusion's get_sigmas_*), and a
ComfyUI API document that uses them all imports with every widget in its place."""

from __future__ import annotations

import math

import pytest
import torch

from nodegen.diffusion.conditioning import CondItem
from nodegen.formats.comfy import import_comfy
from tests.support.nodes import run


def one(type_name: str, **inputs):
    (value,) = run(type_name, **inputs).values()
    return value


def test_polyexponential_and_vp_schedules_are_k_diffusions():
    n, smin, smax = 7, 0.0291675, 14.614642
    for rho in (1.0, 0.5, 2.0):
        ramp = torch.linspace(1, 0, n) ** rho
        want = torch.exp(ramp * (math.log(smax) - math.log(smin)) + math.log(smin))
        got = one("PolyexponentialScheduler", steps=n, sigma_max=smax, sigma_min=smin, rho=rho)
        torch.testing.assert_close(got[:-1], want, rtol=1e-6, atol=0)
        assert got[-1] == 0 and len(got) == n + 1
    assert torch.allclose(one("PolyexponentialScheduler", steps=n, sigma_max=smax, sigma_min=smin, rho=1.0),
                          one("ExponentialScheduler", steps=n, sigma_max=smax, sigma_min=smin), rtol=1e-6)
    t = torch.linspace(1, 1e-3, n, dtype=torch.float64)
    want = torch.sqrt(torch.exp(19.9 * t**2 / 2 + 0.1 * t) - 1).float()
    got = one("VPScheduler", steps=n, beta_d=19.9, beta_min=0.1, eps_s=1e-3)
    torch.testing.assert_close(got[:-1], want, rtol=1e-6, atol=0)  # in float64 (exp - 1 near 0)
    t32 = torch.linspace(1, 1e-3, n)  # k-diffusion's float32: the same within its rounding
    torch.testing.assert_close(got[:-1], torch.sqrt(torch.exp(19.9 * t32**2 / 2 + 0.1 * t32) - 1), rtol=1e-3, atol=1e-5)
    assert got[-1] == 0 and bool((got[:-2] > got[1:-1]).all())
    with pytest.raises(ValueError, match="sigma_max"):
        one("PolyexponentialScheduler", steps=4, sigma_max=0.01, sigma_min=0.02, rho=1.0)


def test_masks():
    solid = one("SolidMask", value=0.25, width=5, height=3)
    assert solid.shape == (1, 3, 5) and bool((solid == 0.25).all())
    m = torch.rand(2, 10, 12, generator=torch.Generator().manual_seed(0))
    assert torch.equal(one("CropMask", mask=m, x=3, y=2, width=4, height=5), m[:, 2:7, 3:7])
    assert torch.equal(one("CropMask", mask=m[0], x=10, y=8, width=50, height=50), m[:1, 8:, 10:])
    with pytest.raises(ValueError, match="outside"):
        one("CropMask", mask=m, x=12, y=0, width=4, height=4)
    assert torch.equal(one("ThresholdMask", mask=m, value=0.5), (m > 0.5).float())


def test_empty_image_and_image_from_batch():
    img = one("EmptyImage", width=4, height=3, batch_size=2, color=0xFF8000)
    assert img.shape == (2, 3, 4, 3)
    # ComfyUI: each channel ((color >> shift) & 0xFF) / 0xFF
    assert img[0, 0, 0].tolist() == pytest.approx([1.0, 128 / 255, 0.0])
    batch = torch.rand(5, 2, 2, 3)
    assert torch.equal(one("ImageFromBatch", image=batch, batch_index=1, length=2), batch[1:3])
    assert torch.equal(one("ImageFromBatch", image=batch, batch_index=4, length=3), batch[4:])
    with pytest.raises(ValueError, match="batch_index"):
        one("ImageFromBatch", image=batch, batch_index=5, length=1)


def test_latent_crop_follows_comfyui_rounding_and_minimum():
    s = torch.randn(1, 4, 16, 24)
    lat = {"samples": s, "noise_mask": torch.ones(1, 1, 128, 192)}

    def comfy(width, height, x, y):  # nodes.py LatentCrop.crop
        x, y = x // 8, y // 8
        if x > s.shape[3] - 8:
            x = s.shape[3] - 8
        if y > s.shape[2] - 8:
            y = s.shape[2] - 8
        return s[:, :, y : height // 8 + y, x : width // 8 + x]
    for args in ((64, 64, 0, 0), (96, 64, 40, 24), (512, 512, 1000, 1000), (64, 72, 8, 100)):
        out = one("LatentCrop", samples=lat, width=args[0], height=args[1], x=args[2], y=args[3])
        assert torch.equal(out["samples"], comfy(*args)), args
        assert out["noise_mask"] is lat["noise_mask"]  # kept whole, as ComfyUI


def test_conditioning_set_area_strength():
    cond = [CondItem(torch.zeros(1, 77, 8), extras={"area": (64, 64, 0, 0)})]
    (out,) = one("ConditioningSetAreaStrength", conditioning=cond, strength=0.4)
    assert out.extras == {"area": (64, 64, 0, 0), "strength": 0.4} and cond[0].extras == {"area": (64, 64, 0, 0)}


def test_a_comfyui_document_with_them_imports_with_every_widget_in_place():
    api = {
        "1": {"class_type": "PolyexponentialScheduler", "inputs": {"steps": 9, "sigma_max": 10.0, "sigma_min": 0.1, "rho": 0.7}},
        "2": {"class_type": "VPScheduler", "inputs": {"steps": 8, "beta_d": 18.0, "beta_min": 0.2, "eps_s": 0.002}},
        "3": {"class_type": "SolidMask", "inputs": {"value": 0.3, "width": 64, "height": 32}},
        "4": {"class_type": "CropMask", "inputs": {"mask": ["3", 0], "x": 8, "y": 4, "width": 16, "height": 8}},
        "5": {"class_type": "ThresholdMask", "inputs": {"mask": ["4", 0], "value": 0.2}},
        "6": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 16, "batch_size": 3, "color": 255}},
        "7": {"class_type": "ImageFromBatch", "inputs": {"image": ["6", 0], "batch_index": 1, "length": 2}},
        "8": {"class_type": "LatentCrop", "inputs": {"samples": ["9", 0], "width": 64, "height": 64, "x": 8, "y": 16}},
        "9": {"class_type": "EmptyLatentImage", "inputs": {"width": 128, "height": 128, "batch_size": 1}},
        "10": {"class_type": "PreviewImage", "inputs": {"images": ["7", 0]}},
    }
    doc, warnings = import_comfy(api)
    nodes = doc["nodes"]
    assert {n["type"] for n in nodes.values()} >= {"PolyexponentialScheduler", "VPScheduler", "SolidMask", "CropMask",
                                                   "ThresholdMask", "EmptyImage", "ImageFromBatch", "LatentCrop"}
    by_type = {n["type"]: n["inputs"] for n in nodes.values()}
    assert by_type["PolyexponentialScheduler"] == {"steps": 9, "sigma_max": 10.0, "sigma_min": 0.1, "rho": 0.7}
    assert by_type["VPScheduler"] == {"steps": 8, "beta_d": 18.0, "beta_min": 0.2, "eps_s": 0.002}
    assert {k: v for k, v in by_type["CropMask"].items() if k != "mask"} == {"x": 8, "y": 4, "width": 16, "height": 8}
    assert by_type["EmptyImage"] == {"width": 32, "height": 16, "batch_size": 3, "color": 255}
    assert {k: v for k, v in by_type["LatentCrop"].items() if k != "samples"} == {"width": 64, "height": 64, "x": 8, "y": 16}
    assert not [w for w in warnings if "unknown" in w.lower() or "missing" in w.lower()], warnings


def test_conditioning_set_area_percentage_rounds_to_latent_pixels_as_comfyui():
    from nodegen.diffusion.cfg import area_of

    cond = [CondItem(torch.zeros(1, 77, 8), extras={"area": (64, 64, 0, 0)})]
    (item,) = one("ConditioningSetAreaPercentage", conditioning=cond, width=0.25, height=0.5, x=0.6, y=0.3,
                  strength=0.8)
    assert "area" not in item.extras and item.extras["strength"] == 0.8
    h, w = 10, 16

    def comfy(fh, fw, fy, fx):  # samplers.py get_area_and_mult, "percentage" areas
        return (max(1, round(fh * h)), max(1, round(fw * w)), round(fy * h), round(fx * w))
    assert area_of(item, h, w) == comfy(0.5, 0.25, 0.3, 0.6) == (5, 4, 3, 10)
    (half,) = one("ConditioningSetAreaPercentage", conditioning=cond, width=0.5, height=0.5, x=0.25, y=0.25,
                  strength=1.0)
    (pixels,) = one("ConditioningSetArea", conditioning=cond, width=64, height=64, x=32, y=32, strength=1.0)
    assert area_of(half, 16, 16) == area_of(pixels, 16, 16) == (8, 8, 4, 4)  # 128 px image: the same area
    assert "area_fraction" not in pixels.extras


def test_split_and_join_image_with_alpha_are_comfyuis():
    """comfy_extras/nodes_compositing.py: the mask is 1 - alpha; joining resizes it (bilinear)."""
    g = torch.Generator().manual_seed(2)
    rgba = torch.rand(2, 6, 8, 4, generator=g)
    split = run("SplitImageWithAlpha", image=rgba)
    assert torch.equal(split["image"], rgba[..., :3]) and torch.equal(split["mask"], 1.0 - rgba[..., 3])
    rgb_only = run("SplitImageWithAlpha", image=rgba[..., :3])
    assert torch.equal(rgb_only["mask"], torch.zeros(2, 6, 8))  # opaque
    joined = one("JoinImageWithAlpha", image=split["image"], alpha=split["mask"])
    torch.testing.assert_close(joined, rgba, rtol=0, atol=1e-6)  # a round trip
    small = torch.rand(1, 3, 4, generator=g)
    joined = one("JoinImageWithAlpha", image=rgba[..., :3], alpha=small)
    want = 1.0 - torch.nn.functional.interpolate(small.reshape(-1, 1, 3, 4), size=(6, 8), mode="bilinear").squeeze(1)
    assert joined.shape == (1, 6, 8, 4) and torch.equal(joined[..., 3], want)


def test_latent_interpolate_is_comfyuis_for_one_item_and_per_item_for_a_batch():
    g = torch.Generator().manual_seed(3)
    s1, s2 = torch.randn(1, 4, 6, 5, generator=g), torch.randn(1, 4, 6, 5, generator=g)

    def comfy(s1, s2, ratio):  # nodes.py LatentInterpolate.op (one item: its broadcasting holds)
        m1, m2 = torch.linalg.vector_norm(s1, dim=(1)), torch.linalg.vector_norm(s2, dim=(1))
        t = torch.nan_to_num(s1 / m1) * ratio + torch.nan_to_num(s2 / m2) * (1.0 - ratio)
        st = torch.nan_to_num(t / torch.linalg.vector_norm(t, dim=(1)))
        return st * (m1 * ratio + m2 * (1.0 - ratio))
    for ratio in (0.0, 0.3, 1.0):
        out = one("LatentInterpolate", samples1={"samples": s1}, samples2={"samples": s2}, ratio=ratio)
        torch.testing.assert_close(out["samples"], comfy(s1, s2, ratio), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(one("LatentInterpolate", samples1={"samples": s1}, samples2={"samples": s2},
                                   ratio=1.0)["samples"], s1, rtol=1e-5, atol=1e-6)
    batch1, batch2 = torch.cat([s1, s2]), torch.cat([s2, s1])
    out = one("LatentInterpolate", samples1={"samples": batch1}, samples2={"samples": batch2}, ratio=0.3)["samples"]
    torch.testing.assert_close(out[1:], comfy(s2, s1, 0.3), rtol=1e-6, atol=1e-6)  # each item on its own


def test_comfyui_pag_slg_and_instruct_pix2pix_nodes_import_from_the_editor_format():
    ui = {"last_node_id": 3, "last_link_id": 2, "version": 0.4, "nodes": [
        {"id": 1, "type": "CheckpointLoaderSimple", "widgets_values": ["ip2p.safetensors"],
         "outputs": [{"name": "MODEL", "type": "MODEL", "links": [1]}, {"name": "CLIP", "type": "CLIP", "links": []},
                     {"name": "VAE", "type": "VAE", "links": []}]},
        {"id": 2, "type": "PerturbedAttentionGuidance", "widgets_values": [2.25],
         "inputs": [{"name": "model", "type": "MODEL", "link": 1}],
         "outputs": [{"name": "MODEL", "type": "MODEL", "links": []}]},
        {"id": 3, "type": "InstructPixToPixConditioning", "widgets_values": [],
         "inputs": [{"name": "positive", "type": "CONDITIONING", "link": None},
                    {"name": "negative", "type": "CONDITIONING", "link": None},
                    {"name": "vae", "type": "VAE", "link": None}, {"name": "pixels", "type": "IMAGE", "link": None}],
         "outputs": [{"name": "positive", "type": "CONDITIONING", "links": []},
                     {"name": "negative", "type": "CONDITIONING", "links": []},
                     {"name": "latent", "type": "LATENT", "links": []}]}],
        "links": [[1, 1, 0, 2, 0, "MODEL"]]}
    ui["nodes"].append({"id": 5, "type": "HypernetworkLoader", "widgets_values": ["anime.pt", 0.8],
                        "inputs": [{"name": "model", "type": "MODEL", "link": None}],
                        "outputs": [{"name": "MODEL", "type": "MODEL", "links": []}]})
    ui["nodes"].append({"id": 4, "type": "SkipLayerGuidanceSD3", "widgets_values": ["7, 8, 9", 3.0, 0.01, 0.15],
                        "inputs": [{"name": "model", "type": "MODEL", "link": None}],
                        "outputs": [{"name": "MODEL", "type": "MODEL", "links": []}]})
    ui["nodes"].append({"id": 6, "type": "PatchModelAddDownscale",
                        "widgets_values": [3, 2.0, 0.0, 0.35, True, "bicubic", "bislerp"],
                        "inputs": [{"name": "model", "type": "MODEL", "link": None}],
                        "outputs": [{"name": "MODEL", "type": "MODEL", "links": []}]})
    doc, warnings = import_comfy(ui)
    by_type = {n["type"]: n for n in doc["nodes"].values()}
    assert by_type["PatchModelAddDownscale"]["inputs"] == {
        "block_number": 3, "downscale_factor": 2.0, "start_percent": 0.0, "end_percent": 0.35,
        "downscale_after_skip": True, "downscale_method": "bicubic", "upscale_method": "bislerp"}
    assert by_type["PerturbedAttentionGuidance"]["inputs"] == {"scale": 2.25, "model": {"from": ["1", "model"]}}
    assert by_type["HypernetworkLoader"]["inputs"] == {"hypernetwork_name": "anime.pt", "strength": 0.8}
    assert by_type["SkipLayerGuidanceSD3"]["inputs"] == {"layers": "7, 8, 9", "scale": 3.0, "start_percent": 0.01,
                                                         "end_percent": 0.15}
    assert "InstructPixToPixConditioning" in by_type and not by_type["InstructPixToPixConditioning"].get("missing")
    assert not [w for w in warnings if "unknown" in w.lower()], warnings


def test_get_image_size():
    assert run("GetImageSize", image=torch.rand(2, 10, 16, 3)) == {"width": 16, "height": 10, "batch_size": 2}


def _stitch(image1, image2=None, direction="right", match_image_size=True, spacing_width=0, spacing_color="white"):
    return one("ImageStitch", image1=image1, image2=image2, direction=direction, match_image_size=match_image_size,
               spacing_width=spacing_width, spacing_color=spacing_color)


def test_image_stitch_scales_the_second_image_to_the_first():
    from nodes.image_ops import resize

    a, b = torch.rand(1, 8, 8, 3), torch.rand(1, 4, 8, 3)
    assert _stitch(a) is a  # nothing to join
    out = _stitch(a, b, "right")
    assert out.shape == (1, 8, 24, 3) and torch.equal(out[:, :, :8], a)
    assert torch.equal(out[:, :, 8:], resize(b, 16, 8, "lanczos"))
    left = _stitch(a, b, "left")
    assert torch.equal(left[:, :, 16:], a) and torch.equal(left[:, :, :16], out[:, :, 8:])
    down = _stitch(a, b, "down")  # to image1's width: 8 x 4
    assert down.shape == (1, 12, 8, 3) and torch.equal(down[:, :8], a)


def test_image_stitch_without_matching_pads_batches_channels_and_spaces():
    a, b = torch.rand(1, 4, 6, 3), torch.rand(2, 2, 4, 3)
    out = _stitch(a, b, "down", match_image_size=False, spacing_width=3)  # spacing 3 -> 4 (even)
    assert out.shape == (2, 4 + 4 + 2, 6, 3)
    assert torch.equal(out[1, :4], a[0])  # image1's batch grown by repeating its last image
    assert torch.equal(out[:, 4:8], torch.ones(2, 4, 6, 3))  # white spacing
    assert torch.equal(out[:, 8:, 1:5], b) and not out[:, 8:, [0, 5]].any()  # centred, black padding
    rgba = torch.rand(1, 4, 4, 4)
    up = _stitch(rgba, torch.rand(1, 4, 4, 3), "up", match_image_size=False, spacing_width=2, spacing_color="red")
    assert up.shape == (1, 10, 4, 4) and torch.equal(up[:, :4, :, 3], torch.ones(1, 4, 4))  # opaque RGB image
    assert torch.equal(up[0, 4:6, 0], torch.tensor([[1.0, 0, 0, 1]] * 2)) and torch.equal(up[:, 6:], rgba)


def test_image_quantize_keeps_at_most_the_palette():
    g = torch.Generator().manual_seed(0)
    image = torch.rand(2, 16, 16, 3, generator=g)
    for dither in ("none", "floyd-steinberg", "bayer-2", "bayer-4", "bayer-8", "bayer-16"):
        out = one("ImageQuantize", image=image, colors=4, dither=dither)
        assert out.shape == image.shape
        for item in out:
            assert len(torch.unique(item.reshape(-1, 3), dim=0)) <= 4, dither
    plain, diffused = (one("ImageQuantize", image=image, colors=4, dither=d) for d in ("none", "floyd-steinberg"))
    assert not torch.equal(plain, diffused)
    few = torch.tensor([0.0, 1.0, 0.0, 1.0])[torch.randint(0, 4, (1, 8, 8), generator=g)][..., None].repeat(1, 1, 1, 3)
    assert torch.equal(one("ImageQuantize", image=few, colors=4, dither="none"), few)  # already within the palette
    rgba = torch.cat([image[:1], torch.rand(1, 16, 16, 1, generator=g)], dim=-1)
    assert torch.equal(one("ImageQuantize", image=rgba, colors=8, dither="none")[..., 3], rgba[..., 3])


def test_comfyui_image_stitch_quantize_and_size_import_from_the_editor_format():
    ui = {"last_node_id": 4, "last_link_id": 3, "version": 0.4, "nodes": [
        {"id": 1, "type": "LoadImage", "widgets_values": ["a.png", "image"],
         "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [1, 2, 3]}, {"name": "MASK", "type": "MASK", "links": []}]},
        {"id": 2, "type": "ImageStitch", "widgets_values": ["down", False, 8, "red"],
         "inputs": [{"name": "image1", "type": "IMAGE", "link": 1}, {"name": "image2", "type": "IMAGE", "link": None}],
         "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": []}]},
        {"id": 3, "type": "ImageQuantize", "widgets_values": [16, "bayer-4"],
         "inputs": [{"name": "image", "type": "IMAGE", "link": 2}], "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": []}]},
        {"id": 4, "type": "GetImageSize", "widgets_values": [],
         "inputs": [{"name": "image", "type": "IMAGE", "link": 3}],
         "outputs": [{"name": "width", "type": "INT", "links": []}, {"name": "height", "type": "INT", "links": []},
                     {"name": "batch_size", "type": "INT", "links": []}]}],
        "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 1, 0, 3, 0, "IMAGE"], [3, 1, 0, 4, 0, "IMAGE"]]}
    ui["nodes"].append({"id": 5, "type": "ImageAddNoise", "widgets_values": [77, "randomize", 0.3],
                        "inputs": [{"name": "image", "type": "IMAGE", "link": None}],
                        "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": []}]})
    ui["nodes"].append({"id": 6, "type": "ResizeAndPadImage", "widgets_values": [640, 480, "black", "lanczos"],
                        "inputs": [{"name": "image", "type": "IMAGE", "link": None}],
                        "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": []}]})
    doc, warnings = import_comfy(ui)
    by_type = {n["type"]: n["inputs"] for n in doc["nodes"].values()}
    assert by_type["ImageAddNoise"] == {"seed": 77, "strength": 0.3}
    assert by_type["ResizeAndPadImage"] == {"target_width": 640, "target_height": 480, "padding_color": "black",
                                            "interpolation": "lanczos"}
    assert by_type["ImageStitch"] == {"direction": "down", "match_image_size": False, "spacing_width": 8,
                                      "spacing_color": "red", "image1": {"from": ["1", "image"]}}
    assert by_type["ImageQuantize"] == {"colors": 16, "dither": "bayer-4", "image": {"from": ["1", "image"]}}
    assert by_type["GetImageSize"] == {"image": {"from": ["1", "image"]}}
    assert not [w for w in warnings if "unknown" in w.lower()], warnings


def test_image_scale_to_max_dimension():
    from nodes.image_ops import resize

    tall = torch.rand(1, 40, 30, 3)
    out = one("ImageScaleToMaxDimension", image=tall, upscale_method="area", largest_size=20)
    assert out.shape == (1, 20, 15, 3) and torch.equal(out, resize(tall, 15, 20, "area"))
    assert one("ImageScaleToMaxDimension", image=torch.rand(1, 30, 45, 3), upscale_method="bilinear",
               largest_size=12).shape == (1, 8, 12, 3)
    assert one("ImageScaleToMaxDimension", image=torch.rand(2, 9, 9, 3), upscale_method="nearest-exact",
               largest_size=4).shape == (2, 4, 4, 3)


def test_resize_and_pad_image():
    from nodes.image_ops import resize

    wide = torch.rand(1, 10, 40, 3)
    out = one("ResizeAndPadImage", image=wide, target_width=20, target_height=20, padding_color="black",
              interpolation="bilinear")
    assert out.shape == (1, 20, 20, 3)  # scaled to 20 x 5, centred: rows 7..11
    assert torch.equal(out[:, 7:12], resize(wide, 20, 5, "bilinear")) and not out[:, :7].any() and not out[:, 12:].any()
    white = one("ResizeAndPadImage", image=torch.rand(1, 30, 10, 3), target_width=16, target_height=12,
                padding_color="white", interpolation="area")
    assert white.shape == (1, 12, 16, 3) and torch.equal(white[:, :, :6], torch.ones(1, 12, 6, 3))  # 4 wide, x 6..9


def test_image_add_noise_is_comfyuis_seeded_cpu_noise():
    image = torch.full((1, 4, 4, 3), 0.5)
    out = one("ImageAddNoise", image=image, seed=3, strength=0.2)
    want = torch.clip(image + 0.2 * torch.randn(image.size(), generator=torch.manual_seed(3)), 0.0, 1.0)
    assert torch.equal(out, want)
    assert torch.equal(one("ImageAddNoise", image=image, seed=3, strength=0.0), image)
