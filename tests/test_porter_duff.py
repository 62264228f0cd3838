"""PorterDuffImageComposite against ComfyUI's porter_duff_composite (comfy_extras/nodes_compositing.py),
transcribed here: masks in and out (1 - alpha), premultiplied colours, division by the result's
alpha where it is above 1e-5, clamping; per batch item, the shortest input deciding how many; a
source or alpha of another size resized to the destination's (bicubic, centre crop)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nodegen.image.porter_duff import MODES
from tests.support.nodes import run


def comfy_porter_duff(src_image, src_alpha, dst_image, dst_alpha, mode):
    src_alpha = 1 - src_alpha
    dst_alpha = 1 - dst_alpha
    src_image = src_image * src_alpha
    dst_image = dst_image * dst_alpha
    if mode == "ADD":
        out_alpha = torch.clamp(src_alpha + dst_alpha, 0, 1)
        out_image = torch.clamp(src_image + dst_image, 0, 1)
    elif mode == "CLEAR":
        out_alpha = torch.zeros_like(dst_alpha)
        out_image = torch.zeros_like(dst_image)
    elif mode == "DARKEN":
        out_alpha = src_alpha + dst_alpha - src_alpha * dst_alpha
        out_image = (1 - dst_alpha) * src_image + (1 - src_alpha) * dst_image + torch.min(src_image, dst_image)
    elif mode == "DST":
        out_alpha, out_image = dst_alpha, dst_image
    elif mode == "DST_ATOP":
        out_alpha = src_alpha
        out_image = src_alpha * dst_image + (1 - dst_alpha) * src_image
    elif mode == "DST_IN":
        out_alpha = src_alpha * dst_alpha
        out_image = dst_image * src_alpha
    elif mode == "DST_OUT":
        out_alpha = (1 - src_alpha) * dst_alpha
        out_image = (1 - src_alpha) * dst_image
    elif mode == "DST_OVER":
        out_alpha = dst_alpha + (1 - dst_alpha) * src_alpha
        out_image = dst_image + (1 - dst_alpha) * src_image
    elif mode == "LIGHTEN":
        out_alpha = src_alpha + dst_alpha - src_alpha * dst_alpha
        out_image = (1 - dst_alpha) * src_image + (1 - src_alpha) * dst_image + torch.max(src_image, dst_image)
    elif mode == "MULTIPLY":
        out_alpha = src_alpha * dst_alpha
        out_image = src_image * dst_image
    elif mode == "OVERLAY":
        out_alpha = src_alpha + dst_alpha - src_alpha * dst_alpha
        out_image = torch.where(2 * dst_image < dst_alpha, 2 * src_image * dst_image,
                                src_alpha * dst_alpha - 2 * (dst_alpha - src_image) * (src_alpha - dst_image))
    elif mode == "SCREEN":
        out_alpha = src_alpha + dst_alpha - src_alpha * dst_alpha
        out_image = src_image + dst_image - src_image * dst_image
    elif mode == "SRC":
        out_alpha, out_image = src_alpha, src_image
    elif mode == "SRC_ATOP":
        out_alpha = dst_alpha
        out_image = dst_alpha * src_image + (1 - src_alpha) * dst_image
    elif mode == "SRC_IN":
        out_alpha = src_alpha * dst_alpha
        out_image = src_image * dst_alpha
    elif mode == "SRC_OUT":
        out_alpha = (1 - dst_alpha) * src_alpha
        out_image = (1 - dst_alpha) * src_image
    elif mode == "SRC_OVER":
        out_alpha = src_alpha + (1 - src_alpha) * dst_alpha
        out_image = src_image + (1 - src_alpha) * dst_image
    elif mode == "XOR":
        out_alpha = (1 - dst_alpha) * src_alpha + (1 - src_alpha) * dst_alpha
        out_image = (1 - dst_alpha) * src_image + (1 - src_alpha) * dst_image
    out_image = torch.where(out_alpha > 1e-5, out_image / out_alpha, torch.zeros_like(out_image))
    return torch.clamp(out_image, 0, 1), 1 - out_alpha


def test_the_modes_are_comfyuis_on_every_batch_item():
    g = torch.Generator().manual_seed(0)
    src, dst = torch.rand(3, 5, 6, 3, generator=g), torch.rand(2, 5, 6, 3, generator=g)
    src_m, dst_m = torch.rand(3, 5, 6, generator=g), torch.rand(4, 5, 6, generator=g)
    dst_m[0, 0, :3] = 1.0  # fully transparent destination pixels: the 1e-5 rule matters for DST / SRC_IN
    assert list(MODES) == ["ADD", "CLEAR", "DARKEN", "DST", "DST_ATOP", "DST_IN", "DST_OUT", "DST_OVER", "LIGHTEN",
                           "MULTIPLY", "OVERLAY", "SCREEN", "SRC", "SRC_ATOP", "SRC_IN", "SRC_OUT", "SRC_OVER", "XOR"]
    for mode in MODES:
        out = run("PorterDuffImageComposite", source=src, source_alpha=src_m, destination=dst,
                  destination_alpha=dst_m, mode=mode)
        assert out["image"].shape == (2, 5, 6, 3) and out["mask"].shape == (2, 5, 6), mode  # the shortest: 2
        for i in range(2):
            image, mask = comfy_porter_duff(src[i], src_m[i][..., None], dst[i], dst_m[i][..., None], mode)
            assert torch.equal(out["image"][i], image) and torch.equal(out["mask"][i], mask[..., 0]), mode


def test_source_over_a_pixel_worked_by_hand():
    src = torch.tensor([1.0, 0.0, 0.0]).view(1, 1, 1, 3)  # red, half transparent
    dst = torch.tensor([0.0, 0.0, 1.0]).view(1, 1, 1, 3)  # blue, opaque
    out = run("PorterDuffImageComposite", source=src, source_alpha=torch.full((1, 1, 1), 0.5), destination=dst,
              destination_alpha=torch.zeros(1, 1, 1), mode="SRC_OVER")
    # alpha 0.5 + 0.5 * 1 = 1; colour (0.5, 0, 0) + 0.5 * (0, 0, 1) over alpha 1
    assert out["image"].flatten().tolist() == [0.5, 0.0, 0.5] and out["mask"].item() == 0.0


def test_a_source_and_alphas_of_other_sizes_are_fitted_to_the_destination():
    g = torch.Generator().manual_seed(1)
    src, dst = torch.rand(1, 8, 16, 3, generator=g), torch.rand(1, 6, 6, 3, generator=g)
    src_m, dst_m = torch.rand(1, 4, 4, generator=g), torch.rand(1, 3, 3, generator=g)
    out = run("PorterDuffImageComposite", source=src, source_alpha=src_m, destination=dst, destination_alpha=dst_m,
              mode="SRC_ATOP")

    def upscale(t, w, h):  # comfy.utils.common_upscale(..., "bicubic", "center") on [1, C, H, W]
        old_w, old_h = t.shape[-1], t.shape[-2]
        old_aspect, new_aspect = old_w / old_h, w / h
        x = y = 0
        if old_aspect > new_aspect:
            x = round((old_w - old_w * (new_aspect / old_aspect)) / 2)
        elif old_aspect < new_aspect:
            y = round((old_h - old_h * (old_aspect / new_aspect)) / 2)
        s = t.narrow(-2, y, old_h - y * 2).narrow(-1, x, old_w - x * 2)
        return F.interpolate(s, size=(h, w), mode="bicubic")
    dst_a = upscale(dst_m[0][None, None], 6, 6)[0].movedim(0, -1)
    src_i = upscale(src[0].movedim(-1, 0)[None], 6, 6)[0].movedim(0, -1)  # 16 x 8 cut to its middle 8 x 8 first
    src_a = upscale(src_m[0][None, None], 6, 6)[0].movedim(0, -1)
    image, mask = comfy_porter_duff(src_i, src_a, dst[0], dst_a, "SRC_ATOP")
    torch.testing.assert_close(out["image"][0], image, rtol=0, atol=1e-6)
    torch.testing.assert_close(out["mask"][0], mask[..., 0], rtol=0, atol=1e-6)


def test_bad_inputs_name_the_node_and_input():
    image, mask = torch.rand(1, 4, 4, 3), torch.zeros(1, 4, 4)
    with pytest.raises(ValueError, match=r"PorterDuffImageComposite: inputs 'source' and 'destination'.*channels"):
        run("PorterDuffImageComposite", source=torch.rand(1, 4, 4, 4), source_alpha=mask, destination=image,
            destination_alpha=mask, mode="SRC_OVER")
    with pytest.raises(ValueError, match=r"PorterDuffImageComposite: input 'destination_alpha' must be a MASK"):
        run("PorterDuffImageComposite", source=image, source_alpha=mask, destination=image, destination_alpha=image,
            mode="SRC_OVER")
    with pytest.raises(ValueError, match=r"PorterDuffImageComposite: input 'source'"):
        run("PorterDuffImageComposite", source=mask, source_alpha=mask, destination=image, destination_alpha=mask,
            mode="SRC_OVER")
    with pytest.raises(ValueError, match=r"PorterDuffImageComposite: input 'mode'"):
        run("PorterDuffImageComposite", source=image, source_alpha=mask, destination=image, destination_alpha=mask,
            mode="OVER")
