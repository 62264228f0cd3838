"""Latent operations (LATENT_OPERATION) and where they apply: to a LATENT, or to the guidance while
sampling (ComfyUI's experimental LatentApplyOperation, LatentApplyOperationCFG,
LatentOperationTonemapReinhard, LatentOperationSharpen); see :mod:`nodegen.diffusion.latent_operations`."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node

_CATEGORY = "latent/advanced/operations"


def _operation(value, node_type: str):
    if not callable(value):
        raise ValueError(f"{node_type}: input 'operation' must be a LATENT_OPERATION "
                         f"(LatentOperationTonemapReinhard, LatentOperationSharpen), got {type(value).__name__}")
    return value


@node("LatentApplyOperation", category=_CATEGORY, description="Apply a latent operation to a LATENT.",
      inputs=[Input.link("samples", T.LATENT), Input.link("operation", T.LATENT_OPERATION)],
      outputs=[Output("latent", T.LATENT)])
def latent_apply_operation(ctx, samples, operation):
    return {**samples, "samples": _operation(operation, "LatentApplyOperation")(samples["samples"])}


@node("LatentApplyOperationCFG", category=_CATEGORY,
      description="Apply a latent operation to the guidance (positive minus negative prediction) at every "
                  "sampling step, before CFG scales it.",
      inputs=[Input.link("model", T.MODEL), Input.link("operation", T.LATENT_OPERATION)],
      outputs=[Output("model", T.MODEL)], keywords=("tonemap", "cfg"))
def latent_apply_operation_cfg(ctx, model, operation):
    from nodegen.diffusion.latent_operations import GuidanceOperation

    return model.with_pre_cfg_hook(GuidanceOperation(_operation(operation, "LatentApplyOperationCFG")))


@node("LatentOperationTonemapReinhard", category=_CATEGORY,
      description="Compress each latent pixel's length with Reinhard's curve relative to the image's "
                  "(mean + 5 std) of lengths; tames high-CFG blow-outs when applied to the guidance.",
      inputs=[Input.float("multiplier", 1.0, min=0.0, max=100.0, step=0.01,
                          description="Scales the length at which the curve flattens")],
      outputs=[Output("operation", T.LATENT_OPERATION)], keywords=("tonemap", "reinhard", "high cfg"))
def latent_operation_tonemap_reinhard(ctx, multiplier=1.0):
    from nodegen.diffusion.latent_operations import TonemapReinhard

    return TonemapReinhard(multiplier)


@node("LatentOperationSharpen", category=_CATEGORY,
      description="Sharpen the direction of each latent pixel's vector with an unsharp mask, lengths kept.",
      inputs=[Input.int("sharpen_radius", 9, min=1, max=31),
              Input.float("sigma", 1.0, min=0.1, max=10.0, step=0.1, description="Gaussian width (relative to the radius)"),
              Input.float("alpha", 0.1, min=0.0, max=5.0, step=0.01, description="Strength")],
      outputs=[Output("operation", T.LATENT_OPERATION)], keywords=("sharpen",))
def latent_operation_sharpen(ctx, sharpen_radius=9, sigma=1.0, alpha=0.1):
    from nodegen.diffusion.latent_operations import Sharpen

    return Sharpen(sharpen_radius, sigma, alpha)
