"""TomePatchModel and HyperTile: ComfyUI's self-attention speed patches; see
:mod:`nodegen.diffusion.token_merging` and :mod:`nodegen.diffusion.hypertile`."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node


def _with_patch(model, patch):
    out = model.clone()
    out.options["self_attention_patches"] = [*out.options.get("self_attention_patches", ()), patch]
    return out


@node("TomePatchModel", category="model_patches/unet",
      description="Token Merging (ToMe): the full-resolution self-attentions merge their most similar query "
                  "tokens, which makes them faster (SD1/SD2; ComfyUI's variant: nothing changes on SDXL).",
      inputs=[Input.link("model", T.MODEL),
              Input.float("ratio", 0.3, min=0.0, max=1.0, step=0.01,
                          description="Share of the tokens merged away; 0: off")],
      outputs=[Output("model", T.MODEL)], keywords=("tome", "token merging", "speed"))
def tome_patch_model(ctx, model, ratio=0.3):
    from nodegen.diffusion.token_merging import TokenMerging

    ratio = float(ratio)
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"TomePatchModel: input 'ratio' must lie in 0 .. 1, got {ratio}")
    return _with_patch(model, TokenMerging(ratio))


@node("HyperTile", category="model_patches/unet",
      description="HyperTile: the self-attentions of the first UNet levels attend within tiles, which makes "
                  "large images faster (SD1/SD2/SDXL).",
      inputs=[Input.link("model", T.MODEL),
              Input.int("tile_size", 256, min=1, max=2048, description="Tile side in pixels (at least 32)"),
              Input.int("swap_size", 2, min=1, max=128, description="How many tile counts to choose from at random"),
              Input.int("max_depth", 0, min=0, max=10, description="Deepest UNet level tiled (0: the first)"),
              Input.bool("scale_depth", False, description="Double the tile side at each deeper level")],
      outputs=[Output("model", T.MODEL)], keywords=("hypertile", "tiles", "speed"))
def hyper_tile(ctx, model, tile_size=256, swap_size=2, max_depth=0, scale_depth=False):
    from nodegen.diffusion.hypertile import HyperTile

    for name, value, low in (("tile_size", tile_size, 1), ("swap_size", swap_size, 1), ("max_depth", max_depth, 0)):
        if int(value) < low:
            raise ValueError(f"HyperTile: input '{name}' must be at least {low}, got {value}")
    return _with_patch(model, HyperTile(int(tile_size), int(swap_size), int(max_depth), bool(scale_depth)))
