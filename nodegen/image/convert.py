"""Conversions between PIL images, numpy arrays and IMAGE/MASK tensors (layout in nodegen.kernel.types)."""

from __future__ import annotations

from nodegen.kernel.lazy import lazy_import

np = lazy_import("numpy")  # imported on first use: node modules import this one while node types are listed


def pil_to_image(img) -> "torch.Tensor":  # noqa: F821
    """A PIL image as an IMAGE tensor [1, H, W, 3] (alpha dropped; see :func:`pil_alpha_mask`)."""
    import torch
    from PIL import ImageOps

    img = ImageOps.exif_transpose(img)
    rgb = img.convert("RGB")
    arr = np.asarray(rgb, dtype=np.float32) / 255.0
    return torch.from_numpy(arr.copy())[None]


def pil_alpha_mask(img) -> "torch.Tensor":  # noqa: F821
    """MASK [1, H, W]: 1 - alpha (transparent pixels are the area to change), zeros without alpha."""
    import torch

    if "A" in img.getbands():
        a = np.asarray(img.getchannel("A"), dtype=np.float32) / 255.0
        return torch.from_numpy(1.0 - a)[None]
    if img.mode == "P" and "transparency" in img.info:
        return pil_alpha_mask(img.convert("RGBA"))
    return torch.zeros((1, img.height, img.width), dtype=torch.float32)


def image_to_pils(image) -> list:
    """An IMAGE tensor [B, H, W, C] as a list of PIL images (RGB or RGBA)."""
    from PIL import Image

    arr = (image.detach().float().clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
    out = []
    for item in arr:
        if item.shape[-1] == 1:
            out.append(Image.fromarray(item[..., 0], "L"))
        else:
            out.append(Image.fromarray(item, "RGBA" if item.shape[-1] == 4 else "RGB"))
    return out


def check_image(image, node_input: str = "image") -> None:
    shape = getattr(image, "shape", None)
    if shape is None or len(shape) != 4 or shape[-1] not in (1, 3, 4):
        raise ValueError(f"input '{node_input}' must be an IMAGE [batch, height, width, 3|4], got "
                         f"{tuple(shape) if shape is not None else type(image).__name__}")
