"""Flux.1 Kontext nodes with ComfyUI's names: ReferenceLatent (an image the model edits or draws
from, carried by the conditioning), FluxKontextImageScale (to the nearest size Kontext was trained
on) and FluxKontextMultiReferenceLatentMethod (how several references are placed); see
:mod:`nodegen.diffusion.flux_reference`."""

from __future__ import annotations

from nodegen.image.convert import check_image
from nodegen.kernel import types as T
from nodegen.kernel.lazy import lazy_import
from nodegen.kernel.node import Input, Output, node

from .image_ops import resize

torch = lazy_import("torch")

#: The sizes (width, height) Kontext was trained on (the list ComfyUI and diffusers' FluxKontextPipeline use).
KONTEXT_SIZES = [(672, 1568), (688, 1504), (720, 1456), (752, 1392), (800, 1328), (832, 1248), (880, 1184),
                 (944, 1104), (1024, 1024), (1104, 944), (1184, 880), (1248, 832), (1328, 800), (1392, 752),
                 (1456, 720), (1504, 688), (1568, 672)]
METHODS = ["offset", "index", "uxo/uno"]


def _conditioning(cond, node_type: str) -> list:
    from nodegen.diffusion.conditioning import CondItem

    if not isinstance(cond, list) or not all(isinstance(c, CondItem) for c in cond):
        raise TypeError(f"{node_type}: input 'conditioning' must be a CONDITIONING")
    return cond


@node("ReferenceLatent", category="advanced/conditioning/edit_models",
      description="Give an edit model (Flux.1 Kontext) a reference image's latent through the conditioning; "
                  "several ReferenceLatent nodes add several references.",
      inputs=[Input.link("conditioning", T.CONDITIONING), Input.link("latent", T.LATENT, optional=True)],
      outputs=[Output("conditioning", T.CONDITIONING)], keywords=("kontext", "edit", "reference image"))
def reference_latent(ctx, conditioning, latent=None):
    cond = _conditioning(conditioning, "ReferenceLatent")
    if latent is None:
        return cond
    if not isinstance(latent, dict) or not torch.is_tensor(latent.get("samples")) or latent["samples"].ndim != 4:
        raise TypeError("ReferenceLatent: input 'latent' must be a LATENT")
    return [c.copy(extras=dict(c.extras, reference_latents=[*c.extras.get("reference_latents", ()), latent["samples"]]))
            for c in cond]


@node("FluxKontextMultiReferenceLatentMethod", category="advanced/conditioning/flux",
      description="How Flux.1 Kontext places several reference images: offset (side by side, the default), "
                  "index (each its own index) or uxo/uno (past the latent's corner, as UNO / USO models "
                  "were trained).",
      inputs=[Input.link("conditioning", T.CONDITIONING), Input.choice("reference_latents_method", METHODS, "offset")],
      outputs=[Output("conditioning", T.CONDITIONING)], keywords=("kontext", "reference"))
def flux_kontext_multi_reference_latent_method(ctx, conditioning, reference_latents_method):
    cond = _conditioning(conditioning, "FluxKontextMultiReferenceLatentMethod")
    return [c.copy(extras=dict(c.extras, reference_latents_method=reference_latents_method)) for c in cond]


@node("FluxKontextImageScale", category="advanced/conditioning/flux",
      description="Resize an image to the Flux.1 Kontext training size nearest its aspect ratio (centre crop, "
                  "Lanczos).",
      inputs=[Input.link("image", T.IMAGE)], outputs=[Output("image", T.IMAGE)], keywords=("kontext", "resize"))
def flux_kontext_image_scale(ctx, image):
    check_image(image)
    aspect = image.shape[2] / image.shape[1]
    _, width, height = min((abs(aspect - w / h), w, h) for w, h in KONTEXT_SIZES)
    old_h, old_w = image.shape[1:3]
    old_aspect, new_aspect = old_w / old_h, width / height
    x = y = 0  # ComfyUI's centre crop (common_upscale, crop="center")
    if old_aspect > new_aspect:
        x = round((old_w - old_w * (new_aspect / old_aspect)) / 2)
    elif old_aspect < new_aspect:
        y = round((old_h - old_h * (old_aspect / new_aspect)) / 2)
    return resize(image[:, y : old_h - y, x : old_w - x], width, height, "lanczos")
