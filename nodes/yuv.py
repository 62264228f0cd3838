"""ImageRGBToYUV and ImageYUVToRGB: ComfyUI's nodes (comfy_extras/nodes_morphology.py) that split an
image into its Y, U (Cb) and V (Cr) planes, each as a grey three-channel image, and join three such
planes back (each plane's first three channels averaged). The conversions are
:mod:`nodegen.image.ycbcr` (kornia.color's, which ComfyUI calls)."""

from __future__ import annotations

from nodegen.image.convert import check_image
from nodegen.kernel import types as T
from nodegen.kernel.lazy import lazy_import
from nodegen.kernel.node import Input, Output, node

torch = lazy_import("torch")


def _checked(image, node_type: str, name: str) -> None:
    try:
        check_image(image, name)
    except ValueError as e:
        raise ValueError(f"{node_type}: {e}") from None


@node("ImageRGBToYUV", category="image/color",
      description="Split images into their Y (luma), U and V (chroma) planes, each as a grey image.",
      inputs=[Input.link("image", T.IMAGE)],
      outputs=[Output("Y", T.IMAGE), Output("U", T.IMAGE), Output("V", T.IMAGE)],
      keywords=("ycbcr", "luma", "chroma", "color space"))
def image_rgb_to_yuv(ctx, image):
    from nodegen.image.ycbcr import rgb_to_ycbcr

    _checked(image, "ImageRGBToYUV", "image")
    if image.shape[-1] < 3:
        raise ValueError("ImageRGBToYUV: input 'image' must have 3 or 4 channels (RGB or RGBA), got 1")
    rgb = image[..., :3]
    planes = rgb_to_ycbcr(rgb)
    return {name: planes[..., i : i + 1].expand_as(rgb) for i, name in enumerate("YUV")}


@node("ImageYUVToRGB", category="image/color",
      description="Join Y, U and V planes (grey images) back into RGB images.",
      inputs=[Input.link("Y", T.IMAGE), Input.link("U", T.IMAGE), Input.link("V", T.IMAGE)],
      outputs=[Output("image", T.IMAGE)], keywords=("ycbcr", "luma", "chroma", "color space"))
def image_yuv_to_rgb(ctx, Y, U, V):  # noqa: N803 (ComfyUI's input names)
    from nodegen.image.ycbcr import ycbcr_to_rgb

    for name, plane in (("Y", Y), ("U", U), ("V", V)):
        _checked(plane, "ImageYUVToRGB", name)
    if not Y.shape[:3] == U.shape[:3] == V.shape[:3]:
        raise ValueError(f"ImageYUVToRGB: inputs 'Y', 'U' and 'V' must have the same batch size and size, got "
                         f"{tuple(Y.shape[:3])}, {tuple(U.shape[:3])} and {tuple(V.shape[:3])} [batch, height, width]")
    planes = [p[..., :3].to(Y).mean(-1, keepdim=True) for p in (Y, U, V)]
    return ycbcr_to_rgb(torch.cat(planes, -1))
