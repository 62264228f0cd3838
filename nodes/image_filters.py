"""ImageBlur, ImageSharpen (see :mod:`nodegen.image.filters`), ImageQuantize (:mod:`nodegen.image.quantize`)
and ImageAddNoise."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node


def _check(image, node_type: str) -> None:
    if getattr(image, "ndim", 0) != 4:
        raise ValueError(f"{node_type}: input 'image' must be an IMAGE [batch, height, width, channels]")
    if min(image.shape[1:3]) < 2:
        raise ValueError(f"{node_type}: input 'image' is too small to filter ({image.shape[2]}x{image.shape[1]})")


@node("ImageBlur", category="image/postprocessing", description="Gaussian blur.",
      inputs=[Input.link("image", T.IMAGE), Input.int("blur_radius", 1, min=1, max=31),
              Input.float("sigma", 1.0, min=0.1, max=10.0, step=0.1, description="Spread relative to the radius")],
      outputs=[Output("image", T.IMAGE)], keywords=("gaussian", "soften"))
def image_blur(ctx, image, blur_radius=1, sigma=1.0):
    from nodegen.image.filters import blur

    _check(image, "ImageBlur")
    if blur_radius >= min(image.shape[1:3]):
        raise ValueError(f"ImageBlur: input 'blur_radius' ({blur_radius}) must be smaller than the image side")
    return blur(image, int(blur_radius), float(sigma))


@node("ImageSharpen", category="image/postprocessing", description="Unsharp-mask sharpening.",
      inputs=[Input.link("image", T.IMAGE), Input.int("sharpen_radius", 1, min=1, max=31),
              Input.float("sigma", 1.0, min=0.1, max=10.0, step=0.01, description="Spread relative to the radius"),
              Input.float("alpha", 1.0, min=0.0, max=5.0, step=0.01, description="Strength")],
      outputs=[Output("image", T.IMAGE)], keywords=("unsharp", "detail"))
def image_sharpen(ctx, image, sharpen_radius=1, sigma=1.0, alpha=1.0):
    from nodegen.image.filters import sharpen

    _check(image, "ImageSharpen")
    if sharpen_radius >= min(image.shape[1:3]):
        raise ValueError(f"ImageSharpen: input 'sharpen_radius' ({sharpen_radius}) must be smaller than the image side")
    return sharpen(image, int(sharpen_radius), float(sigma), float(alpha))


@node("ImageQuantize", category="image/postprocessing",
      description="Reduce each image to a palette of its own colours (posterise), optionally dithered.",
      inputs=[Input.link("image", T.IMAGE), Input.int("colors", 256, min=1, max=256, description="Palette size"),
              Input.choice("dither", ["none", "floyd-steinberg", "bayer-2", "bayer-4", "bayer-8", "bayer-16"], "none")],
      outputs=[Output("image", T.IMAGE)], keywords=("palette", "posterize", "dither", "colors"))
def image_quantize(ctx, image, colors=256, dither="none"):
    from nodegen.image.quantize import quantize

    if getattr(image, "ndim", 0) != 4 or image.shape[-1] < 3:
        raise ValueError("ImageQuantize: input 'image' must be an RGB or RGBA IMAGE [batch, height, width, channels]")
    return quantize(image, int(colors), dither)


@node("ImageAddNoise", category="image",
      description="Add seeded Gaussian noise to images (clipped to 0..1), the numbers ComfyUI draws on the CPU.",
      inputs=[Input.link("image", T.IMAGE), Input.seed("seed"),
              Input.float("strength", 0.5, min=0.0, max=1.0, step=0.01)],
      outputs=[Output("image", T.IMAGE)], keywords=("noise", "grain"))
def image_add_noise(ctx, image, seed, strength=0.5):
    import torch

    if getattr(image, "ndim", 0) != 4:
        raise ValueError("ImageAddNoise: input 'image' must be an IMAGE [batch, height, width, channels]")
    noise = torch.randn(image.size(), generator=torch.Generator().manual_seed(int(seed)), device="cpu").to(image)
    return torch.clip(image + float(strength) * noise, 0.0, 1.0)
