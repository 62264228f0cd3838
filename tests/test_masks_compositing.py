"""Mask, compositing and inpainting helpers against independent computations of ComfyUI's
rules (scipy's grey morphology for GrowMask)."""

from __future__ import annotations

import math

import pytest
import torch

from tests.support.nodes import run

torch.set_num_threads(1)



def _blob(h=12, w=14):
    m = torch.zeros(1, h, w)
    m[0, 4:7, 5:9] = 1.0
    m[0, 2, 2] = 0.5
    return m


@pytest.mark.parametrize("expand", [2, -1, 0])
@pytest.mark.parametrize("tapered", [True, False])
def test_grow_mask_is_grey_dilation_or_erosion(expand, tapered):
    ndimage = pytest.importorskip("scipy.ndimage")
    import numpy as np

    m = _blob()
    m[0, 0, :3] = 1.0  # at the border
    c = 0 if tapered else 1
    kernel = np.array([[c, 1, c], [1, 1, 1], [c, 1, c]], dtype=bool)
    want = m[0].numpy()
    for _ in range(abs(expand)):
        op = ndimage.grey_dilation if expand > 0 else ndimage.grey_erosion
        want = op(want, footprint=kernel)
    got = run("GrowMask", mask=m, expand=expand, tapered_corners=tapered)["mask"]
    assert got.shape == (1, 12, 14) and torch.equal(got[0], torch.from_numpy(want))


def test_feather_mask_ramps_each_side():
    m = torch.ones(1, 6, 8)
    out = run("FeatherMask", mask=m, left=2, top=0, right=4, bottom=3)["mask"][0]
    assert out[3, :2].tolist() == [0.5, 1.0]
    assert out[3, -4:].tolist() == pytest.approx([1.0, 0.75, 0.5, 0.25])
    assert out[-3:, 4].tolist() == pytest.approx([1.0, 2 / 3, 1 / 3])
    assert float(out[5, 0]) == pytest.approx(0.5 * 1 / 3)


