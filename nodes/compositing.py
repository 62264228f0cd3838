"""Compositing nodes: paste images or latents into each other (with a mask or a feathered
edge), blend latents, and pad an image for outpainting."""

from __future__ import annotations

from nodegen.image.convert import check_image
from nodegen.kernel import types as T
from nodegen.kernel.lazy import lazy_import
from nodegen.kernel.node import Input, Output, node

torch = lazy_import("torch")
M = lazy_import("nodegen.image.masks")

MAX = 16384


def _samples(latent, name: str) -> torch.Tensor:
    if not isinstance(latent, dict) or not torch.is_tensor(latent.get("samples")):
        raise TypeError(f"input '{name}' must be a LATENT (a dict with 'samples')")
    return latent["samples"]


@node("ImageCompositeMasked", category="image",
      description="Paste a source image onto a destination at (x, y), through an optional mask.",
      inputs=[Input.link("destination", T.IMAGE), Input.link("source", T.IMAGE),
              Input.int("x", 0, min=0, max=MAX), Input.int("y", 0, min=0, max=MAX),
              Input.bool("resize_source", False, description="Resize the source to the destination first"),
              Input.link("mask", T.MASK, optional=True, description="Where the source shows (1); all of it if unset")],
      outputs=[Output("image", T.IMAGE)], keywords=("paste", "overlay", "combine"))
def image_composite_masked(ctx, destination, source, x, y, resize_source, mask=None):
    from nodegen.image.composite import composite

    check_image(destination, "destination")
    check_image(source, "source")
    dst = destination.movedim(-1, 1)
    src = source.movedim(-1, 1)
    if src.shape[1] != dst.shape[1]:
        src = src[:, : dst.shape[1]] if src.shape[1] > dst.shape[1] else src[:, :1].expand(-1, dst.shape[1], -1, -1)
    return composite(dst, src, x, y, mask, 1, resize_source).movedim(1, -1)


@node("LatentCompositeMasked", category="latent",
      description="Paste source latents onto destination latents at (x, y) pixels, through an optional mask.",
      inputs=[Input.link("destination", T.LATENT), Input.link("source", T.LATENT),
              Input.int("x", 0, min=0, max=MAX, step=8), Input.int("y", 0, min=0, max=MAX, step=8),
              Input.bool("resize_source", False),
              Input.link("mask", T.MASK, optional=True, description="Where the source shows (1)")],
      outputs=[Output("latent", T.LATENT)])
def latent_composite_masked(ctx, destination, source, x, y, resize_source, mask=None):
    from nodegen.image.composite import composite

    out = dict(destination)
    out["samples"] = composite(_samples(destination, "destination"), _samples(source, "source"), x, y,
                               mask, 8, resize_source)
    return out


@node("LatentComposite", category="latent",
      description="Paste latents into others at (x, y) pixels, with an optional feathered edge.",
      inputs=[Input.link("samples_to", T.LATENT), Input.link("samples_from", T.LATENT),
              Input.int("x", 0, min=0, max=MAX, step=8), Input.int("y", 0, min=0, max=MAX, step=8),
              Input.int("feather", 0, min=0, max=MAX, step=8, description="Edge fade in pixels")],
      outputs=[Output("latent", T.LATENT)])
def latent_composite(ctx, samples_to, samples_from, x, y, feather):
    from nodegen.image.composite import repeat_to_batch

    to = _samples(samples_to, "samples_to")
    frm = repeat_to_batch(_samples(samples_from, "samples_from"), to.shape[0])
    x, y, feather = x // 8, y // 8, feather // 8
    frm = frm[:, :, : max(0, to.shape[2] - y), : max(0, to.shape[3] - x)]
    s = to.clone()
    h, w = frm.shape[2], frm.shape[3]
    mask = torch.ones_like(frm)
    for t in range(feather):  # fade only the edges that lie inside the destination
        f = (t + 1) / feather
        if y != 0:
            mask[:, :, t] *= f
        if y + h < to.shape[2]:
            mask[:, :, h - 1 - t] *= f
        if x != 0:
            mask[:, :, :, t] *= f
        if x + w < to.shape[3]:
            mask[:, :, :, w - 1 - t] *= f
    s[:, :, y:y + h, x:x + w] = frm * mask + s[:, :, y:y + h, x:x + w] * (1 - mask)
    out = dict(samples_to)
    out["samples"] = s
    return out


@node("LatentBlend", category="latent",
      description="Mix two latents: samples1 * blend_factor + samples2 * (1 - blend_factor).",
      inputs=[Input.link("samples1", T.LATENT), Input.link("samples2", T.LATENT),
              Input.float("blend_factor", 0.5, min=0.0, max=1.0, step=0.01)],
      outputs=[Output("latent", T.LATENT)])
def latent_blend(ctx, samples1, samples2, blend_factor):
    from nodegen.image.composite import repeat_to_batch

    a, b = _samples(samples1, "samples1"), _samples(samples2, "samples2")
    if b.shape[-2:] != a.shape[-2:]:
        import torch.nn.functional as F

        b = F.interpolate(b, size=a.shape[-2:], mode="bicubic")
    out = dict(samples1)
    out["samples"] = a * blend_factor + repeat_to_batch(b, a.shape[0]) * (1 - blend_factor)
    return out


@node("ImagePadForOutpaint", category="image",
      description="Grow the canvas (grey) for outpainting; the mask marks the new area, feathered into the image.",
      inputs=[Input.link("image", T.IMAGE),
              *(Input.int(side, 0, min=0, max=MAX, step=8, description=f"Pixels to add at the {side}")
                for side in ("left", "top", "right", "bottom")),
              Input.int("feathering", 40, min=0, max=MAX, description="Blend width into the image, pixels")],
      outputs=[Output("image", T.IMAGE), Output("mask", T.MASK)], keywords=("outpaint", "extend", "pad"))
def image_pad_for_outpaint(ctx, image, left, top, right, bottom, feathering):
    check_image(image)
    canvas, mask = M.outpaint_pad(image, left, top, right, bottom, feathering)
    return {"image": canvas, "mask": mask}


@node("SplitImageWithAlpha", category="image/alpha",
      description="Split RGBA images into RGB and a mask (1 where transparent, as ComfyUI).",
      inputs=[Input.link("image", T.IMAGE)],
      outputs=[Output("image", T.IMAGE), Output("mask", T.MASK)], keywords=("alpha", "transparency", "rgba"))
def split_image_with_alpha(ctx, image):
    check_image(image)
    alpha = image[..., 3] if image.shape[-1] > 3 else torch.ones_like(image[..., 0])
    return {"image": image[..., :3].clone(), "mask": 1.0 - alpha}


@node("JoinImageWithAlpha", category="image/alpha",
      description="Give images an alpha channel from a mask (1 in the mask: transparent, as ComfyUI); the "
                  "mask is resized to the images.",
      inputs=[Input.link("image", T.IMAGE), Input.link("alpha", T.MASK)],
      outputs=[Output("image", T.IMAGE)], keywords=("alpha", "transparency", "rgba", "cutout"))
def join_image_with_alpha(ctx, image, alpha):
    check_image(image)
    if not torch.is_tensor(alpha):
        raise ValueError("input 'alpha' must be a MASK")
    m = alpha.float().reshape(-1, 1, alpha.shape[-2], alpha.shape[-1])
    m = torch.nn.functional.interpolate(m, size=tuple(image.shape[1:3]), mode="bilinear")[:, 0]
    n = min(image.shape[0], m.shape[0])
    return torch.cat([image[:n, ..., :3], (1.0 - m[:n])[..., None].to(image.dtype)], dim=-1)
