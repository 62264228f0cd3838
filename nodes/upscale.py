"""Super-resolution nodes: load an upscale model (ESRGAN, Real-ESRGAN, SwinIR, ... via spandrel)
and upscale images with it, tile by tile."""

from __future__ import annotations

import contextlib

from nodegen.kernel import types as T
from nodegen.kernel.lazy import lazy_import
from nodegen.kernel.node import Input, Output, node
from nodegen.models.resolve import choices_for, fingerprint_for, resolve_model

torch = lazy_import("torch")


@node("UpscaleModelLoader", category="upscale",
      description="Load a super-resolution model (ESRGAN, Real-ESRGAN, SwinIR, ...).",
      inputs=[Input.file("model_name", "upscale_models", choices=choices_for("upscale_models"),
                         description="Model file in the upscale_models folder")],
      outputs=[Output("upscale_model", T.UPSCALE_MODEL)],
      fingerprint=fingerprint_for("upscale_models", "model_name"),
      keywords=("esrgan", "super resolution", "sr"))
def upscale_model_loader(ctx, model_name):
    from nodegen.upscale.model import load_upscale_model

    path = resolve_model(ctx.paths, "upscale_models", model_name, "UpscaleModelLoader", "model_name")
    return load_upscale_model(path)


def _placed(ctx, model):
    """Put the model's module on the run device through the model manager when there is one."""
    device = torch.device(ctx.device or "cpu")
    dtype = torch.float16 if device.type == "cuda" and model.descriptor.supports_half else torch.float32
    use = getattr(ctx.models, "use", None)
    if use is not None:
        return use(model.descriptor.model, device, dtype)
    model.to(device, dtype)
    return contextlib.nullcontext()


@node("ImageUpscaleWithModel", category="upscale",
      description="Upscale images with a super-resolution model, tile by tile with feathered overlaps.",
      inputs=[Input.link("upscale_model", T.UPSCALE_MODEL),
              Input.link("image", T.IMAGE),
              Input.int("tile_size", 512, min=0, max=8192, step=8,
                        description="Tile size in input pixels (0 = the whole image at once)"),
              Input.int("overlap", 32, min=0, max=1024, step=4,
                        description="Overlap between tiles in input pixels")],
      outputs=[Output("image", T.IMAGE)],
      keywords=("upscale", "esrgan", "super resolution"))
def image_upscale_with_model(ctx, upscale_model, image, tile_size=512, overlap=32):
    if tile_size and 2 * overlap >= tile_size:
        raise ValueError(f"ImageUpscaleWithModel: overlap ({overlap}) must be less than half of "
                         f"tile_size ({tile_size}); lower overlap or raise tile_size")
    with _placed(ctx, upscale_model):
        out = upscale_model.upscale(image, tile_size, overlap,
                                    progress=lambda done, total: ctx.progress(done, total))
    return out.to(image.device)
