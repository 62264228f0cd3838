"""PatchModelAddDownscale: Kohya's Deep Shrink with ComfyUI's inputs; see
:mod:`nodegen.diffusion.deep_shrink`."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node

METHODS = ["bicubic", "nearest-exact", "bilinear", "area", "bislerp"]


@node("PatchModelAddDownscale", category="model_patches/unet",
      description="Kohya's Deep Shrink: early in sampling, the UNet works on its features scaled down after an "
                  "input block, so large images keep a coherent composition (SD1/SD2/SDXL).",
      inputs=[Input.link("model", T.MODEL), Input.int("block_number", 3, min=1, max=32, description="Input block"),
              Input.float("downscale_factor", 2.0, min=0.1, max=9.0, step=0.001),
              Input.float("start_percent", 0.0, min=0.0, max=1.0, step=0.001),
              Input.float("end_percent", 0.35, min=0.0, max=1.0, step=0.001),
              Input.bool("downscale_after_skip", True, description="Keep the skip connection at full size"),
              Input.choice("downscale_method", METHODS, "bicubic"), Input.choice("upscale_method", METHODS, "bicubic")],
      outputs=[Output("model", T.MODEL)], keywords=("deep shrink", "kohya", "hires fix", "downscale"))
def patch_model_add_downscale(ctx, model, block_number, downscale_factor, start_percent, end_percent,
                              downscale_after_skip, downscale_method, upscale_method):
    from nodegen.diffusion.deep_shrink import DeepShrink, check_block
    from nodegen.diffusion.model_sampling import percent_to_sigma
    from nodegen.diffusion.sample import model_sampling_for

    unet = getattr(model, "unet", None)
    if getattr(model, "prediction_type", None) == "flow" or not hasattr(unet, "down_blocks"):
        raise ValueError(f"PatchModelAddDownscale: input 'model' is a {getattr(model, 'family', '?')} model; "
                         "Deep Shrink works on SD1/SD2/SDXL UNets")
    try:
        check_block(unet, int(block_number), bool(downscale_after_skip))
    except ValueError as e:
        raise ValueError(f"PatchModelAddDownscale: input 'block_number': {e}") from e
    ms = model_sampling_for(model)
    out = model.clone()
    out.options["deep_shrink"] = DeepShrink(int(block_number), float(downscale_factor),
                                            percent_to_sigma(ms, float(start_percent)),
                                            percent_to_sigma(ms, float(end_percent)), bool(downscale_after_skip),
                                            downscale_method, upscale_method)
    return out