def test_image_color_to_mask():
    img = torch.zeros(1, 2, 3, 3)
    img[0, 0, 1] = torch.tensor([1.0, 128 / 255, 0.0])
    img[0, 1, 2] = torch.tensor([1.0, 127 / 255, 0.0])
    out = run("ImageColorToMask", image=img, color=0xFF8000)["mask"]
    assert out.tolist() == [[[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]]


@pytest.mark.parametrize("op", ["multiply", "add", "subtract", "and", "or", "xor"])
def test_mask_composite(op):
    g = torch.Generator().manual_seed(0)
    dst, src = torch.rand(1, 6, 7, generator=g), torch.rand(1, 4, 5, generator=g)
    out = run("MaskComposite", destination=dst, source=src, x=4, y=3, operation=op)["mask"]
    want = dst.clone()
    for i in range(3, 6):
        for j in range(4, 7):
            a, b = float(dst[0, i, j]), float(src[0, i - 3, j - 4])
            r = {"multiply": a * b, "add": a + b, "subtract": a - b, "and": float(round(a) and round(b)),
                 "or": float(round(a) or round(b)), "xor": float(round(a) != round(b))}[op]
            want[0, i, j] = min(max(r, 0.0), 1.0)
    assert torch.allclose(out, want)


def test_image_composite_masked():
    dst = torch.zeros(1, 8, 8, 3)
    src = torch.ones(1, 4, 4, 3)
    mask = torch.zeros(1, 4, 4)
    mask[0, :, :2] = 1.0
    out = run("ImageCompositeMasked", destination=dst, source=src, x=6, y=2, resize_source=False, mask=mask)["image"]
    want = torch.zeros(1, 8, 8, 3)
    want[0, 2:6, 6:8] = 1.0  # the source's left half, clipped at the right edge
    assert torch.equal(out, want)
    full = run("ImageCompositeMasked", destination=dst, source=src, x=0, y=0, resize_source=True)["image"]
    assert torch.equal(full, torch.ones(1, 8, 8, 3))


def test_latent_composite_masked_positions_in_pixels():
    dst = {"samples": torch.zeros(1, 4, 8, 8), "noise_mask": torch.ones(1, 1, 8, 8)}
    src = {"samples": torch.ones(1, 4, 2, 2)}
    out = run("LatentCompositeMasked", destination=dst, source=src, x=16, y=40, resize_source=False)["latent"]
    assert out["samples"][0, 0, 5:7, 2:4].tolist() == [[1.0, 1.0], [1.0, 1.0]]
    assert float(out["samples"].sum()) == 16.0 and "noise_mask" in out


def test_latent_composite_feather():
    to = {"samples": torch.zeros(1, 1, 6, 6)}
    frm = {"samples": torch.ones(1, 1, 6, 6)}
    out = run("LatentComposite", samples_to=to, samples_from=frm, x=16, y=0, feather=16)["latent"]["samples"][0, 0]
    # pasted at column 2, clipped to 4 columns; left edge (inside the destination) fades 1/2, 1; top
    # edge at y=0 and right edge at the border do not fade
    assert out[0].tolist() == [0.0, 0.0, 0.5, 1.0, 1.0, 1.0]
    assert out[5].tolist() == [0.0, 0.0, 0.5, 1.0, 1.0, 1.0]


def test_latent_blend():
    a, b = {"samples": torch.full((1, 4, 2, 2), 2.0)}, {"samples": torch.full((1, 4, 2, 2), 4.0)}
    out = run("LatentBlend", samples1=a, samples2=b, blend_factor=0.25)["latent"]["samples"]
    assert torch.allclose(out, torch.full((1, 4, 2, 2), 3.5))


def test_image_pad_for_outpaint_matches_comfyui_loop():
    img = torch.rand(1, 20, 24, 3, generator=torch.Generator().manual_seed(1))
    out = run("ImagePadForOutpaint", image=img, left=8, top=0, right=0, bottom=16, feathering=5)
    canvas, mask = out["image"], out["mask"]
    assert canvas.shape == (1, 36, 32, 3) and torch.equal(canvas[:, :20, 8:], img)
    assert float(canvas[0, 30, 2, 0]) == 0.5
    want = torch.ones(36, 32)
    inner = torch.zeros(20, 24)
    for i in range(20):  # ComfyUI's per-pixel rule, written out
        for j in range(24):
            d = min(20, 20 - i, j, 24)  # top not padded, bottom padded, left padded, right not
            if d < 5:
                inner[i, j] = ((5 - d) / 5) ** 2
    want[0:20, 8:32] = inner
    assert torch.allclose(mask[0], want)


def test_image_scale_to_total_pixels_and_batch():
    img = torch.rand(1, 30, 60, 3)
    out = run("ImageScaleToTotalPixels", image=img, upscale_method="bilinear", megapixels=0.01,
              resolution_steps=1)["image"]
    s = math.sqrt(int(0.01 * 1024 * 1024) / 1800)
    assert out.shape == (1, round(30 * s), round(60 * s), 3)
    out8 = run("ImageScaleToTotalPixels", image=img, upscale_method="area", megapixels=0.01, resolution_steps=8)["image"]
    assert out8.shape[1] % 8 == 0 and out8.shape[2] % 8 == 0
    other = torch.rand(2, 10, 10, 3)
    batch = run("ImageBatch", image1=img, image2=other)["image"]
    assert batch.shape == (3, 30, 60, 3) and torch.equal(batch[:1], img)


def test_image_crop_to_mask():
    img = torch.rand(1, 12, 14, 3)
    got = run("ImageCropToMask", image=img, mask=_blob(), padding=1)
    assert (got["x"], got["y"]) == (1, 1)
    assert torch.equal(got["image"], img[:, 1:8, 1:10]) and got["mask"].shape == (1, 7, 9)
    with pytest.raises(ValueError, match="empty"):
        run("ImageCropToMask", image=img, mask=torch.zeros(1, 12, 14), padding=0)


def test_differential_diffusion_step_mask():
    from nodegen.diffusion.denoiser import Denoiser
    from nodegen.diffusion.model_sampling import ModelSampling
    from nodegen.models.objects import DiffusionModel

    class Unet(torch.nn.Module):
        config = type("C", (), {"in_channels": 4})()

    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2
    ms = ModelSampling(torch.cumprod(1 - betas, 0), "epsilon")
    model = DiffusionModel.from_unet(Unet(), "sd1", "epsilon")
    dd = run("DifferentialDiffusion", model=model, strength=1.0)["model"]
    assert "differential_diffusion" not in model.options  # a clone
    mask = torch.tensor([[[0.0, 0.3, 0.7, 1.0]]])
    den = Denoiser(dd, Unet(), [object()], None, 1.0, latent_image=torch.zeros(1, 4, 1, 4), noise_mask=mask,
                   model_sampling=ms)
    sig = torch.tensor([float(ms.sigma_max), 2.0, 0.5, 0.0])
    den.sigmas = sig
    ts = [float(ms.timestep(float(s))) for s in (sig[0], sig[1], ms.sigma_min)]
    thr = (ts[1] - ts[2]) / (ts[0] - ts[2])
    got = den._step_mask(2.0)[0, 0, 0].tolist()
    assert got == [float(v >= thr) for v in (0.0, 0.3, 0.7, 1.0)]
    assert den._step_mask(float(sig[0]))[0, 0, 0].tolist() == [0.0, 0.0, 0.0, 1.0]
    plain = Denoiser(model, Unet(), [object()], None, 1.0, latent_image=torch.zeros(1, 4, 1, 4), noise_mask=mask,
                     model_sampling=ms)
    assert torch.equal(plain._step_mask(2.0), plain.noise_mask)


def test_canny_under_comfyui_name_maps_thresholds():
    from nodegen.formats import comfy

    api = {"1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
           "2": {"class_type": "Canny", "inputs": {"low_threshold": 0.4, "high_threshold": 0.8, "image": ["1", 0]}}}
    doc, notes = comfy.import_comfy(api)
    assert doc["nodes"]["2"] == {"type": "CannyEdges", "type_version": 1,
                                 "inputs": {"low_threshold": 0.1, "high_threshold": 0.2, "image": {"from": ["1", "image"]}}}
    assert comfy.export_api(doc) == api
